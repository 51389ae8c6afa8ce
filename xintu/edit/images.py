"""Checks and prepares the photos of an edit request before any credit is reserved.

Everything a client sends is checked here, on the bytes (never the claimed type or name): count,
size, real format, truncation, decompression bombs. The image sent upstream is the original when
upstream accepts it as is, else a re-encoded JPEG (HEIC, GIF, MPO, oversized photos).
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from xintu.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_IMAGES = 9
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 50_000_000
UPSTREAM_MAX_SIDE = 3072  # qwen-image-edit / wanx accept up to this many pixels per side
MAX_PROMPT = 800
_PASS_THROUGH = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_ACCEPTED = set(_PASS_THROUGH) | {"MPO", "GIF", "HEIF", "BMP", "TIFF"}


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
    from PIL import Image, ImageOps, UnidentifiedImageError

    _register_heif()
    which = f"第 {index + 1} 张图片"
    if not data:
        raise BadRequest(f"{which}是空文件", code="image_empty")
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"{which}超过 10 MB", code="image_too_large")
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; a bomb must be an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            fmt, (width, height) = img.format, img.size
            if fmt not in _ACCEPTED:
                raise UnidentifiedImageError(fmt)
            if width * height > MAX_PIXELS:
                raise PayloadTooLarge(f"{which}像素过多", code="image_too_many_pixels")
            img.load()
        except (UnidentifiedImageError, ValueError):
            raise UnsupportedMediaType(f"{which}不是支持的图片格式（jpg/png/webp/heic/gif）",
                                       code="unsupported_image_type") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PayloadTooLarge(f"{which}像素过多", code="image_too_many_pixels") from None
        except (OSError, SyntaxError):
            raise BadRequest(f"{which}已损坏或不完整", code="image_truncated") from None
    digest = hashlib.sha256(data).hexdigest()
    if fmt in _PASS_THROUGH and max(width, height) <= UPSTREAM_MAX_SIDE:
        return PreparedImage(digest, data, _PASS_THROUGH[fmt], width, height)
    img = ImageOps.exif_transpose(img).convert("RGB")
    img.thumbnail((UPSTREAM_MAX_SIDE, UPSTREAM_MAX_SIDE))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return PreparedImage(digest, out.getvalue(), "image/jpeg", img.width, img.height)


def _register_heif() -> None:
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass
