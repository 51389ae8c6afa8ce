"""Who is calling: forwarded headers count only when the TCP peer is one of our proxies.

werkzeug's ProxyFix believes X-Forwarded-For from anybody, so a host that reaches gunicorn directly
could pick its own address: bypass every per-address limit, or pass as loopback.  ``TrustedProxyFix``
applies ProxyFix only when the peer is in ``TRUSTED_PROXY_ADDRS`` (addresses or CIDR networks; the
default is loopback, where nginx runs); anyone else is taken at its TCP address and its X-Forwarded-*
headers are dropped.  The peer itself stays in the environ for the checks that must not depend on
forwarded headers at all (``peer_address``, ``ops_caller``).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from werkzeug.middleware.proxy_fix import ProxyFix

from xintu.errors import ConfigError

PEER_KEY = "xintu.peer_addr"
FORWARDED_KEY = "xintu.forwarded"
_FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
              "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")


def parse_networks(values, setting: str) -> tuple:
    networks = []
    for value in values or ():
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{setting}: {value!r} is not an address or network") from None
    return tuple(networks)


def address_in(address: str | None, networks) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


class TrustedProxyFix:
    def __init__(self, app, trusted, hops: int = 1):
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops)
        self.trusted = parse_networks(trusted, "TRUSTED_PROXY_ADDRS")
        # Per peer address, parsed once: behind nginx every request comes from the same one or two.
        self._is_trusted = lru_cache(maxsize=1024)(lambda peer: address_in(peer, self.trusted))

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR")
        environ[PEER_KEY] = peer
        environ[FORWARDED_KEY] = any(environ.get(key) for key in _FORWARDED)
        if self._is_trusted(peer):
            return self.fixed(environ, start_response)
        for key in _FORWARDED:
            environ.pop(key, None)
        return self.app(environ, start_response)


def peer_address(environ=None) -> str | None:
    """The TCP peer as gunicorn saw it, whatever X-Forwarded-For says."""
    if environ is None:
        from flask import request
        environ = request.environ
    return environ.get(PEER_KEY) or environ.get("REMOTE_ADDR")


def ops_caller(config, environ=None) -> bool:
    """For /metrics and the detailed /readyz: an allow-listed TCP peer that did not come through a proxy
    (nginx on the same host is a loopback peer too, but what it forwards is the public's)."""
    if environ is None:
        from flask import request
        environ = request.environ
    allowed = parse_networks(config.get("METRICS_ALLOWED_ADDRS") or ["127.0.0.1", "::1"],
                             "METRICS_ALLOWED_ADDRS")
    return address_in(peer_address(environ), allowed) and not environ.get(FORWARDED_KEY)
