"""WeChat users: created from a signed WeChat event or OAuth, never from anything a client claims."""
from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import current_app
from peewee import IntegrityError

from xintu import db
from xintu.errors import BadRequest, NotFound
from xintu.models import ForgottenIdentity, User
from xintu.timeutil import iso, utcnow


def ensure_user(openid: str) -> tuple[User, bool]:
    """(user, created). Safe when two workers see the same new openid at once."""
    if not openid or len(openid) > 64:
        raise BadRequest("openid 无效", code="invalid_openid")
    user = User.get_or_none(User.openid == openid)
    if user is not None:
        return user, False
    try:
        with db.atomic():
            return User.create(openid=openid), True
    except IntegrityError:  # lost the race to another worker: theirs is the row
        query = User.select().where(User.openid == openid)
        return (query.for_update() if db.is_mysql() else query).get(), False


def openid_hash(openid: str, secret: str | None = None) -> str:
    """Keyed hash of an openid (HMAC-SHA256 with a key derived from SECRET_KEY): recognises a returning
    person after erasure without keeping anything that names them."""
    key = hashlib.sha256(b"xintu-forgotten-openid|" + (secret or current_app.config["SECRET_KEY"]).encode())
    return hmac.new(key.digest(), openid.encode("utf-8"), hashlib.sha256).hexdigest()


def was_forgotten(openid: str) -> bool:
    return ForgottenIdentity.select().where(ForgottenIdentity.openid_hash == openid_hash(openid)).exists()


def mark_active(user_id: int, subscribed: bool | None = None) -> None:
    changes = {User.last_active_at: utcnow()}
    if subscribed is not None:
        changes[User.subscribed] = subscribed
    User.update(changes).where(User.id == user_id).execute()


def extend_membership(user_id: int, days: int) -> User:
    """Stack ``days`` on top of the later of now and the current expiry; call inside a transaction."""
    query = User.select().where(User.id == user_id)
    # FOR UPDATE: two orders of one user paid at the same moment must both count (no lost update).
    user = (query.for_update() if db.is_mysql() else query).get()
    now = utcnow()
    start = max(now, user.member_expires_at or now)
    user.member_expires_at = start + timedelta(days=days)
    User.update(member_expires_at=user.member_expires_at).where(User.id == user_id).execute()
    return user


def shorten_membership(user_id: int, seconds: int) -> int:
    """Take ``seconds`` off the expiry (a refunded membership); call inside a transaction. Returns the
    seconds taken (0 when the user has no expiry)."""
    if seconds <= 0:
        return 0
    query = User.select().where(User.id == user_id)
    user = (query.for_update() if db.is_mysql() else query).get()
    if user.member_expires_at is None:
        return 0
    User.update(member_expires_at=user.member_expires_at - timedelta(seconds=seconds)).where(
        User.id == user_id).execute()
    return seconds


def get_user(ref: str | int, *, allow_forgotten: bool = False) -> User:
    """By numeric id or openid (operators paste either)."""
    ref = str(ref).strip()
    user = User.get_or_none(User.id == int(ref)) if ref.isdigit() else None
    user = user or User.get_or_none(User.openid == ref)
    if user is None or (user.forgotten_at is not None and not allow_forgotten):
        raise NotFound(f"用户不存在: {ref}", code="user_not_found")
    return user


def profile(user: User) -> dict:
    """What the user's own apps may see: no openid, no unionid."""
    return {"id": user.id, "nickname": user.nickname, "subscribed": user.subscribed,
            "is_member": user.is_member, "member_expires_at": iso(user.member_expires_at),
            "credits_balance": user.credits_balance, "created_at": iso(user.created_at)}


def user_view(user: User, *, operator: bool = False) -> dict:
    """A user as an answer shows it: their own apps get :func:`profile`; ``operator`` (管理后台) adds the
    openid and the last activity."""
    if not operator:
        return profile(user)
    return {"id": user.id, "openid": user.openid, "nickname": user.nickname, "subscribed": user.subscribed,
            "is_member": user.is_member, "member_expires_at": iso(user.member_expires_at),
            "credits_balance": user.credits_balance, "created_at": iso(user.created_at),
            "last_active_at": iso(user.last_active_at)}


def operator_row(user: User) -> dict:
    """A user as a row of ``xintu users`` (its own column names; times stay datetimes for --format)."""
    return {"id": user.id, "openid": user.openid, "nickname": user.nickname or "",
            "subscribed": user.subscribed, "member_until": user.member_expires_at,
            "credits": user.credits_balance, "created_at": user.created_at,
            "last_active_at": user.last_active_at}


def list_users(members_only=False, limit=50, offset=0) -> list[User]:
    query = User.select().order_by(User.id.desc())
    if members_only:
        query = query.where(User.member_expires_at > utcnow())
    return list(query.limit(limit).offset(offset))
