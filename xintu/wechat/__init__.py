"""WeChat official account: shared-token API client, signed event callback, OAuth for the H5 page."""
from __future__ import annotations

from xintu.errors import Unavailable
from xintu.wechat.token import SharedTokenClient


def official_account(config):
    """The API client for this configuration (cheap: the token lives in the database)."""
    require_config(config)

    base = (config.get("WECHAT_API_BASE_URL") or "https://api.weixin.qq.com/").rstrip("/") + "/cgi-bin/"
    return SharedTokenClient(config["WECHAT_APP_ID"], config["WECHAT_APP_SECRET"], api_base_url=base)


def require_config(config):
    missing = [k for k in ("WECHAT_APP_ID", "WECHAT_APP_SECRET") if not config.get(k)]
    if missing:
        raise Unavailable("微信公众号未配置: " + ", ".join(missing), code="wechat_not_configured")
