"""Fetch an edited image from upstream's result URL so we can keep it (those URLs expire in ~24 h).

The download is bounded (size, time) and checked (an ``image/*`` Content-Type, then Pillow must
read it as JPEG / PNG / WEBP); anything else is a ``BadResult`` and the worker fails that image,
which refunds its credit like any other failure. The stored MIME type comes from the bytes, not
from upstream's header.
"""
from __future__ import annotations

import io

_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


class BadResult(Exception):
    """The result could not be downloaded, or is not an image we will serve."""


def fetch_result(url: str, max_bytes: int, timeout: float) -> tuple[bytes, str]:
    """Download ``url``; returns (bytes, mime) or raises BadResult."""
    import requests

    try:
        with requests.get(url, stream=True, timeout=timeout) as rsp:
            if rsp.status_code != 200:
                raise BadResult(f"result download: HTTP {rsp.status_code}")
            kind = rsp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not kind.startswith("image/"):
                raise BadResult(f"result download: Content-Type {kind or 'missing'}")
            declared = rsp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise BadResult(f"result download: over {max_bytes} bytes (Content-Length {declared})")
            data = bytearray()
            # The header may be absent or lie: count what actually arrives.
            for piece in rsp.iter_content(64 * 1024):
                data += piece
                if len(data) > max_bytes:
                    raise BadResult(f"result download: over {max_bytes} bytes")
    except requests.RequestException as exc:
        raise BadResult(f"result download: {type(exc).__name__}") from exc
    return bytes(data), check_image(bytes(data))


def check_image(data: bytes) -> str:
    """The MIME type of ``data`` when Pillow reads it as a complete image we serve, else BadResult."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            img.load()  # decodes every pixel: a truncated or corrupt body fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadResult(f"result is not a readable image: {type(exc).__name__}") from exc
    if fmt not in _FORMATS:
        raise BadResult(f"result format {fmt} is not served")
    return _FORMATS[fmt]
