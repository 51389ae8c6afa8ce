"""Fetch an edited image from upstream's result URL so we can keep it (those URLs expire in ~24 h).

The URL comes from upstream, so it is checked like input: https only, to a host matching
``EDIT_RESULT_HOSTS`` (DashScope's result buckets), default port, no credentials in it. The one
exception is the embedded sandbox: with ``SANDBOX`` on (never in production), URLs on the exact origin
of the configured edit endpoint (the fake, plain http on loopback) are admitted too. Redirects are not
followed. The download has a total deadline (``EDIT_RESULT_TIMEOUT``: a timer shuts the socket down, so
a server dripping bytes cannot stretch it), a size cap counted on what arrives, an ``image/*``
Content-Type, and then the bytes must be a complete JPEG / PNG / WEBP within the decode limits of
classification's intake. Anything else is a ``BadResult`` with a stable ``code`` — the only thing the
client sees — and the worker fails that image, which refunds its credit. The stored MIME type comes
from the bytes, not from upstream's header.
"""
from __future__ import annotations

import fnmatch
import io
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from xintu.classify.intake import MAX_DECODED_BYTES, MAX_PIXELS_FULL_DECODE, decode_slot, decoded_bytes

_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_CONNECT_TIMEOUT = 5.0


class BadResult(Exception):
    """The result could not be downloaded, or is not an image we will serve.

    ``code`` is stable and goes into the task (``result_url_refused``, ``result_download_failed``,
    ``result_too_large``, ``result_invalid``); ``detail`` is for the log only.
    """

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class ResultPolicy:
    hosts: tuple[str, ...]          # fnmatch patterns of host names, https only
    sandbox_origin: str | None      # scheme://host:port admitted as is (the sandbox's own fake)
    max_bytes: int
    deadline: float                 # seconds for the whole download

    @classmethod
    def from_config(cls, config) -> ResultPolicy:
        origin = None
        if config.get("SANDBOX") and config.get("ENV") != "production":
            base = config.get("EDIT_DASHSCOPE_BASE_URL") or config.get("DASHSCOPE_BASE_URL")
            origin = _origin(base) if base else None
        return cls(tuple(h.lower() for h in config.get("EDIT_RESULT_HOSTS") or ()), origin,
                   int(config.get("EDIT_RESULT_MAX_BYTES", 30 * 1024 * 1024)),
                   float(config.get("EDIT_RESULT_TIMEOUT", 60)))


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return None
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def check_url(url, policy: ResultPolicy) -> None:
    if not isinstance(url, str) or len(url) > 4096:
        raise BadResult("result_url_refused", "not a URL")
    try:
        parts = urlsplit(url)
        origin = _origin(url)
    except ValueError:
        raise BadResult("result_url_refused", "unparsable URL") from None
    if policy.sandbox_origin and origin == policy.sandbox_origin and not parts.username:
        return
    if parts.scheme != "https":
        raise BadResult("result_url_refused", f"scheme {parts.scheme or 'missing'} is not https")
    host = (parts.hostname or "").lower()
    if parts.username or parts.password or parts.port not in (None, 443):
        raise BadResult("result_url_refused", "credentials or a port in the URL")
    if not any(fnmatch.fnmatchcase(host, pattern) for pattern in policy.hosts):
        raise BadResult("result_url_refused", f"host {host} is not in EDIT_RESULT_HOSTS")


def fetch_result(url: str, policy: ResultPolicy) -> tuple[bytes, str]:
    """Download ``url``; returns (bytes, mime) or raises BadResult."""
    import requests

    check_url(url, policy)
    start = time.monotonic()
    timeout = (min(_CONNECT_TIMEOUT, policy.deadline), policy.deadline)
    try:
        with requests.get(url, stream=True, timeout=timeout, allow_redirects=False) as rsp:
            if 300 <= rsp.status_code < 400:
                raise BadResult("result_download_failed", f"redirect {rsp.status_code} not followed")
            if rsp.status_code != 200:
                raise BadResult("result_download_failed", f"HTTP {rsp.status_code}")
            kind = rsp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not kind.startswith("image/"):
                raise BadResult("result_invalid", f"Content-Type {kind or 'missing'}")
            declared = rsp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > policy.max_bytes:
                raise BadResult("result_too_large", f"Content-Length {declared} > {policy.max_bytes}")
            # The deadline covers the body too: at the deadline the socket is shut down, which ends
            # a read blocked on a server that sends a byte now and then.
            watchdog = threading.Timer(max(0.0, policy.deadline - (time.monotonic() - start)),
                                       _shutdown, (rsp.raw,))
            watchdog.daemon = True
            watchdog.start()
            try:
                data = bytearray()
                for piece in rsp.iter_content(64 * 1024):  # the header may be absent or lie: count
                    data += piece
                    if len(data) > policy.max_bytes:
                        raise BadResult("result_too_large", f"over {policy.max_bytes} bytes")
                    if time.monotonic() - start > policy.deadline:
                        raise BadResult("result_download_failed", f"over {policy.deadline:g} s")
            finally:
                watchdog.cancel()
            if time.monotonic() - start > policy.deadline:
                raise BadResult("result_download_failed", f"over {policy.deadline:g} s")
    except requests.RequestException as exc:
        if time.monotonic() - start > policy.deadline:
            raise BadResult("result_download_failed", f"over {policy.deadline:g} s") from exc
        raise BadResult("result_download_failed", type(exc).__name__) from exc
    return bytes(data), check_image(bytes(data))


def _shutdown(raw) -> None:
    try:
        raw.shutdown()
    except (OSError, ValueError, RuntimeError):  # already closed or released: nothing to stop
        pass


def check_image(data: bytes) -> str:
    """The MIME type of ``data`` when Pillow reads it as a complete image we serve, else BadResult.

    Only the served formats are even tried, the decoded size is checked from the header first
    (the intake's limits), and the full decode takes one of the process's decode slots.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=tuple(_FORMATS)) as img:
            fmt = img.format
            w, h = img.size
            if w * h > MAX_PIXELS_FULL_DECODE or decoded_bytes(img.mode, img.size) > MAX_DECODED_BYTES:
                raise BadResult("result_invalid", f"{w}×{h} {img.mode} is over the decode limits")
            with decode_slot():
                img.load()  # decodes every pixel: a truncated or corrupt body fails here
    except UnidentifiedImageError as exc:
        raise BadResult("result_invalid", "not a JPEG/PNG/WEBP image") from exc
    except (OSError, SyntaxError, ValueError, IndexError, TypeError, EOFError,
            Image.DecompressionBombError) as exc:
        raise BadResult("result_invalid", f"not a readable image: {type(exc).__name__}") from exc
    return _FORMATS[fmt]
