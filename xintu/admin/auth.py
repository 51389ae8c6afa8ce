"""Admin accounts: hashed passwords, login throttling, expiring sessions, roles.

Defences, each with its own knob (config):
- wrong passwords lock the *account* for ADMIN_LOCKOUT_MINUTES after ADMIN_MAX_FAILURES in a row;
- an *address* gets at most ADMIN_LOGIN_ATTEMPTS_PER_10MIN failed logins, whatever usernames it
  tries (a lockout alone would let one address probe many accounts);
- sessions are bearer tokens (stored hashed) that die after ADMIN_SESSION_IDLE_MINUTES without use
  and ADMIN_SESSION_MAX_HOURS after login, or at logout.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from functools import wraps

from apiflask import HTTPTokenAuth
from flask import current_app, g
from werkzeug.security import check_password_hash, generate_password_hash

from xintu.auth import hash_token
from xintu.db import atomic
from xintu.errors import BadRequest, Conflict, Forbidden, RateLimited, Unauthorized
from xintu.models import Admin, AdminLoginAttempt, AdminSession
from xintu.timeutil import utcnow

ROLES = ("viewer", "operator")
# Compared against when the username does not exist, so both cases cost one hash check.
_DUMMY_HASH = generate_password_hash("xintu-no-such-admin")
TOUCH_EVERY = timedelta(seconds=60)  # last_seen is written at most this often per session


def conf(key: str) -> int:
    return int(current_app.config[key])   # defaults in xintu.config


def _check_password(password: str) -> None:
    if len(password or "") < 10:
        raise BadRequest("密码至少 10 个字符", code="weak_password")


def create_admin(username: str, password: str, role: str = "viewer") -> Admin:
    username = (username or "").strip()
    if not username or len(username) > 64:
        raise BadRequest("用户名不能为空且不超过 64 个字符", code="invalid_username")
    if role not in ROLES:
        raise BadRequest(f"角色只能是 {' / '.join(ROLES)}", code="invalid_role")
    _check_password(password)
    if Admin.get_or_none(Admin.username == username):
        raise Conflict(f"管理员 {username} 已存在", code="admin_exists")
    return Admin.create(username=username, password_hash=generate_password_hash(password), role=role)


def set_password(username: str, password: str) -> None:
    _check_password(password)
    admin = Admin.get_or_none(Admin.username == username)
    if admin is None:
        raise BadRequest(f"没有管理员 {username}", code="no_such_admin")
    with atomic():
        Admin.update(password_hash=generate_password_hash(password), failed_logins=0,
                     locked_until=None).where(Admin.id == admin.id).execute()
        AdminSession.delete().where(AdminSession.admin == admin.id).execute()


def login(username: str, password: str, ip: str) -> tuple[str, AdminSession]:
    now = utcnow()
    window = now - timedelta(minutes=10)
    recent = (AdminLoginAttempt.select()
              .where(AdminLoginAttempt.ip == ip, AdminLoginAttempt.ok == False,
                     AdminLoginAttempt.created_at >= window).count())
    if recent >= conf("ADMIN_LOGIN_ATTEMPTS_PER_10MIN"):
        raise RateLimited("登录尝试过于频繁，请稍后再试", code="login_rate_limited")

    admin = Admin.get_or_none(Admin.username == (username or "").strip())
    if admin is not None and admin.locked_until and admin.locked_until > now:
        AdminLoginAttempt.create(ip=ip, username=username[:64], ok=False)
        raise RateLimited("账号因多次密码错误已临时锁定，请稍后再试", code="account_locked")
    valid = check_password_hash(admin.password_hash if admin else _DUMMY_HASH, password or "")
    if admin is None or not valid:
        with atomic():
            AdminLoginAttempt.create(ip=ip, username=(username or "")[:64], ok=False)
            if admin is not None:
                _count_failure(admin, now)
        raise Unauthorized("用户名或密码错误", code="bad_credentials")

    token = secrets.token_urlsafe(32)
    with atomic():
        AdminLoginAttempt.create(ip=ip, username=admin.username, ok=True)
        Admin.update(failed_logins=0, locked_until=None, last_login_at=now).where(Admin.id == admin.id).execute()
        session = AdminSession.create(
            admin=admin, token_hash=hash_token(token), ip=ip, created_at=now, last_seen_at=now,
            expires_at=now + timedelta(hours=conf("ADMIN_SESSION_MAX_HOURS")))
    return token, session


def _count_failure(admin: Admin, now) -> None:
    # one statement, so parallel wrong guesses cannot lose increments
    Admin.update(failed_logins=Admin.failed_logins + 1).where(Admin.id == admin.id).execute()
    if Admin.get_by_id(admin.id).failed_logins >= conf("ADMIN_MAX_FAILURES"):
        Admin.update(failed_logins=0, locked_until=now + timedelta(minutes=conf("ADMIN_LOCKOUT_MINUTES"))
                     ).where(Admin.id == admin.id).execute()


def authenticate(token: str) -> tuple[Admin, AdminSession]:
    now = utcnow()
    session = (AdminSession.select(AdminSession, Admin).join(Admin)
               .where(AdminSession.token_hash == hash_token(token)).first()) if token else None
    if session is None:
        raise Unauthorized("请先登录", code="admin_login_required")
    idle = timedelta(minutes=conf("ADMIN_SESSION_IDLE_MINUTES"))
    if session.expires_at <= now or session.last_seen_at + idle <= now:
        session.delete_instance()
        raise Unauthorized("登录已过期，请重新登录", code="admin_session_expired")
    if now - session.last_seen_at >= TOUCH_EVERY:
        AdminSession.update(last_seen_at=now).where(AdminSession.id == session.id).execute()
    return session.admin, session


def logout(session: AdminSession) -> None:
    AdminSession.delete().where(AdminSession.id == session.id).execute()


admin_auth = HTTPTokenAuth(scheme="Bearer", security_scheme_name="AdminBearerAuth",
                           description="管理后台令牌，来自 POST /api/v1/admin/login")


@admin_auth.verify_token
def _verify(token: str):
    # raising (not returning None) keeps the precise code: expired vs missing
    g.admin, g.admin_session = authenticate(token)
    return g.admin


def operator_only(view):
    """After ``auth_required(admin_auth)``: viewers may look, only operators may change things."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.admin.role != "operator":
            raise Forbidden("只读账号不能执行此操作", code="operator_required")
        return view(*args, **kwargs)
    return wrapper
