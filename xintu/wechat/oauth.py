"""OAuth (snsapi_base) for the H5 member page, through wechatpy's WeChatOAuth with configurable bases."""
from __future__ import annotations

from wechatpy.exceptions import WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from xintu.errors import UpstreamError
from xintu.wechat import h5, require_config


def _oauth(config, redirect_uri="", state=""):
    require_config(config)
    oauth = WeChatOAuth(config["WECHAT_APP_ID"], config["WECHAT_APP_SECRET"], redirect_uri,
                        scope="snsapi_base", state=state)
    oauth.API_BASE_URL = (config.get("WECHAT_API_BASE_URL") or WeChatOAuth.API_BASE_URL).rstrip("/") + "/"
    oauth.OAUTH_BASE_URL = (config.get("WECHAT_OAUTH_BASE_URL") or WeChatOAuth.OAUTH_BASE_URL).rstrip("/") + "/"
    return oauth


def landing_url(config) -> str:
    """Where WeChat sends the user back: the web tier's proxied path in production."""
    return config.get("WECHAT_OAUTH_REDIRECT_URL") or config["PUBLIC_BASE_URL"].rstrip("/") + "/wechat/oauth"


def authorize_url(config, next_url: str | None, nonce: str) -> str:
    """WeChat's consent URL; ``nonce`` is the browser's (its cookie), bound into the state."""
    target = h5.checked_next(config, next_url)
    redirect_uri = h5.with_query(landing_url(config), next=target)
    return _oauth(config, redirect_uri, h5.sign_state(target, h5.nonce_hash(nonce))).authorize_url


def openid_for(config, code: str) -> str:
    """Trade the code WeChat sent the browser back with for the user's openid."""
    try:
        return _oauth(config).fetch_access_token(code)["openid"]
    except WeChatOAuthException as exc:
        raise UpstreamError(f"微信授权失败: {exc.errmsg}", code="oauth_failed") from None
