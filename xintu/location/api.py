"""GET /api/v1/location and POST /api/v1/location/batch — thin over LocationService."""
from __future__ import annotations

from pathlib import Path

from apiflask import APIBlueprint, Schema, fields
from flask import current_app, request

from xintu.auth import client_auth
from xintu.errors import BadRequest
from xintu.location.service import MAX_BATCH, LocationService

bp = APIBlueprint("location", __name__, url_prefix="/api/v1", tag="location")

_PLACE_DOC = ("country, country_code, province, city, district, adcode (China), distance_km, "
              "confidence 0–1, source polygon|nearest_city; lat/lon are the WGS-84 point used")


class PointQuery(Schema):
    # Strings on purpose: the service gives bad numbers a stable 400 code instead of a generic 422.
    lat = fields.String(metadata={"description": "latitude, −90…90", "example": "39.9087"})
    lon = fields.String(metadata={"description": "longitude, −180…180", "example": "116.3975"})
    coord = fields.String(load_default="wgs84",
                          metadata={"description": "wgs84 (EXIF, default) | gcj02 (AMap/Tencent) | bd09"})


class BatchBody(Schema):
    points = fields.Raw(required=True, metadata={
        "description": f"1–{MAX_BATCH} objects {{lat, lon}}", "example": [{"lat": 39.9087, "lon": 116.3975}]})
    coord = fields.String(load_default="wgs84")


def location_service() -> LocationService:
    return LocationService(Path(current_app.instance_path) / "geodata")


@bp.record_once
def _preload(state) -> None:
    # With gunicorn --preload (preload_app = True) this runs in the master: the ~3 s load and the
    # polygon cache write happen once, and forked workers share the pages instead of each loading.
    if state.app.config.get("LOCATION_PRELOAD"):
        LocationService(Path(state.app.instance_path) / "geodata").data  # noqa: B018


@bp.get("/location")
@bp.auth_required(client_auth)
@bp.input(PointQuery, location="query", arg_name="query")
@bp.doc(summary="GPS point → place (Chinese names)", description=_PLACE_DOC,
        responses={200: "the place", 400: "invalid_coordinate / latitude_out_of_range / "
                   "longitude_out_of_range / invalid_coord_system"})
def lookup(query):
    return location_service().lookup(query.get("lat"), query.get("lon"), query.get("coord"))


@bp.post("/location/batch")
@bp.auth_required(client_auth)
@bp.doc(summary=f"Up to {MAX_BATCH} points → places, in order", description=_PLACE_DOC,
        responses={200: "{results: [place, …]}", 400: "invalid_batch / batch_too_large / a point's code"})
@bp.input(BatchBody, location="json", arg_name="body", validation=False)
def batch(body):
    # Our own parsing (validation=False): the service's codes name the bad point precisely.
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise BadRequest("请求体必须是 JSON 对象 {points: [...]}", code="invalid_json")
    results = location_service().lookup_many(payload.get("points"), payload.get("coord"))
    return {"results": results, "count": len(results)}
