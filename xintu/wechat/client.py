"""The official-account API client: wechatpy's WeChatClient, fetching tokens via ``stable_token``.

wechatpy 1.8 only knows the legacy ``/cgi-bin/token`` (hard-coded to api.weixin.qq.com), which
invalidates the token every other worker holds. ``stable_token`` hands every caller the same token until
it expires, so refreshes from several hosts cannot knock each other out. The base URL is configurable so
the same code reaches the sandbox.
"""
from __future__ import annotations

import time

from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

DEFAULT_API_BASE_URL = "https://api.weixin.qq.com/cgi-bin/"


class StableTokenClient(WeChatClient):
    def __init__(self, appid, secret, api_base_url=None, session=None, timeout=10):
        super().__init__(appid, secret, session=session, timeout=timeout)
        self.API_BASE_URL = api_base_url or DEFAULT_API_BASE_URL

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

    def fetch_access_token(self):
        token, expires_in = self.request_stable_token()
        self.session.set(self.access_token_key, token, expires_in)
        self.expires_at = int(time.time()) + expires_in
        return {"access_token": token, "expires_in": expires_in}
