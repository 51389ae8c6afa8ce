"""The official-account access token, shared by every worker on every host through ``wechat_tokens``.

wechatpy keeps tokens in a "session storage" and has no cross-process lock.  Here the storage is the DB
row, which reports a token as absent a minute before it expires (wechatpy trusts a stored token it did
not fetch itself without looking at its age), and a refresh happens inside a transaction that first
writes the row: the write takes the row lock on MariaDB and the database lock on SQLite, so concurrent
refreshers queue up and all but the first find a fresh token and make no API call.

A token WeChat rejected (40001/42001, see ``StableTokenClient._request``) is replaced under the same lock:
if another worker already stored a different token, that one is used; else stable_token in normal mode;
only if that returns the rejected token again is ``force_refresh`` asked, and at most once per 30 s across
all workers (``forced_at`` on the row) — WeChat allows 20 a day, and each one invalidates every holder.
"""
from __future__ import annotations

import threading
from datetime import timedelta

from wechatpy.session import SessionStorage

from xintu import db
from xintu.errors import Unavailable
from xintu.models import WechatToken
from xintu.timeutil import utcnow
from xintu.wechat.client import FORCE_INTERVAL, StableTokenClient

MARGIN = timedelta(seconds=60)


class DbTokenStorage(SessionStorage):
    def __init__(self, app_id):
        self.app_id = app_id
        self.local = threading.local()  # which token this thread last handed out (to spot rejections)

    def get(self, key, default=None):
        row = WechatToken.get_or_none(WechatToken.app_id == self.app_id)
        if row is None or not row.access_token or row.expires_at is None or row.expires_at - MARGIN <= utcnow():
            return default
        self.local.token = row.access_token
        return row.access_token

    def set(self, key, value, ttl=None):
        now = utcnow()
        changes = {"access_token": value, "updated_at": now, "expires_at": now + timedelta(seconds=ttl or 7200)}
        if not WechatToken.update(**changes).where(WechatToken.app_id == self.app_id).execute():
            WechatToken.insert(app_id=self.app_id, **changes).on_conflict_ignore().execute()

    def delete(self, key):
        WechatToken.update(access_token=None, expires_at=None).where(WechatToken.app_id == self.app_id).execute()


class SharedTokenClient(StableTokenClient):
    def __init__(self, appid, secret, api_base_url=None, timeout=10):
        super().__init__(appid, secret, api_base_url=api_base_url, session=DbTokenStorage(appid),
                         timeout=timeout)

    def _locked_row(self) -> WechatToken:
        """Inside db.atomic(): take the row lock (the write) and read the newest committed token."""
        WechatToken.insert(app_id=self.appid).on_conflict_ignore().execute()
        WechatToken.update(updated_at=utcnow()).where(WechatToken.app_id == self.appid).execute()
        return WechatToken.get(WechatToken.app_id == self.appid)

    def fetch_access_token(self):
        storage = self.session
        with db.atomic():
            row = self._locked_row()
            if row.access_token and row.expires_at and row.expires_at - MARGIN > utcnow():
                storage.local.token = row.access_token  # another worker refreshed while we waited
                return {"access_token": row.access_token}
            token, expires_in = self.request_stable_token()
            storage.set(self.access_token_key, token, expires_in)
            storage.local.token = token
            return {"access_token": token, "expires_in": expires_in}

    def replace_rejected_token(self, rejected: str) -> str:
        storage = self.session
        with db.atomic():
            row = self._locked_row()
            fresh = bool(row.access_token and row.expires_at and row.expires_at - MARGIN > utcnow())
            if fresh and row.access_token != rejected:  # someone replaced it while we waited
                storage.local.token = row.access_token
                return row.access_token
            token, expires_in = self.request_stable_token()
            if token == rejected:
                now = utcnow()
                if row.forced_at and (now - row.forced_at).total_seconds() < FORCE_INTERVAL:
                    raise Unavailable("微信 access_token 被拒绝，且 30 秒内已强制刷新过",
                                      code="wechat_token_rejected")
                WechatToken.update(forced_at=now).where(WechatToken.app_id == self.appid).execute()
                token, expires_in = self.request_stable_token(force_refresh=True)
            storage.set(self.access_token_key, token, expires_in)
            storage.local.token = token
            return token
