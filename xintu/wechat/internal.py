"""Routes that WeChat reaches through the web tier (event callback, OAuth landing, pay notify).

In production (``REQUIRE_INTERNAL_HEADER``, forced on by ``ENV=production``) these answer only when the
request carries the shared secret Lighttpd adds and arrives from an allow-listed web-tier address.  The
address is the TCP peer as gunicorn saw it, not X-Forwarded-For (which the web tier fills with WeChat's
address).  Embedded mode turns the switch off so the sandbox can call the app directly.  WeChat's own
signatures are checked by the views either way.
"""
from __future__ import annotations

import functools
import hmac

from flask import current_app, request

from xintu.errors import NotFound
from xintu.proxies import peer_address

HEADER = "X-Xintu-Internal"


def internal_only(view):
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        config = current_app.config
        if config.get("REQUIRE_INTERNAL_HEADER"):
            secret = config.get("INTERNAL_SHARED_SECRET") or ""
            presented = request.headers.get(HEADER, "")
            allowed = peer_address() in set(config.get("INTERNAL_ALLOWED_ADDRS") or ())
            if not (secret and hmac.compare_digest(presented.encode(), secret.encode()) and allowed):
                # Look like an unknown route: nothing here for anyone but the web tier.
                raise NotFound("资源不存在", code="not_found")
        return view(*args, **kwargs)
    return guarded
