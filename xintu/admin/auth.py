"""Admin accounts: hashed passwords, login throttling, expiring sessions, roles.

Defences, each with its own knob (config):
- one answer (401 bad_credentials) for a wrong password and a username that does not exist;
- no hard lock anyone could trigger: failed logins (within ADMIN_LOGIN_WINDOW_MINUTES, since the last
  success in the same scope) make the next try wait, counted per (username, address), per address and
  per username string — the same for usernames that exist and that do not, so the answer (429
  login_throttled with Retry-After) tells nothing about accounts. After ADMIN_LOGIN_FREE_FAILURES the
  wait is 2, 4, 8 … s up to ADMIN_LOGIN_MAX_DELAY_SECONDS; per username from all addresses it starts only
  after 4× as many failures and stops at 60 s, so a stranger can slow an operator down but not lock
  them out;
- ADMIN_ALLOWED_ADDRS (optional) limits the API to the office networks;
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


USER_SCOPE_FACTOR = 4
USER_SCOPE_MAX_DELAY = 60


def _delay(failures: int, free: int, cap: int) -> int:
    if failures < free:
        return 0
    return min(cap, 2 ** min(failures - free + 1, 20))


def _failures(scope, since) -> tuple[int, object]:
    """(failed attempts, the last one's time) in ``scope`` after ``since`` and after its last success."""
    from peewee import fn

    last_ok = (AdminLoginAttempt.select(fn.MAX(AdminLoginAttempt.created_at))
               .where(scope, AdminLoginAttempt.ok == True).scalar())
    start = max(since, last_ok) if last_ok else since
    row = (AdminLoginAttempt.select(fn.COUNT(AdminLoginAttempt.id), fn.MAX(AdminLoginAttempt.created_at))
           .where(scope, AdminLoginAttempt.ok == False, AdminLoginAttempt.created_at > start).tuples().get())
    return int(row[0] or 0), row[1]


def throttle_wait(username: str, ip: str, now=None) -> int:
    """Seconds this (username, address) must still wait before a password is checked; 0 = go ahead."""
    now = now or utcnow()
    since = now - timedelta(minutes=conf("ADMIN_LOGIN_WINDOW_MINUTES"))
    free, cap = conf("ADMIN_LOGIN_FREE_FAILURES"), conf("ADMIN_LOGIN_MAX_DELAY_SECONDS")
    by_user = AdminLoginAttempt.username == username
    by_ip = AdminLoginAttempt.ip == ip
    scopes = ((by_user & by_ip, free, cap), (by_ip, 2 * free, cap),
              (by_user, USER_SCOPE_FACTOR * free, min(cap, USER_SCOPE_MAX_DELAY)))
    wait = 0
    for scope, scope_free, scope_cap in scopes:
        count, last = _failures(scope, since)
        delay = _delay(count, scope_free, scope_cap)
        if delay and last is not None:
            wait = max(wait, int((last + timedelta(seconds=delay) - now).total_seconds() + 0.999))
    return wait


def login(username: str, password: str, ip: str) -> tuple[str, AdminSession]:
    now = utcnow()
    username = (username or "").strip()[:64]
    wait = throttle_wait(username, ip, now)
    if wait > 0:   # not recorded: waiting out the delay must not lengthen it
        raise RateLimited(f"登录尝试过于频繁，请 {wait} 秒后再试", code="login_throttled",
                          details={"retry_after": wait})
    admin = Admin.get_or_none(Admin.username == username)
    valid = check_password_hash(admin.password_hash if admin else _DUMMY_HASH, password or "")
    if admin is None or not valid:
        with atomic():
            AdminLoginAttempt.create(ip=ip, username=username, ok=False, created_at=now)
            if admin is not None:   # kept for the operator's view (`xintu admin list`), locks nothing
                Admin.update(failed_logins=Admin.failed_logins + 1).where(Admin.id == admin.id).execute()
        raise Unauthorized("用户名或密码错误", code="bad_credentials")

    token = secrets.token_urlsafe(32)
    with atomic():
        AdminLoginAttempt.create(ip=ip, username=admin.username, ok=True, created_at=now)
        Admin.update(failed_logins=0, locked_until=None, last_login_at=now).where(Admin.id == admin.id).execute()
        session = AdminSession.create(
            admin=admin, token_hash=hash_token(token), ip=ip, created_at=now, last_seen_at=now,
            expires_at=now + timedelta(hours=conf("ADMIN_SESSION_MAX_HOURS")))
    return token, session


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
