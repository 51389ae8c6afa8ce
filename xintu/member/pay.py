"""WeChat Pay v3 through wechatpayv3: client construction, JSAPI sign package, notification checks.

The SDK verifies signatures and decrypts, but it never checks the notification's age and returns None
(not an exception) for a bad signature: both are handled here so callers get one ``XintuError``.
"""
from __future__ import annotations

import os
import secrets
import threading
import time

from xintu.errors import Unauthorized, Unavailable

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
MAX_SKEW = 300  # seconds, as WeChat Pay recommends
_cache: dict = {}
_lock = threading.Lock()


def _pem(value):
    """Settings may hold PEM text or a path to a PEM file."""
    if value and "-----BEGIN" not in value and os.path.exists(value):
        with open(value, encoding="utf-8") as fh:
            return fh.read()
    return value


def pay_client(config):
    """One WeChatPay per distinct configuration (key loading is not free; the object is thread-safe)."""
    from wechatpayv3 import WeChatPay, WeChatPayType

    keys = ("WECHATPAY_MCHID", "WECHATPAY_PRIVATE_KEY", "WECHATPAY_CERT_SERIAL_NO", "WECHAT_APP_ID",
            "WECHATPAY_APIV3_KEY", "WECHATPAY_PUBLIC_KEY", "WECHATPAY_PUBLIC_KEY_ID", "WECHATPAY_BASE_URL")
    cache_key = tuple(config.get(k) for k in keys)
    with _lock:
        if cache_key not in _cache:
            missing = [k for k in keys[:-1] if not config.get(k)]
            if missing:
                raise Unavailable("微信支付未配置: " + ", ".join(missing), code="pay_not_configured")
            wp = WeChatPay(wechatpay_type=WeChatPayType.JSAPI, mchid=config["WECHATPAY_MCHID"],
                           private_key=_pem(config["WECHATPAY_PRIVATE_KEY"]),
                           cert_serial_no=config["WECHATPAY_CERT_SERIAL_NO"], appid=config["WECHAT_APP_ID"],
                           apiv3_key=config["WECHATPAY_APIV3_KEY"], notify_url=notify_url(config),
                           public_key=_pem(config["WECHATPAY_PUBLIC_KEY"]),
                           public_key_id=config["WECHATPAY_PUBLIC_KEY_ID"], timeout=(5, 10))
            wp._core._gate_way = (config.get("WECHATPAY_BASE_URL") or DEFAULT_GATEWAY).rstrip("/")
            _cache[cache_key] = wp
        return _cache[cache_key]


def notify_url(config) -> str:
    return config.get("WECHATPAY_NOTIFY_URL") or config["PUBLIC_BASE_URL"].rstrip("/") + "/wechat/pay/notify"


def jsapi_params(wp, appid: str, prepay_id: str) -> dict:
    """The object WeixinJSBridge 'getBrandWCPayRequest' takes, signed with the merchant key."""
    ts, nonce, package = str(int(time.time())), secrets.token_hex(16), f"prepay_id={prepay_id}"
    return {"appId": appid, "timeStamp": ts, "nonceStr": nonce, "package": package, "signType": "RSA",
            "paySign": wp.sign([appid, ts, nonce, package])}


def verify_notification(headers, body: bytes | str, config) -> dict:
    """The decrypted transaction of a genuine, fresh TRANSACTION.SUCCESS notification, else raise."""
    return check_transaction(open_notification(headers, body, config), config)


def open_notification(headers, body: bytes | str, config) -> dict:
    """A genuine, fresh notification of any event type (payment, REFUND.*), resource decrypted, else raise."""
    ts = headers.get("Wechatpay-Timestamp", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > MAX_SKEW:
        raise Unauthorized("通知时间戳无效或过期", code="pay_notify_stale")
    if headers.get("Wechatpay-Signature-Type") != "WECHATPAY2-SHA256-RSA2048":
        raise Unauthorized("不支持的签名类型", code="pay_notify_bad_signature")
    wp = pay_client(config)
    try:
        data = wp.callback(headers, body)
    except Exception:  # noqa: BLE001  malformed JSON / algorithm the SDK refuses
        data = None
    if not data:
        raise Unauthorized("通知签名或密文无效", code="pay_notify_bad_signature")
    return data


def check_transaction(data: dict, config) -> dict:
    """The transaction of an opened TRANSACTION.SUCCESS notification for this merchant, else raise."""
    resource = data.get("resource") or {}
    if data.get("event_type") != "TRANSACTION.SUCCESS" or resource.get("trade_state") != "SUCCESS":
        raise Unauthorized("不是支付成功通知", code="pay_notify_not_success")
    if resource.get("appid") != config["WECHAT_APP_ID"] or resource.get("mchid") != config["WECHATPAY_MCHID"]:
        raise Unauthorized("通知的 appid/mchid 与本商户不符", code="pay_notify_wrong_merchant")
    return resource
