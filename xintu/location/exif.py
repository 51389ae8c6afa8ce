"""GPS position from a photo's EXIF (WGS-84 by the EXIF standard, whatever the phone's maps use)."""
from __future__ import annotations

import math
from pathlib import Path

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif", ".mpo"}
_GPS_IFD = 0x8825
_LAT_REF, _LAT, _LON_REF, _LON = 1, 2, 3, 4


def _degrees(value) -> float:
    """EXIF stores degrees, minutes, seconds as three rationals; some writers give one decimal."""
    parts = [float(v) for v in (value if isinstance(value, (tuple, list)) else (value,))]
    while len(parts) < 3:
        parts.append(0.0)
    return parts[0] + parts[1] / 60.0 + parts[2] / 3600.0


def _ref(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return str(value or "").strip().rstrip("\x00").upper()


def read_gps(path) -> tuple[float, float] | None:
    """(lat, lon) in decimal degrees, or None when the file has no usable GPS position."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gps = img.getexif().get_ifd(_GPS_IFD)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    if _LAT not in gps or _LON not in gps:
        return None
    try:
        lat, lon = _degrees(gps[_LAT]), _degrees(gps[_LON])
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if _ref(gps.get(_LAT_REF)) == "S":
        lat = -lat
    if _ref(gps.get(_LON_REF)) == "W":
        lon = -lon
    # Cameras without a fix often write 0/0 or garbage; neither is a place.
    if not (math.isfinite(lat) and math.isfinite(lon)) or (lat == 0.0 and lon == 0.0):
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    return lat, lon


def iter_photos(folder):
    """Photo files under ``folder`` (recursively), in a stable order."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # HEIC support is optional for reading GPS
        pass
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES:
            yield path
