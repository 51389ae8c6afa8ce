"""Image intake: bytes from a client → a small RGB working image, or a 4xx error with a stable code.

Everything a client can send is hostile until proven an image: the size is checked before decoding, only
the formats we accept are even tried (Pillow would otherwise try every plugin it has, EPS included), the
pixel count is checked from the header before any pixel is decoded (decompression bombs), and decode
failures become ``XintuError``s so a worker never dies and the API never answers 500.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass, field

from xintu.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BYTES = 10 * 1024 * 1024
# 12 MP phone photos are the norm, 50–108 MP exist. A JPEG is decoded at 1/2–1/8 scale (draft), so it may
# be large; other formats decode in full, and a PNG of zeros compresses ~1000:1 (a 7071² RGBA PNG is
# 190 KB and 200 MB decoded), so what counts for them is the memory the decoded pixels take.
MAX_PIXELS = 110_000_000
MAX_PIXELS_FULL_DECODE = 50_000_000
#: Largest decoded image (bytes of Pillow's pixel buffer) we let one decode hold: 25 MP at 4 bytes/pixel,
#: which still takes 1080×20000 long screenshots.
MAX_DECODED_BYTES = 100 * 1024 * 1024
#: Decoded non-RGB images above this many pixels are shrunk strip by strip: no second full-size copy.
_STRIP_PIXELS = 1 << 20
#: Long side of the working image: enough for MTCNN (640) and text detection (≤ 959, see ocr.py).
WORK_SIDE = 960
# Pillow's JPEG opener also returns MPO (multi-picture JPEG from phones and 3D cameras).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "HEIF")
MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
        "GIF": "image/gif", "HEIF": "image/heic"}
_TAG_MAKE, _TAG_MODEL, _TAG_EXIF_IFD, _TAG_DATETIME_ORIGINAL = 0x010F, 0x0110, 0x8769, 0x9003

_heif_lock = threading.Lock()
_heif_ready = False
# Full-size decodes in flight in this process. The batch endpoint runs 20 items at once for the LLM
# stage; their decodes queue here, so a batch holds at most this many full-size images at a time.
_decode_slots = threading.BoundedSemaphore(2)
# Pillow keeps these in one buffer of 1 byte per pixel; every other mode takes 4 ("RGB" included).
_ONE_BYTE_MODES = ("1", "L", "P")
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}


def set_decode_concurrency(n: int) -> None:
    """How many full-size decodes one process runs at once (``IMAGE_DECODE_CONCURRENCY``).

    Also makes Pillow allocate pixels in blocks of up to 64 MB (its default is 16 MB, what
    ``PILLOW_BLOCK_SIZE`` sets): glibc serves an allocation above 32 MB by mmap and gives it back on
    free, while 16 MB blocks land in per-thread malloc arenas that keep the memory after the request.
    """
    global _decode_slots
    from PIL import Image

    _decode_slots = threading.BoundedSemaphore(max(1, int(n)))
    if "PILLOW_BLOCK_SIZE" not in os.environ:
        Image.core.set_block_size(64 * 1024 * 1024)


def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    """Memory Pillow needs for the pixels of an image of this mode and size."""
    return size[0] * size[1] * (1 if mode in _ONE_BYTE_MODES else 4)


def decode_slot():
    """Hold this around any full decode of untrusted bytes (classification, edit uploads and results)."""
    return _decode_slots


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
    return _camera_info(exif)


def _camera_info(exif) -> tuple[bool, dict]:
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


def _shrink_to_rgb(img, work_side: int):
    """A loaded image → RGB with long side ≤ ``work_side``, holding at most one full-size buffer.

    RGB and small images take the plain path (the resize makes only the small result). Any other
    large image is shrunk strip by strip (``_shrink_rows``): Pillow's own resize/convert of an RGBA
    image would first make a full-size premultiplied copy, and the RGB conversion another.
    """
    from PIL import Image

    w, h = img.size
    if w * h <= _STRIP_PIXELS or img.mode == "RGB":
        out = _to_rgb(img)
        if max(out.size) > work_side:
            out.thumbnail((work_side, work_side), Image.BILINEAR, reducing_gap=2.0)
        return out
    return _shrink_rows(img.size, lambda top, bottom: img.crop((0, top, w, bottom)), work_side)


def _shrink_rows(full: tuple[int, int], rows, work_side: int):
    """RGB, long side ≤ ``work_side``, from an image of size ``full`` read as strips ``rows(top, bottom)``.

    Strips are about a megapixel; each is converted (transparency onto white) and resized on its own
    into its rows of the result, with a margin of source rows for the filter, so the seams match a
    whole-image resize.
    """
    import math

    from PIL import Image

    w, h = full
    scale = min(1.0, work_side / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = Image.new("RGB", size)
    ratio = h / size[1]                                  # source rows per output row
    margin = math.ceil(ratio) + 1                        # bilinear reads ±ratio rows around each
    step = max(1, int(_STRIP_PIXELS / w / ratio))        # output rows per strip
    for row in range(0, size[1], step):
        end = min(size[1], row + step)
        y0, y1 = row * ratio, end * ratio
        top, bottom = max(0, math.floor(y0) - margin), min(h, math.ceil(y1) + margin)
        strip = _to_rgb(rows(top, bottom))
        out.paste(strip.resize((size[0], end - row), Image.BILINEAR, box=(0, y0 - top, w, y1 - top)),
                  (0, row))
    return out


def _decode_heif(data: bytes, work_side: int):
    """HEIC/HEIF → (small RGB image, camera, exif info), from libheif's own buffer.

    Pillow's HEIF plugin copies libheif's decoded pixels (3 bytes each) into a Pillow image (4 more):
    a 24 MP iPhone photo would hold 170 MB. Here strips are read straight from libheif's buffer, so
    the decode holds its 3 bytes a pixel and a strip. libheif has already applied the rotation and
    mirroring the file asks for, so no EXIF orientation is applied after it.
    """
    import pillow_heif
    from PIL import Image

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    (w, h), mode = heif.size, heif.mode
    if mode not in ("RGB", "RGBA", "L") or w * h * len(mode) > MAX_DECODED_BYTES:
        raise PayloadTooLarge("图片像素过多", code="image_too_many_pixels")
    exif = Image.Exif()
    raw_exif = heif.info.get("exif")
    if raw_exif:
        try:
            exif.load(raw_exif)
        except Exception:  # a broken EXIF block must not reject a viewable photo
            exif = Image.Exif()
    camera, info = _camera_info(exif)
    pixels, stride = memoryview(heif.data), heif.stride  # .data decodes

    def rows(top, bottom):
        return Image.frombuffer(mode, (w, bottom - top), pixels[top * stride:bottom * stride], "raw", mode,
                                stride, 1)

    small = _shrink_rows((w, h), rows, work_side) if w * h > _STRIP_PIXELS or max(w, h) > work_side \
        else _to_rgb(rows(0, h))
    return small, (w, h), camera, info


def decode(data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
           work_side: int = WORK_SIDE, draft: bool = True) -> Intake:
    """Validate and decode ``data``. ``draft=False`` forces a full JPEG decode (for the benchmark)."""
    from PIL import Image, UnidentifiedImageError

    check_size(data, max_bytes)
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                                                b"msf1"):
        _register_heif()
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS if _heif_ready else ALLOWED_FORMATS[:-1])
    except UnidentifiedImageError:
        raise UnsupportedMediaType("不是支持的图片格式（jpg/png/webp/gif/heic）", code="image_unsupported") from None
    except Image.DecompressionBombError:
        raise PayloadTooLarge("图片像素过多", code="image_too_many_pixels") from None
    except Exception:
        raise BadRequest("图片文件头已损坏", code="image_corrupt") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise BadRequest("图片尺寸无效", code="image_corrupt")
    fmt = img.format
    if w * h > (max_pixels if fmt in ("JPEG", "MPO") or not draft else min(max_pixels, MAX_PIXELS_FULL_DECODE)):
        raise PayloadTooLarge("图片像素过多", code="image_too_many_pixels")
    try:
        if draft and fmt in ("JPEG", "MPO") and max(w, h) > work_side:
            # Ask for a size with the photo's own aspect ratio: draft picks the smallest DCT scale
            # (1/2, 1/4, 1/8) that still covers it, and a mismatched box would force a full decode.
            scale = work_side / max(w, h)
            img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
        if fmt == "HEIF":
            with decode_slot():
                small, (w, h), camera, info = _decode_heif(data, work_side)
            return Intake(sha256=sha256_hex(data), format=fmt, size_bytes=len(data), width=w, height=h,
                          image=small, camera=camera, exif=info)
        # After draft, size and mode are what load() will allocate (a JPEG's DCT scale included).
        if decoded_bytes(img.mode, img.size) > MAX_DECODED_BYTES:
            raise PayloadTooLarge("图片像素过多", code="image_too_many_pixels")
        with decode_slot():
            img.load()
            # EXIF only now: a PNG's getexif() loads every pixel to look for an eXIf chunk after IDAT.
            camera, info = _camera_exif(img)
            orientation = info_orientation(img)
            small = _shrink_to_rgb(img, work_side)
            if small is not img:
                img.close()  # the full-size buffer goes now, before the next decode may start
        if orientation in _TRANSPOSE:  # on the small image: a transpose is a full copy
            small = small.transpose(getattr(Image.Transpose, _TRANSPOSE[orientation]))
    except OSError as exc:
        if "truncated" in str(exc):
            raise BadRequest("图片不完整（文件被截断）", code="image_truncated") from exc
        raise BadRequest("图片已损坏，无法解码", code="image_corrupt") from exc
    except (ValueError, SyntaxError, IndexError, TypeError, EOFError, RuntimeError):  # RuntimeError: libheif
        raise BadRequest("图片已损坏，无法解码", code="image_corrupt") from None
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return Intake(sha256=sha256_hex(data), format=fmt, size_bytes=len(data), width=w, height=h,
                  image=small, camera=camera, exif=info)


def info_orientation(img) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1
