"""Client identity: device tokens we issue, never ids the client claims.

Each app install registers once (``POST /api/v1/clients``, rate-limited per address) and gets a device
token; it sends ``Authorization: Bearer <token>`` from then on.  QR binding (member area) issues a token of
kind ``bound`` that also names the WeChat user.  Only the SHA-256 of a token is stored.

Views protect themselves with the APIFlask auth object, so the OpenAPI document shows the scheme::

    @bp.post("/classify")
    @bp.auth_required(client_auth)                    # any registered client → g.client
    @bp.auth_required(client_auth, roles=["user"])    # a client bound to a WeChat user → current_user()

A worker remembers a token's session row for ``SESSION_CACHE_SECONDS`` (2 s by default), so a busy client
costs no session query per request. ``revoke()`` drops the entries of the sessions it ends from this
process's memory at once; a revoke made by another worker, host or the CLI takes effect here when the entry
ages out, within those seconds. Expiry is still checked on every request against the remembered times, and
the bound user (``current_user()``) is read fresh from the database (it carries balances), never from this
memory, and only by the views that use it: a bound client's classify or check-cache costs no user query.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import timedelta
from functools import lru_cache

from apiflask import APIBlueprint, HTTPTokenAuth, Schema
from apiflask.fields import String
from apiflask.validators import Length, OneOf, Regexp
from flask import current_app, g, request

from xintu import db
from xintu.apidoc import errors
from xintu.budgets import network_of
from xintu.errors import RateLimited, Unauthorized
from xintu.models import ClientSession
from xintu.timeutil import iso, utcnow

TOKEN_PREFIX = "xt_"
LAST_SEEN_RESOLUTION = timedelta(minutes=5)   # at most one last_seen write per client per 5 min
PLATFORMS = ("windows", "mac", "android", "ios", "web", "other")

bp = APIBlueprint("clients", __name__, url_prefix="/api/v1", tag="clients")
client_auth = HTTPTokenAuth(scheme="Bearer", description="Token from POST /api/v1/clients or QR binding")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue_token(*, client_id: str, kind: str = "device", user=None, platform: str | None = None,
                ip: str | None = None) -> tuple[str, object]:
    """Create a ClientSession and return (plaintext token, session). The plaintext is shown once."""
    token = new_token()
    session = ClientSession.create(token_hash=hash_token(token), kind=kind, client_id=client_id,
                                   user=user, platform=platform, created_ip=ip, created_net=network_of(ip),
                                   last_ip=ip)
    return token, session


def register_client(client_id: str, platform: str | None, ip: str | None) -> tuple[str, object]:
    """Registrations per hour are limited per address and per network (an IPv6 /64: one subscriber line
    holds 2^64 addresses, so rotating through them must not buy more tokens); 0 = no limit."""
    config = current_app.config
    since = utcnow() - timedelta(hours=1)
    net = network_of(ip)
    checks = [(ClientSession.created_ip == ip, config["CLIENT_REGISTRATIONS_PER_HOUR"],
               "registration_rate_limited")]
    if net and net != ip:
        checks.append((ClientSession.created_net == net, config["CLIENT_REGISTRATIONS_PER_NET_HOUR"],
                       "registration_net_rate_limited"))
    for where, limit, code in checks:
        if limit and ClientSession.select().where(where, ClientSession.created_at > since).count() >= limit:
            raise RateLimited("注册过于频繁，请稍后再试", code=code)
    return issue_token(client_id=client_id, kind="device", platform=platform, ip=ip)


def session_limits(config, kind: str) -> tuple[timedelta | None, timedelta | None]:
    """(idle, absolute) lifetime of a session of ``kind`` from the SESSION_* config; None = no limit."""
    prefix = "SESSION_BOUND" if kind == "bound" else "SESSION_DEVICE"
    return _limits(int(config[f"{prefix}_IDLE_DAYS"]), int(config[f"{prefix}_MAX_DAYS"]))


@lru_cache(maxsize=64)
def _limits(idle: int, most: int) -> tuple[timedelta | None, timedelta | None]:
    return (timedelta(days=idle) if idle else None), (timedelta(days=most) if most else None)


def expires_at(config, session):
    """When ``session`` dies if it is not used again (the earlier of idle and absolute end), or None."""
    idle, most = session_limits(config, session.kind)
    ends = [t for t in ((session.last_seen_at + idle) if idle else None,
                        (session.created_at + most) if most else None) if t is not None]
    return min(ends) if ends else None


class SessionCache:
    """Live session rows by token hash, for a few seconds, per process (see the module docstring).

    Entries are keyed by the database too (tests run many apps in one process) and hold the row's field
    values, not a model instance: each request gets its own instance, so nothing mutable is shared between
    threads. At most ``max_entries`` are kept; the oldest go first.
    """

    def __init__(self, max_entries: int = 10000, clock=time.monotonic):
        self._lock = threading.Lock()
        self._rows: dict[tuple, tuple[float, dict]] = {}
        self.max_entries, self._clock = max_entries, clock

    def get(self, key: tuple, ttl: float) -> dict | None:
        with self._lock:
            entry = self._rows.get(key)
            if entry is None:
                return None
            if self._clock() - entry[0] >= ttl:
                del self._rows[key]
                return None
            return entry[1]

    def put(self, key: tuple, data: dict) -> None:
        with self._lock:
            self._rows.pop(key, None)
            while len(self._rows) >= self.max_entries:
                del self._rows[next(iter(self._rows))]
            self._rows[key] = (self._clock(), data)

    def update(self, key: tuple, **fields) -> None:
        with self._lock:
            entry = self._rows.get(key)
            if entry is not None:
                self._rows[key] = (entry[0], {**entry[1], **fields})

    def drop(self, session_ids) -> None:
        ids = set(session_ids)
        with self._lock:
            for key in [k for k, (_, data) in self._rows.items() if data["id"] in ids]:
                del self._rows[key]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


sessions = SessionCache()


def revoke(session_ids, reason: str) -> int:
    """End sessions (idempotent: an already revoked one keeps its first reason). Returns how many ended.
    This process forgets them at once; other processes within ``SESSION_CACHE_SECONDS``."""
    ids = list(session_ids)
    if not ids:
        return 0
    sessions.drop(ids)
    return (ClientSession.update(revoked_at=utcnow(), revoked_reason=reason[:16])
            .where(ClientSession.id.in_(ids), ClientSession.revoked_at.is_null()).execute())


def _session_row(token_hash: str, ttl: float):
    """The ClientSession row of ``token_hash`` (a fresh instance), from this process's memory when it was
    read less than ``ttl`` seconds ago; None when there is none. Only live rows are remembered."""
    key = (id(db.primary.obj), token_hash)
    data = sessions.get(key, ttl) if ttl > 0 else None
    if data is not None:   # a fetched row's state (no defaults computed, nothing dirty), in its own dict
        session = ClientSession(__no_default__=1)
        session.__data__ = dict(data)
        return session, key
    session = ClientSession.get_or_none(ClientSession.token_hash == token_hash)
    if session is not None and session.revoked_at is None and ttl > 0:
        sessions.put(key, dict(session.__data__))
    return session, key


def lookup(token: str, ip: str | None = None, config=None):
    """The live session for a presented token; raises Unauthorized naming why a known token is dead.

    An unknown or malformed token returns None (the generic 401)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    config = config or current_app.config
    session, key = _session_row(hash_token(token), float(config["SESSION_CACHE_SECONDS"]))
    if session is None:
        return None
    if session.revoked_at is not None:
        if session.revoked_reason == "expired":
            raise Unauthorized("登录已过期，请重新登录", code="token_expired")
        raise Unauthorized("该令牌已注销，请重新登录", code="token_revoked")
    now = utcnow()
    end = expires_at(config, session)
    if end is not None and end <= now:
        revoke([session.id], "expired")
        raise Unauthorized("登录已过期，请重新登录", code="token_expired")
    if now - session.last_seen_at > LAST_SEEN_RESOLUTION or (ip and ip != session.last_ip):
        last_ip = ip or session.last_ip
        type(session).update(last_seen_at=now, last_ip=last_ip).where(type(session).id == session.id).execute()
        sessions.update(key, last_seen_at=now, last_ip=last_ip)
    return session


class ClientRateLimiter:
    """Requests per client token per minute, counted in this process (fixed one-minute windows).

    Per worker, so a host with N workers lets a client make up to N × the limit: a bound against a
    runaway or abusive install, not billing.  Keyed by our session id, never by anything the client claims.
    """

    def __init__(self, clock=time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._window = 0
        self._counts: dict[int, int] = {}

    def hit(self, key: int, limit: int) -> bool:
        window = int(self._clock() // 60)
        with self._lock:
            if window != self._window:
                self._window, self._counts = window, {}
            self._counts[key] = count = self._counts.get(key, 0) + 1
        return count <= limit


def _limiter() -> ClientRateLimiter:
    extensions = current_app.extensions
    return extensions.get("xintu_client_limiter") or extensions.setdefault("xintu_client_limiter",
                                                                         ClientRateLimiter())


@client_auth.verify_token
def _verify(token):
    session = lookup(token, request.remote_addr)
    if session is not None:
        limit = current_app.config["CLIENT_REQUESTS_PER_MINUTE"]
        if limit and not _limiter().hit(session.id, limit):
            raise RateLimited("请求过于频繁，请稍后再试", code="client_rate_limited")
        g.client = session
    return session


def current_user():
    """The WeChat user the request's client token is bound to (None for a device that is not bound), read
    from the database on first use in a request."""
    if "user" not in g:
        session = g.get("client")
        g.user = session.user if session is not None and session.user_id else None
    return g.user


@client_auth.get_user_roles
def _roles(session):
    return ["user"] if session.user_id else []


class RegisterIn(Schema):
    client_id = String(required=True, validate=[Length(8, 64), Regexp(r"^[A-Za-z0-9._:-]+$")],
                       metadata={"description": "install id the app generated once"})
    platform = String(load_default="other", validate=OneOf(PLATFORMS))


class RegisterOut(Schema):
    token = String()
    client_id = String()
    kind = String()
    created_at = String()


@bp.post("/auth/logout")
@bp.auth_required(client_auth)
@bp.output({}, status_code=204)
@bp.doc(summary="End the presented token (device or bound); it answers 401 token_revoked afterwards")
def logout():
    revoke([g.client.id], "logout")
    return ""


@bp.post("/clients")
@bp.input(RegisterIn, arg_name="body")
@bp.output(RegisterOut, status_code=201)
@bp.doc(summary="Register an app install and get its device token",
        responses={201: "registered",
                   **errors({429: ["registration_rate_limited", "registration_net_rate_limited"]})})
def register(body):
    token, session = register_client(body["client_id"], body["platform"], request.remote_addr)
    return {"token": token, "client_id": session.client_id, "kind": session.kind,
            "created_at": iso(session.created_at)}
