"""Image intake: bytes from a client → a small RGB working image, or a 4xx error with a stable code.

Everything a client can send is hostile until proven an image: the size is checked before decoding, only
the formats we accept are even tried (Pillow would otherwise try every plugin it has, EPS included), the
pixel count is checked from the header before any pixel is decoded (decompression bombs), and decode
failures become ``XintuError``s so a worker never dies and the API never answers 500.
"""
from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass, field

from xintu.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BYTES = 10 * 1024 * 1024
# 12 MP phone photos are the norm, 50–108 MP exist. A JPEG is decoded at 1/2–1/8 scale (draft), so it may
# be large; other formats decode in full (a 50 MP RGBA PNG is 200 MB in a worker), so they get less.
MAX_PIXELS = 110_000_000
MAX_PIXELS_FULL_DECODE = 50_000_000
#: Long side of the working image: enough for MTCNN (640) and text detection (≤ 959, see ocr.py).
WORK_SIDE = 960
# Pillow's JPEG opener also returns MPO (multi-picture JPEG from phones and 3D cameras).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "HEIF")
MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
        "GIF": "image/gif", "HEIF": "image/heic"}
_TAG_MAKE, _TAG_MODEL, _TAG_EXIF_IFD, _TAG_DATETIME_ORIGINAL = 0x010F, 0x0110, 0x8769, 0x9003

_heif_lock = threading.Lock()
_heif_ready = False


def _register_heif():
    global _heif_ready
    with _heif_lock:
        if not _heif_ready:
            import pillow_heif
            pillow_heif.register_heif_opener()
            _heif_ready = True


@dataclass
class Intake:
    sha256: str
    format: str
    size_bytes: int
    width: int              # of the full image, after EXIF orientation
    height: int
    image: object           # PIL.Image.Image, RGB, long side ≤ WORK_SIDE
    camera: bool            # EXIF names a camera make/model or a capture time: a photo, not a render
    exif: dict = field(default_factory=dict)

    @property
    def mime(self) -> str:
        return MIME.get(self.format, "application/octet-stream")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_size(data: bytes, max_bytes: int = MAX_BYTES) -> None:
    if not data:
        raise BadRequest("图片为空", code="image_empty")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"图片超过 {max_bytes // (1024 * 1024)} MB", code="image_too_large")


def _camera_exif(img) -> tuple[bool, dict]:
    try:
        exif = img.getexif()
    except Exception:  # a broken EXIF block must not reject a viewable photo
        return False, {}
    info = {}
    for tag, key in ((_TAG_MAKE, "make"), (_TAG_MODEL, "model")):
        value = exif.get(tag)
        if isinstance(value, str) and value.strip("\x00 "):
            info[key] = value.strip("\x00 ")[:40]
    try:
        taken = exif.get_ifd(_TAG_EXIF_IFD).get(_TAG_DATETIME_ORIGINAL)
    except Exception:
        taken = None
    if isinstance(taken, str) and taken.strip("\x00 "):
        info["taken_at"] = taken.strip("\x00 ")[:19]
    return bool(info), info


def _to_rgb(img):
    from PIL import Image
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        img = img.convert("I") if img.mode != "F" else img
        return img.point(lambda v: v / 256).convert("L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white, as the UI the screenshot came from most likely showed them.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def decode(data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
           work_side: int = WORK_SIDE, draft: bool = True) -> Intake:
    """Validate and decode ``data``. ``draft=False`` forces a full JPEG decode (for the benchmark)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    check_size(data, max_bytes)
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                                                b"msf1"):
        _register_heif()
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS if _heif_ready else ALLOWED_FORMATS[:-1])
    except UnidentifiedImageError:
        raise UnsupportedMediaType("不是支持的图片格式（jpg/png/webp/gif/heic）", code="image_unsupported")
    except Image.DecompressionBombError:
        raise PayloadTooLarge("图片像素过多", code="image_too_many_pixels")
    except Exception:
        raise BadRequest("图片文件头已损坏", code="image_corrupt")
    w, h = img.size
    if w < 1 or h < 1:
        raise BadRequest("图片尺寸无效", code="image_corrupt")
    fmt = img.format
    if w * h > (max_pixels if fmt in ("JPEG", "MPO") or not draft else min(max_pixels, MAX_PIXELS_FULL_DECODE)):
        raise PayloadTooLarge("图片像素过多", code="image_too_many_pixels")
    camera, info = _camera_exif(img)
    orientation = info_orientation(img)
    try:
        if draft and fmt in ("JPEG", "MPO") and max(w, h) > work_side:
            # Ask for a size with the photo's own aspect ratio: draft picks the smallest DCT scale
            # (1/2, 1/4, 1/8) that still covers it, and a mismatched box would force a full decode.
            scale = work_side / max(w, h)
            img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except OSError as exc:
        if "truncated" in str(exc):
            raise BadRequest("图片不完整（文件被截断）", code="image_truncated")
        raise BadRequest("图片已损坏，无法解码", code="image_corrupt")
    except (ValueError, SyntaxError, IndexError, TypeError, EOFError):
        raise BadRequest("图片已损坏，无法解码", code="image_corrupt")
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    if max(img.size) > work_side:
        img.thumbnail((work_side, work_side), Image.BILINEAR, reducing_gap=2.0)
    return Intake(sha256=sha256_hex(data), format=fmt, size_bytes=len(data), width=w, height=h,
                  image=img, camera=camera, exif=info)


def info_orientation(img) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1
