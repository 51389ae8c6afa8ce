"""Checks and prepares the photos of an edit request before any credit is reserved.

Count and prompt are checked here; each photo goes through classification's intake (size, real
format from the bytes, truncation, decompression bombs — one set of rules and error codes for the
whole API). The image sent upstream is the original when upstream accepts it as is, else a JPEG of
the decoded photo (HEIC, GIF, MPO, or larger than upstream accepts).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from xintu.classify.intake import decode
from xintu.errors import BadRequest, XintuError

MAX_IMAGES = 9
UPSTREAM_MAX_SIDE = 3072  # the qwen-image / wan edit models accept up to this many pixels per side
MAX_PROMPT = 800
_PASS_THROUGH = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass
class PreparedImage:
    sha256: str  # of the bytes the client sent: the cache key
    data: bytes  # what goes upstream
    mime: str
    width: int
    height: int


def check_prompt(prompt) -> str:
    prompt = (prompt or "").strip() if isinstance(prompt, str) or prompt is None else None
    if prompt is None:
        raise BadRequest("prompt 必须是文字", code="prompt_invalid")
    if not prompt:
        raise BadRequest("请填写修改要求", code="prompt_required")
    if len(prompt) > MAX_PROMPT:
        raise BadRequest(f"修改要求最多 {MAX_PROMPT} 个字", code="prompt_too_long")
    return prompt


def check_count(n: int) -> None:
    if n < 1:
        raise BadRequest("请至少上传 1 张图片", code="no_images")
    if n > MAX_IMAGES:
        raise BadRequest(f"一次最多 {MAX_IMAGES} 张图片", code="too_many_images")


def prepare_image(data: bytes, index: int = 0) -> PreparedImage:
    """Validate with classification's intake (same checks, same error codes), then pick what to send."""
    try:
        # work_side = upstream's limit: the decoded image is what we send when the original can't be.
        intake = decode(data, work_side=UPSTREAM_MAX_SIDE)
    except XintuError as exc:
        exc.message = f"第 {index + 1} 张图片：{exc.message}"
        raise
    if intake.format in _PASS_THROUGH and max(intake.width, intake.height) <= UPSTREAM_MAX_SIDE:
        return PreparedImage(intake.sha256, data, _PASS_THROUGH[intake.format], intake.width, intake.height)
    out = io.BytesIO()
    intake.image.save(out, "JPEG", quality=92)
    return PreparedImage(intake.sha256, out.getvalue(), "image/jpeg", *intake.image.size)
