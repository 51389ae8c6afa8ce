"""Who is using the H5 member page: OAuth (snsapi_base) → a one-time hand-off → a signed HttpOnly cookie.

The OAuth landing runs on the web tier's domain (the one registered with WeChat), not on the API's, so
it cannot set the API's cookie itself.  It redirects to the page with a short-lived signed ticket; the
page trades it (``POST /api/v1/h5/session``) for the cookie on the API's own domain, once: a redeemed
ticket is recorded (as a handled event in ``wechat_events``), so a ticket that leaks from the address bar
cannot be replayed within its two minutes.  The OAuth ``state``
is an HMAC over the return address, time and a per-browser nonce, so a forged landing URL cannot choose
where to send a ticket.

Login CSRF: ``/wechat/oauth/start`` sets a random nonce in an HttpOnly cookie (``xintu_oauth``) and puts
its hash into the state; the landing copies the hash into the ticket, and the redeem accepts a ticket only
from the browser holding that cookie — a ticket made for someone else does not log this browser in.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from peewee import IntegrityError

from xintu import db
from xintu.errors import BadRequest, Unauthorized
from xintu.models import User, WechatEvent

COOKIE = "xintu_h5"
NONCE_COOKIE = "xintu_oauth"
SESSION_AGE = 7 * 24 * 3600
TICKET_AGE = 120
STATE_AGE = 600


def _serializer(purpose):
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"xintu-{purpose}")


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def nonce_hash(nonce: str) -> str:
    return hashlib.sha256(b"xintu-oauth-nonce|" + nonce.encode()).hexdigest()[:24]


def set_nonce_cookie(response, nonce: str) -> None:
    response.set_cookie(NONCE_COOKIE, nonce, max_age=STATE_AGE, httponly=True, samesite="Lax", path="/",
                        secure=current_app.config["ENV"] == "production")


def browser_nonce_hash() -> str | None:
    raw = request.cookies.get(NONCE_COOKIE)
    return nonce_hash(raw) if raw and len(raw) <= 64 else None


def make_ticket(user_id: int, nonce_h: str) -> str:
    return _serializer("h5-ticket").dumps({"uid": user_id, "nh": nonce_h})


def redeem_ticket(ticket: str) -> int:
    try:
        data = _serializer("h5-ticket").loads(ticket, max_age=TICKET_AGE)
        uid, nonce_h = int(data["uid"]), str(data["nh"])
    except (BadSignature, KeyError, TypeError, ValueError):
        raise Unauthorized("登录凭据无效或已过期，请重新打开页面", code="h5_ticket_invalid") from None
    mine = browser_nonce_hash()
    if mine is None or not hmac.compare_digest(mine, nonce_h):
        raise Unauthorized("登录凭据不属于此浏览器，请重新打开页面", code="h5_ticket_foreign")
    user = User.get_or_none(User.id == uid)
    if user is None or user.forgotten_at is not None:
        raise Unauthorized("登录凭据无效或已过期，请重新打开页面", code="h5_ticket_invalid")
    key = "h5-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()
    try:
        with db.atomic():
            WechatEvent.create(dedupe_key=key, openid=user.openid, event="h5_ticket")
    except IntegrityError:
        raise Unauthorized("登录凭据已使用，请重新打开页面", code="h5_ticket_used") from None
    return uid


def set_session_cookie(response, user_id: int) -> None:
    response.set_cookie(COOKIE, _serializer("h5-session").dumps({"uid": user_id}), max_age=SESSION_AGE,
                        httponly=True, samesite="Lax", secure=current_app.config["ENV"] == "production",
                        path="/")


def current_user() -> User:
    raw = request.cookies.get(COOKIE)
    try:
        uid = int(_serializer("h5-session").loads(raw, max_age=SESSION_AGE)["uid"]) if raw else None
    except (BadSignature, KeyError, TypeError, ValueError):
        uid = None
    user = User.get_or_none(User.id == uid) if uid else None
    if user is None or user.forgotten_at is not None:
        raise Unauthorized("请在微信中打开并授权", code="h5_login_required")
    return user


def h5_origins(config) -> set[str]:
    base = config.get("H5_BASE_URL")
    origins = {_origin(base)} if base else set()
    origins.add(_origin(config["PUBLIC_BASE_URL"]))
    return origins


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def h5_url(config) -> str:
    """The H5 member page's address (on a CDN of our own with H5_BASE_URL, else served by the API)."""
    return (config.get("H5_BASE_URL") or config["PUBLIC_BASE_URL"].rstrip("/") + "/h5").rstrip("/") + "/"


def checked_next(config, next_url: str | None) -> str:
    """Only our own pages may be the destination after login (no open redirect)."""
    target = next_url or h5_url(config)
    if _origin(target) not in h5_origins(config):
        raise BadRequest("不允许的跳转地址", code="bad_redirect")
    return target


def sign_state(next_url: str, nonce_h: str, now: int | None = None) -> str:
    ts = str(now or int(time.time()))
    mac = hmac.new(current_app.config["SECRET_KEY"].encode(), f"{ts}|{nonce_h}|{next_url}".encode(),
                   hashlib.sha256)
    return f"{ts}.{nonce_h}.{mac.hexdigest()[:32]}"  # WeChat caps state at 128 bytes


def check_state(state: str, next_url: str) -> str:
    """The nonce hash the state carries, once its MAC and age are right. Where the landing sees the
    browser's nonce cookie (same host as /wechat/oauth/start) it must match too."""
    ts, _, rest = (state or "").partition(".")
    nonce_h = rest.partition(".")[0]
    if not ts.isdigit() or not nonce_h or abs(time.time() - int(ts)) > STATE_AGE or not hmac.compare_digest(
            sign_state(next_url, nonce_h, int(ts)).encode(), state.encode()):
        raise BadRequest("授权状态无效或已过期，请重新打开页面", code="oauth_state_invalid")
    mine = browser_nonce_hash()
    if mine is not None and not hmac.compare_digest(mine, nonce_h):
        raise BadRequest("授权状态不属于此浏览器，请重新打开页面", code="oauth_state_foreign")
    return nonce_h


def with_query(url: str, **params) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params] + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
