"""GET /api/v1/location and POST /api/v1/location/batch — thin over LocationService."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask import validators as validate
from flask import request
from marshmallow import EXCLUDE

from xintu.apidoc import errors
from xintu.auth import client_auth
from xintu.errors import BadRequest
from xintu.location.service import COORD_SYSTEMS, MAX_BATCH, get_service

bp = APIBlueprint("location", __name__, url_prefix="/api/v1", tag="location")

_PLACE_DOC = ("country, country_code, province, city, district, adcode (China), distance_km, "
              "confidence 0–1, source polygon|nearest_city; lat/lon are the WGS-84 point used")


_COORD = fields.String(load_default="wgs84", validate=validate.OneOf(COORD_SYSTEMS), metadata={
    "description": "wgs84 (EXIF, default) | gcj02 (AMap/Tencent) | bd09"})
_POINT_CODES = ["invalid_coordinate", "latitude_out_of_range", "longitude_out_of_range",
                "invalid_coord_system"]


# Documented as numbers; parsed by the service (validation=False), so a bad number gets its stable 400
# code (`invalid_coordinate`, `…_out_of_range`) rather than a generic 422.
class PointQuery(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90),
                       metadata={"description": "latitude, −90…90", "example": 39.9087})
    lon = fields.Float(required=True, validate=validate.Range(-180, 180),
                       metadata={"description": "longitude, −180…180", "example": 116.3975})
    coord = _COORD

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


class Point(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), metadata={"example": 39.9087})
    lon = fields.Float(required=True, validate=validate.Range(-180, 180), metadata={"example": 116.3975})

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


class BatchBody(Schema):
    points = fields.List(fields.Nested(Point), required=True, validate=validate.Length(1, MAX_BATCH),
                         metadata={"description": f"1–{MAX_BATCH} points"})
    coord = _COORD

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


class PlaceOut(Schema):
    country = fields.String(allow_none=True)
    country_code = fields.String(allow_none=True)
    province = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    district = fields.String(allow_none=True)
    adcode = fields.String(allow_none=True, metadata={"description": "China only"})
    distance_km = fields.Float(allow_none=True)
    confidence = fields.Float()
    source = fields.String(metadata={"description": "polygon | nearest_city"})
    coord = fields.String()
    lat = fields.Float()
    lon = fields.Float()


class PlacesOut(Schema):
    results = fields.List(fields.Nested(PlaceOut))
    count = fields.Integer()


@bp.record_once
def _preload(state) -> None:
    # With gunicorn --preload (preload_app = True) this runs in the master: the ~3 s load and the
    # polygon cache write happen once, and forked workers share the pages instead of each loading.
    if state.app.config.get("LOCATION_PRELOAD"):
        get_service(state.app).data  # noqa: B018


@bp.get("/location")
@bp.auth_required(client_auth)
@bp.input(PointQuery, location="query", arg_name="query", validation=False)
@bp.output(PlaceOut)
@bp.doc(summary="GPS point → place (Chinese names)", description=_PLACE_DOC,
        responses=errors({400: _POINT_CODES}))
def lookup(query):
    args = request.args
    coord = _check_coord(args.get("coord", "wgs84"))
    return get_service().lookup(args.get("lat"), args.get("lon"), coord)


@bp.post("/location/batch")
@bp.auth_required(client_auth)
@bp.doc(summary=f"Up to {MAX_BATCH} points → places, in order", description=_PLACE_DOC,
        responses=errors({400: ["invalid_json", "invalid_batch", "batch_too_large", *_POINT_CODES]}))
@bp.input(BatchBody, location="json", arg_name="body", validation=False)
@bp.output(PlacesOut)
def batch(body):
    # Our own parsing (validation=False): the service's codes name the bad point precisely.
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise BadRequest("请求体必须是 JSON 对象 {points: [...]}", code="invalid_json")
    coord = payload.get("coord", "wgs84")
    _check_coord(coord)
    points = payload.get("points")
    for i, point in enumerate(points if isinstance(points, list) else []):
        # JSON numbers, as documented: a string or a [lat, lon] pair is not a point of this API
        if not isinstance(point, dict) or not all(_is_number(point.get(k)) for k in ("lat", "lon")):
            raise BadRequest(f"第 {i + 1} 个点应为 {{lat: 数字, lon: 数字}}", code="invalid_coordinate")
    results = get_service().lookup_many(points, coord)
    return {"results": results, "count": len(results)}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_coord(coord) -> str:
    if coord not in COORD_SYSTEMS:   # exactly as documented (the service alone would also take "WGS84")
        raise BadRequest("coord 只能是 wgs84、gcj02 或 bd09", code="invalid_coord_system")
    return coord
