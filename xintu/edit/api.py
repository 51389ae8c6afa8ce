"""POST /api/v1/image-edit and GET /api/v1/image-edit/{task} — thin over the app's ImageEditService."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask import validators as validate
from flask import Response, request
from marshmallow import EXCLUDE

from xintu.apidoc import errors
from xintu.auth import client_auth, current_user
from xintu.classify.intake import MAX_BYTES
from xintu.edit.images import MAX_IMAGES, check_count
from xintu.edit.service import get_service

bp = APIBlueprint("image_edit", __name__, url_prefix="/api/v1", tag="image-edit")

_TASK_DOC = ("status queued|running|succeeded|partial|failed; images[i] {index, status, url, error, "
             "error_code, cached}; error_code (also in error) content_moderated (upstream moderation refused "
             "the photo or result) | upstream_failed | result_url_refused | result_download_failed | "
             "result_too_large | result_invalid | timeout | edit_not_configured | worker_error; "
             "url = GET /api/v1/image-edit/{task}/results/{index} once the image has a result; "
             "credits {reserved, charged, refunded}. One credit per image that succeeds; cached results are free.")


class EditForm(Schema):
    images = fields.List(fields.File(), required=True, validate=validate.Length(1, MAX_IMAGES),
                         metadata={"description": f"1–{MAX_IMAGES} photos, ≤ 10 MB each"})
    prompt = fields.String(required=True, validate=validate.Length(1, 800), metadata={
        "description": "instruction, ≤ 800 characters", "example": "把背景换成海边"})
    options = fields.String(metadata={"description": 'JSON: {"negative_prompt": "…", "watermark": false}'})

    class Meta:
        unknown = EXCLUDE   # parsed by hand: other fields are ignored, so the document allows them


@bp.post("/image-edit")
@bp.auth_required(client_auth, roles=["user"])
@bp.input(EditForm, location="form_and_files", arg_name="form", validation=False)
@bp.doc(summary="Queue an image edit (paid in credits)", description=_TASK_DOC, responses={
    202: "task accepted", **errors({
        400: ["no_images", "too_many_images", "prompt_required", "prompt_too_long", "prompt_invalid",
              "image_empty", "image_truncated", "image_corrupt", "invalid_options"],
        402: ["insufficient_credits"], 413: ["image_too_large", "image_too_many_pixels"],
        415: ["image_unsupported"], 503: ["edit_upstream_unavailable", "edit_not_configured"]})})
def create(form):
    # Parsed here (validation=False) so each problem gets its stable code rather than a generic 422.
    files = request.files.getlist("images")
    check_count(len(files))  # before reading any of them
    # At most the limit + 1 byte of each in memory: the intake then answers image_too_large.
    uploads = [f.read(MAX_BYTES + 1) for f in files]
    task = get_service().create(
        current_user(), uploads, request.form.get("prompt"), request.form.get("options"))
    return task, 202


@bp.get("/image-edit/<string:task_id>")
@bp.auth_required(client_auth, roles=["user"])
@bp.doc(summary="Poll an image edit task", description=_TASK_DOC,
        responses=errors({404: ["edit_task_not_found"]}))
def show(task_id):
    return get_service().get(current_user(), task_id)


@bp.get("/image-edit/<string:task_id>/results/<int:index>")
@bp.auth_required(client_auth, roles=["user"])
@bp.doc(summary="Download one result image of a task (owner only)",
        description="The edited image as stored by the worker (JPEG, PNG or WEBP), with an ETag: "
        "send If-None-Match to get 304. Results do not change, so clients may keep them.",
        responses={200: {"description": "the image", "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}}}},
            304: "not modified", **errors({404: ["edit_task_not_found", "edit_result_not_found"]})})
def result(task_id, index):
    data, mime, etag = get_service().result(current_user(), task_id, index)
    rsp = Response(data, mimetype=mime)
    rsp.set_etag(etag)
    # Private: the image is the user's; one day, since it is addressed by task and never changes.
    rsp.headers["Cache-Control"] = "private, max-age=86400"
    return rsp.make_conditional(request)
