"""The official-account access token, shared by every worker on every host through ``wechat_tokens``.

wechatpy keeps tokens in a "session storage" and has no cross-process lock.  Here the storage is the DB
row, which reports a token as absent a minute before it expires (wechatpy trusts a stored token it did
not fetch itself without looking at its age), and a refresh happens inside a transaction that first
writes the row: the write takes the row lock on MariaDB and the database lock on SQLite, so concurrent
refreshers queue up and all but the first find a fresh token and make no API call.
"""
from __future__ import annotations

import threading
from datetime import timedelta

from wechatpy.session import SessionStorage

from xintu import db
from xintu.models import WechatToken
from xintu.timeutil import utcnow
from xintu.wechat.client import StableTokenClient

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

    def fetch_access_token(self):
        storage = self.session
        WechatToken.insert(app_id=self.appid).on_conflict_ignore().execute()
        with db.atomic():
            # The write is the lock; the read after it sees the newest committed token.
            WechatToken.update(updated_at=utcnow()).where(WechatToken.app_id == self.appid).execute()
            row = WechatToken.get(WechatToken.app_id == self.appid)
            fresh = bool(row.access_token and row.expires_at and row.expires_at - MARGIN > utcnow())
            rejected = fresh and row.access_token == getattr(storage.local, "token", None)
            if fresh and not rejected:
                storage.local.token = row.access_token
                return {"access_token": row.access_token}
            # A fresh-looking token WeChat just rejected (40001) needs force_refresh, or stable_token
            # would hand the same one back.
            token, expires_in = self.request_stable_token(force_refresh=rejected)
            storage.set(self.access_token_key, token, expires_in)
            storage.local.token = token
            return {"access_token": token, "expires_in": expires_in}
