"""Classification endpoints. Images come as multipart files, or base64 in JSON for small clients."""
from __future__ import annotations

import base64
import binascii
import time

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Dict, File, Float, Integer, List, Nested, String
from apiflask.schema_adapters.marshmallow import parser
from apiflask.validators import Length, Regexp
from flask import current_app, g, request
from marshmallow import EXCLUDE

from xintu.apidoc import EXAMPLE_PNG_BASE64, errors, json_alternative
from xintu.auth import client_auth
from xintu.classify.cache import SHA256
from xintu.classify.intake import MAX_BYTES
from xintu.classify.service import MAX_BATCH, get_service
from xintu.errors import BadRequest, PayloadTooLarge

bp = APIBlueprint("classify", __name__, url_prefix="/api/v1/classify", tag="classify")
MAX_CHECK = 100
_BODY_DOC = ("Send the image as multipart/form-data field `image` (batch: repeated field `images`), or as JSON "
             "`{\"image_base64\": \"…\"}` (batch: `{\"images\": [{\"image_base64\": \"…\", \"filename\": \"…\"}]}`). "
             "jpg/png/webp/gif/mpo/heic, ≤ 10 MB each. The server hashes the bytes itself. A copy of a "
             "photo (e.g. resized to 1024 px) may name the SHA-256 of its original in `original_sha256` "
             "(multipart field, JSON key, per item in a batch): check-cache then finds the answer under that "
             "hash for this client only (its device, and its WeChat user once bound).")


_IMAGE_DOC = "jpg/png/webp/gif/mpo/heic, ≤ 10 MB"
_ONE_ERRORS = errors({400: ["image_missing", "image_empty", "image_base64_invalid", "image_corrupt",
                            "image_truncated", "image_unreadable", "original_sha256_invalid"],
                      413: ["image_too_large", "image_too_many_pixels"], 415: ["image_unsupported"]})


SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
_ORIGINAL_DOC = ("SHA-256 (hex) of the original photo this image is a copy of; recorded as this client's "
                 "claim, never shown to other users (/classify/local checks it and ignores it)")


def _original_field():
    """JSON: a SHA-256 or null (= none); the multipart twin is a plain string field."""
    return String(allow_none=True, validate=Regexp(SHA256_PATTERN), metadata={"description": _ORIGINAL_DOC})


class ImageUpload(Schema):
    image = File(required=True, metadata={"description": _IMAGE_DOC})
    original_sha256 = String(validate=Regexp(r"^([0-9a-fA-F]{64})?$"),
                             metadata={"description": _ORIGINAL_DOC + " (empty = none)"})

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


# What base64.b64decode(validate=True) takes, after an optional data: URI prefix.
BASE64 = r"^(data:[^,]*,)?(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class ImageBase64(Schema):
    image_base64 = String(required=True, validate=[Length(1), Regexp(BASE64)], metadata={
        "description": "the image bytes in base64, optionally as a `data:image/…;base64,` URI",
        "example": "data:image/png;base64," + EXAMPLE_PNG_BASE64})
    original_sha256 = _original_field()

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


class BatchUpload(Schema):
    images = List(File(), required=True, validate=Length(1, MAX_BATCH),
                  metadata={"description": f"1–{MAX_BATCH} images (repeat the field), {_IMAGE_DOC} each"})
    original_sha256 = List(String(validate=Regexp(r"^([0-9a-fA-F]{64})?$")), metadata={
        "description": "per image, in the order of `images` (repeat the field once per image, empty for "
                       "none): " + _ORIGINAL_DOC})

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


class BatchItem(Schema):
    image_base64 = String(required=True, validate=[Length(1), Regexp(BASE64)],
                          metadata={"description": "base64 or data: URI", "example": EXAMPLE_PNG_BASE64})
    filename = String(metadata={"description": "echoed in the result (first 200 characters)",
                                "example": "IMG_0001.png"})
    original_sha256 = _original_field()

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


class BatchBase64(Schema):
    images = List(Nested(BatchItem), required=True, validate=Length(1, MAX_BATCH))

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


class BatchItemOut(Schema):
    filename = String()
    sha256 = String()
    category = String()
    confidence = Float()
    description = String()
    method = String()
    near_duplicate = Boolean(metadata={"description": "true when answered from a stored answer of a "
                                                      "near-identical image (re-encoded, resized)"})
    details = Dict(metadata={"description": "`llm_skipped` (budget_device|budget_user|budget_global) when "
                                            "a budget was spent"})
    error = Dict(metadata={"description": "`{code, message}` when this image failed"})


class ResultOut(Schema):
    sha256 = String(metadata={"description": "SHA-256 of the bytes, computed by the server"})
    category = String(metadata={"description": "social_activities|pets|single_person|foods|travel_scenery|"
                                               "screenshot|idcard|other"})
    confidence = Float()
    description = String(metadata={"description": "short Chinese description (≤ 30 characters)"})
    method = String(metadata={"description": "cache|llm|local|llm_fallback|local_fallback"})
    near_duplicate = Boolean(metadata={"description": "with method cache: answered from a stored answer of "
                                                      "a near-identical image (re-encoded, resized); absent "
                                                      "otherwise"})
    details = Dict(metadata={"description": "/classify/local: the cues behind the answer; `llm_skipped` "
                                            "(budget_device|budget_user|budget_global) when a budget "
                                            "was spent"})


class BatchOut(Schema):
    count = Integer()
    elapsed_ms = Integer()
    results = List(Nested(BatchItemOut), metadata={
        "description": "per image, in order: a result with `filename`, "
                       "or `{filename, error: {code, message}}`"})


class CheckIn(Schema):
    sha256 = String(required=True, validate=Regexp(SHA256_PATTERN))


class CheckOut(Schema):
    sha256 = String()
    hit = Nested(ResultOut, allow_none=True)



class BatchCheckIn(Schema):
    hashes = List(String(validate=Regexp(SHA256_PATTERN)), required=True, validate=Length(1, MAX_CHECK))


class BatchCheckOut(Schema):
    hits = Dict(keys=String(), values=Nested(ResultOut), metadata={"description": "only the hashes found"})
    missing = List(String())


def _b64(value) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadRequest("缺少图片数据", code="image_missing")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    if len(value) > MAX_BYTES * 4 // 3 + 4:
        raise PayloadTooLarge("图片超过 10 MB", code="image_too_large")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("base64 图片数据无效", code="image_base64_invalid") from None


def _read(storage) -> bytes:
    data = storage.read(MAX_BYTES + 1)  # never more than the limit + 1 byte in memory
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge("图片超过 10 MB", code="image_too_large")
    return data


def _original(value, item: int | None = None, form: bool = False) -> str | None:
    """A client's ``original_sha256``: None when absent (JSON null; an empty multipart field), else 64 hex
    digits (lower-cased)."""
    if value is None or (form and value == ""):
        return None
    if not isinstance(value, str) or not SHA256.fullmatch(value.lower()):
        where = f"第 {item + 1} 张的 " if item is not None else ""
        raise BadRequest(f"{where}original_sha256 必须是 64 位十六进制 SHA-256", code="original_sha256_invalid")
    return value.lower()


def _one_image() -> tuple[bytes, str | None]:
    if request.files:
        storage = request.files.get("image") or next(iter(request.files.values()))
        original = _original(request.form.get("original_sha256"), form=True)
        return _read(storage), original
    body = request.get_json(silent=True)
    if isinstance(body, dict):
        original = _original(body.get("original_sha256"))
        return _b64(body.get("image_base64")), original
    raise BadRequest("请上传图片（multipart 字段 image，或 JSON image_base64）", code="image_missing")


def _many_images() -> list[tuple[str, bytes, str | None]]:
    if request.files:
        files = request.files.getlist("images") or [f for _, f in request.files.items(multi=True)]
        if len(files) > MAX_BATCH:
            raise BadRequest(f"一次最多 {MAX_BATCH} 张", code="batch_too_large")
        originals = request.form.getlist("original_sha256")
        if originals and len(originals) != len(files):
            raise BadRequest("original_sha256 的个数必须与图片数相同（没有的留空）", code="original_sha256_invalid")
        originals = [_original(v, i, form=True) for i, v in enumerate(originals)] or [None] * len(files)
        return [(f.filename or f"image{i}", _read(f), originals[i]) for i, f in enumerate(files)]
    body = request.get_json(silent=True)
    items = body.get("images") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest("请上传图片（multipart 字段 images，或 JSON images 列表）", code="image_missing")
    if len(items) > MAX_BATCH:
        raise BadRequest(f"一次最多 {MAX_BATCH} 张", code="batch_too_large")
    out = []
    for i, item in enumerate(items):
        item = item if isinstance(item, dict) else {}
        name = item.get("filename")
        if "filename" in item and not isinstance(name, str):
            raise BadRequest(f"第 {i + 1} 张的 filename 必须是字符串", code="invalid_filename")
        original = _original(item.get("original_sha256"), i)
        out.append(((name or f"image{i}")[:200], _b64(item.get("image_base64")), original))
    return out


def _client() -> str:
    return g.client.client_id


def _owner() -> tuple:
    """Whose LLM budgets a call spends: our session id and its user, never anything the client claims."""
    return g.client.id, g.client.user_id


# The uploads are parsed by hand (validation=False) so each problem keeps its stable code; the
# decorators document the multipart body and json_alternative its JSON base64 twin.
# The two hot routes (a classify cache hit, batch-check-cache) answer a Response built here, which APIFlask
# passes through: @bp.output still documents the body, _result_out gives exactly what ResultOut's dump
# would (its fields that are present; confidence a float), without marshmallow walking every hit.
_RESULT_FIELDS = tuple(ResultOut().fields)


def _result_out(result: dict) -> dict:
    out = {k: result[k] for k in _RESULT_FIELDS if k in result}
    if out.get("confidence") is not None:
        out["confidence"] = float(out["confidence"])
    return out


@bp.post("")
@bp.auth_required(client_auth)
@bp.input(ImageUpload, location="files", arg_name="form", validation=False)
@json_alternative(ImageBase64)
@bp.output(ResultOut)
@bp.doc(summary="Classify one image (cache → LLM → local model)", description=_BODY_DOC,
        responses=_ONE_ERRORS)
def classify(form):
    data, original = _one_image()
    result = get_service().classify(data, endpoint="classify", client=_client(), owner=_owner(),
                                    original_sha256=original)
    return current_app.json.response(_result_out(result))


@bp.post("/local")
@bp.auth_required(client_auth)
@bp.input(ImageUpload, location="files", arg_name="form", validation=False)
@json_alternative(ImageBase64)
@bp.output(ResultOut)
@bp.doc(summary="Classify one image with the local model only (no LLM), with the cues it used",
        description=_BODY_DOC, responses=_ONE_ERRORS)
def classify_local(form):
    data, _ = _one_image()   # a malformed original_sha256 is refused here too, as documented
    return get_service().classify(data, method="local", endpoint="classify/local", client=_client(),
                                  details=True)


@bp.post("/batch")
@bp.auth_required(client_auth)
@bp.input(BatchUpload, location="files", arg_name="form", validation=False)
@json_alternative(BatchBase64)
@bp.output(BatchOut)
@bp.doc(summary=f"Classify up to {MAX_BATCH} images concurrently; per-item results and errors",
        description=_BODY_DOC + " A bad image fails only its own item (`error` in the result).",
        responses=errors({400: ["image_missing", "image_base64_invalid", "invalid_filename",
                                "batch_too_large", "original_sha256_invalid"], 413: ["image_too_large"]}))
def classify_batch(form):
    start = time.perf_counter()
    items = _many_images()
    results = get_service().classify_many(items, endpoint="classify/batch", client=_client(), owner=_owner())
    return {"count": len(results), "elapsed_ms": round((time.perf_counter() - start) * 1000),
            "results": results}


@bp.post("/check-cache")
@bp.auth_required(client_auth)
@bp.input(CheckIn, arg_name="body")
@bp.output(CheckOut)
@bp.doc(summary="Is there a cached answer for this SHA-256? (lets a client skip the upload)",
        description="Reveals only the stored category of an image whose exact bytes the caller already has, "
                    "or of an original this client (device, or its WeChat user) claimed with "
                    "`original_sha256` on an upload.")
def check_cache(body):
    sha = body["sha256"].lower()
    hits = get_service().check_cache([sha], endpoint="classify/check-cache", client=_client(), claimant=_owner())
    return {"sha256": sha, "hit": hits.get(sha)}


def _all_hex(joined: str) -> bool:
    """Only hex digits: ``bytes.fromhex`` takes nothing else but whitespace, which would shorten its bytes."""
    try:
        return len(bytes.fromhex(joined)) * 2 == len(joined)
    except ValueError:
        return False


def _check_hashes(body) -> list[str]:
    """The hashes of a batch-check-cache body: distinct, lower-case. The usual well-formed body is checked
    here with the same rules as BatchCheckIn (one key, a list of 1–MAX_CHECK strings matching
    SHA256_PATTERN), in C-speed passes over the whole list; anything else goes through the schema itself, so
    a bad body gets exactly the validation error it always got."""
    hashes = body.get("hashes") if isinstance(body, dict) and len(body) == 1 else None
    if not (isinstance(hashes, list) and 1 <= len(hashes) <= MAX_CHECK and set(map(type, hashes)) == {str}
            and set(map(len, hashes)) == {64} and _all_hex(joined := "".join(hashes))):
        hashes = parser.parse(BatchCheckIn, request, location="json")["hashes"]
        joined = "".join(hashes)
    lowered = joined.lower()
    if lowered != joined:   # some upper-case digits: new strings (str.islower would scan 100× slower)
        hashes = [lowered[i:i + 64] for i in range(0, len(lowered), 64)]
    return list(dict.fromkeys(hashes))


_ENCODED: dict[int, tuple[dict, str]] = {}   # id(answer) → (the answer, its JSON): remembered answers repeat


def _hit_json(answer: dict) -> str:
    """One hit as the JSON ResultOut's dump gives, encoded once per answer object (the cache hands out the
    same dict for a remembered answer; the entry holds it, so its id cannot be reused while cached)."""
    entry = _ENCODED.get(id(answer))
    if entry is None or entry[0] is not answer:
        if len(_ENCODED) >= 50_000:
            _ENCODED.clear()
        entry = _ENCODED[id(answer)] = (answer, current_app.json.dumps(_result_out(answer), separators=(",", ":")))
    return entry[1]


@bp.post("/batch-check-cache")
@bp.auth_required(client_auth)
@bp.input(BatchCheckIn, arg_name="body", validation=False)   # validated by _check_hashes
@bp.output(BatchCheckOut)
@bp.doc(summary=f"Cached answers for up to {MAX_CHECK} SHA-256 hashes",
        description="As check-cache: server-verified answers, and this client's own claimed originals.")
def batch_check_cache(body):
    hashes = _check_hashes(body)
    hits = get_service().check_cache(hashes, endpoint="classify/batch-check-cache", client=_client(), batch=True,
                                     claimant=_owner(), normalized=True)
    # The body as the app's JSON provider would write {"hits": …, "missing": […]} (keys sorted, compact),
    # assembled from the encoded hits: JSON-encoding 50 answers per request was most of a warm request.
    found = ",".join([f'"{sha}":{_hit_json(hits[sha])}' for sha in sorted(hits)])
    missing = '","'.join([h for h in hashes if h not in hits])
    missing = f'"{missing}"' if missing else ""
    return current_app.response_class(f'{{"hits":{{{found}}},"missing":[{missing}]}}\n',
                                      mimetype="application/json")
