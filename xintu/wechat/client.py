"""The official-account API client: wechatpy's WeChatClient, fetching tokens via ``stable_token``.

wechatpy 1.8 only knows the legacy ``/cgi-bin/token`` (hard-coded to api.weixin.qq.com), which
invalidates the token every other worker holds. ``stable_token`` hands every caller the same token until
it expires, so refreshes from several hosts cannot knock each other out. The base URL is configurable so
the same code reaches the sandbox.

A token WeChat rejects (40001 / 40014 / 42001) is handled here, not by wechatpy: its ``auto_retry`` (off)
would refresh and retry without bound. We ask ``stable_token`` in normal mode first — after someone else
refreshed it already returns the new token — and only when it hands back the very token that was just
rejected do we ask with ``force_refresh`` (which invalidates the token for every other holder, and which
WeChat allows 20 times a day, 30 s apart). Then the call is retried once.
"""
from __future__ import annotations

import time

from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

DEFAULT_API_BASE_URL = "https://api.weixin.qq.com/cgi-bin/"
TOKEN_REJECTED = (40001, 40014, 42001)   # invalid credential, invalid token, expired token
FORCE_INTERVAL = 30                       # seconds between force_refresh calls, as WeChat enforces


class StableTokenClient(WeChatClient):
    def __init__(self, appid, secret, api_base_url=None, session=None, timeout=10):
        super().__init__(appid, secret, session=session, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = api_base_url or DEFAULT_API_BASE_URL
        self._forced_at = 0.0  # this process's last force_refresh (the shared client keeps it in the DB)

    def request_stable_token(self, force_refresh=False) -> tuple[str, int]:
        """POST /cgi-bin/stable_token → (token, expires_in). Does not store anything."""
        res = self._http.post(self.API_BASE_URL + "stable_token", timeout=self.timeout, json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
            "force_refresh": force_refresh})
        res.raise_for_status()
        result = res.json()
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self,
                                        request=res.request, response=res)
        return result["access_token"], int(result.get("expires_in", 7200))

    def _store(self, token: str, expires_in: int) -> dict:
        self.session.set(self.access_token_key, token, expires_in)
        self.expires_at = int(time.time()) + expires_in
        return {"access_token": token, "expires_in": expires_in}

    def fetch_access_token(self):
        return self._store(*self.request_stable_token())

    def replace_rejected_token(self, rejected: str) -> str:
        """A token WeChat just refused: normal mode first, force only if that gives the same token."""
        token, expires_in = self.request_stable_token()
        if token == rejected and time.monotonic() - self._forced_at >= FORCE_INTERVAL:
            self._forced_at = time.monotonic()
            token, expires_in = self.request_stable_token(force_refresh=True)
        self._store(token, expires_in)
        return token

    def _request(self, method, url_or_endpoint, **kwargs):
        """wechatpy's request with our handling of a rejected token: one refresh, one retry."""
        params = kwargs.pop("params", {})
        if not isinstance(params, dict) or "access_token" in params:  # the caller chose the token
            return super()._request(method, url_or_endpoint, params=params, **kwargs)
        token = self.access_token
        try:
            return super()._request(method, url_or_endpoint, params={**params, "access_token": token},
                                    **kwargs)
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_REJECTED:
                raise
        fresh = self.replace_rejected_token(token)
        return super()._request(method, url_or_endpoint, params={**params, "access_token": fresh}, **kwargs)
