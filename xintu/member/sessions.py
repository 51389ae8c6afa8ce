"""A user's client sessions: what 我的设备, `xintu users sessions` and the 管理后台 show, and how they end.

Place names come from the address only as far as we can tell without an IP database: loopback and
private networks are named as such; a public address is shown as it is (xintu.location resolves GPS
points, not addresses).
"""
from __future__ import annotations

import ipaddress

from flask import current_app

from xintu import auth
from xintu.errors import BadRequest, NotFound
from xintu.models import ClientSession
from xintu.timeutil import iso, utcnow

PLATFORM_NAMES = {"windows": "Windows 电脑", "mac": "Mac 电脑", "android": "Android 手机", "ios": "iPhone",
                  "web": "网页", "other": "客户端"}
REVOKE_REASONS = ("logout", "user", "operator", "unsubscribe", "expired", "forgotten")


def platform_name(platform: str | None) -> str:
    return PLATFORM_NAMES.get(platform or "other", "客户端")


def _address(ip: str | None):
    try:
        return ipaddress.ip_address(ip) if ip else None
    except ValueError:
        return None


def approximate_place(ip: str | None) -> str | None:
    addr = _address(ip)
    if addr is None:
        return None
    if addr.is_loopback:
        return "本机"
    if addr.is_private or addr.is_link_local:
        return "局域网"
    return None


def _masked(ip: str | None) -> str | None:
    """Enough of the address to recognise a network, not a household: the last part is hidden."""
    addr = _address(ip)
    if addr is None:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def user_sessions(user_id: int, *, include_ended: bool = False) -> list[ClientSession]:
    query = ClientSession.select().where(ClientSession.user == user_id, ClientSession.kind == "bound")
    if not include_ended:
        query = query.where(ClientSession.revoked_at.is_null())
    return list(query.order_by(ClientSession.last_seen_at.desc()))


def session_view(session: ClientSession, *, current_id: int | None = None, operator: bool = False) -> dict:
    end = auth.expires_at(current_app.config, session)
    ip = session.last_ip or session.created_ip
    live = session.revoked_at is None and (end is None or end > utcnow())
    view = {"id": session.id, "platform": session.platform or "other",
            "platform_name": platform_name(session.platform), "first_seen_at": iso(session.created_at),
            "last_seen_at": iso(session.last_seen_at), "expires_at": iso(end) if live else None,
            "place": approximate_place(ip), "network": _masked(ip), "active": live,
            "revoked_at": iso(session.revoked_at), "revoked_reason": session.revoked_reason}
    if current_id is not None:
        view["current"] = session.id == current_id
    if operator:
        view.update(client_id=session.client_id, ip=ip)
    return view


def revoke_user_sessions(user_id: int, *, session_id: int | None = None, reason: str) -> int:
    """End one session of the user (404 when it is not theirs) or all of them; returns how many ended."""
    if reason not in REVOKE_REASONS:
        raise BadRequest(f"未知的注销原因 {reason}", code="invalid_reason")
    query = ClientSession.select(ClientSession.id).where(ClientSession.user == user_id,
                                                         ClientSession.kind == "bound")
    if session_id is not None:
        query = query.where(ClientSession.id == session_id)
        if not query.exists():
            raise NotFound("会话不存在", code="session_not_found")
    return auth.revoke([row.id for row in query], reason)
