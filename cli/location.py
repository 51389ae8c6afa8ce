"""``xintu location`` — GPS → place names, offline."""
from __future__ import annotations

import time
from pathlib import Path

import click

from xintu_cli.output import emit, output_options

_NUMBERS = {"ignore_unknown_options": True}  # so "-33.86" is a value, not an option
_COLUMNS = ["country", "province", "city", "district", "distance_km", "source"]


def _service():
    # Offline and without a database: the service for the instance folder, not the app's (no app is built,
    # so a lookup needs neither the schema nor production settings).
    from xintu.config import load_config
    from xintu.location.service import LocationService

    return LocationService(Path(load_config()["INSTANCE_PATH"]) / "geodata")


@click.group()
def location():
    """GPS → place with Chinese names (China polygons, GeoNames elsewhere).

    \b
    Examples:
      xintu location lookup 39.9087 116.3975
      xintu location lookup 39.9101 116.4037 --coord gcj02
      xintu location photos ~/Pictures/2024 --format csv
    """


@location.command(context_settings=_NUMBERS)
@click.argument("lat")
@click.argument("lon")
@click.option("--coord", type=click.Choice(["wgs84", "gcj02", "bd09"]), default="wgs84", show_default=True,
              help="Coordinate system of LAT LON (gcj02 = AMap/Tencent, bd09 = Baidu).")
@output_options
def lookup(lat, lon, coord, fmt):
    """Place of one point, e.g. `xintu location lookup 39.9087 116.3975`."""
    emit(_service().lookup(lat, lon, coord), fmt)


@location.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_options
def photos(folder, fmt):
    """Read EXIF GPS of every photo under FOLDER and print its place."""
    from xintu.location.exif import iter_photos, read_gps
    from xintu.location.service import MAX_BATCH

    rows, located = [], []
    for path in iter_photos(folder):
        row = {"file": str(path.relative_to(folder)), "lat": None, "lon": None}
        gps = read_gps(path)
        if gps:
            row["lat"], row["lon"] = round(gps[0], 6), round(gps[1], 6)
            located.append(row)
        else:
            row["source"] = "no GPS"
        rows.append(row)
    service = _service()
    for start in range(0, len(located), MAX_BATCH):
        chunk = located[start:start + MAX_BATCH]
        for row, place in zip(chunk, service.lookup_many([(r["lat"], r["lon"]) for r in chunk]), strict=False):
            row.update({k: place[k] for k in _COLUMNS})
    if not rows:
        click.echo(f"no photos under {folder}", err=True)
        return
    emit(rows, fmt, ["file", "lat", "lon", *_COLUMNS])


@location.command()
def warm():
    """Load the geodata once (builds the polygon cache in the instance folder); run before workers fork."""
    service = _service()
    start = time.perf_counter()
    service.data  # noqa: B018 — loading is the point
    click.echo(f"geodata ready in {time.perf_counter() - start:.2f} s ({service.cache_dir})")
