"""WeChat Pay v3 through wechatpayv3: client construction, JSAPI sign package, notification checks.

The SDK verifies signatures and decrypts, but it never checks the notification's age and returns None
(not an exception) for a bad signature: both are handled here so callers get one ``XintuError``.

Two SDK behaviours must never be reachable by whoever can POST a notification: a ``Wechatpay-Serial``
other than the public key id makes it clear its certificate list and download ``/v3/certificates`` on
the request thread, and ``Http-Wechatpay-*`` / lower-case headers make it verify those instead of the
canonical ones.  So the serial must be one we hold before the SDK is called, and it is handed exactly
the five canonical headers.

The gateway (the sandbox in development) is a constructor argument of ``GatewayWeChatPay``.
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


def gateway_wechatpay_class():
    """``GatewayWeChatPay``: wechatpayv3's ``WeChatPay`` with the gateway as a keyword argument.

    wechatpayv3 2.0.4 (pinned in setup.cfg) has no public setting for the gateway: ``Core.__init__``
    hard-codes ``https://api.mch.weixin.qq.com`` and every request is made against the core's gateway.
    This subclass is the one place that knows; re-check it when the pin moves."""
    from wechatpayv3 import WeChatPay

    class GatewayWeChatPay(WeChatPay):
        def __init__(self, *, gateway: str = DEFAULT_GATEWAY, **kwargs):
            super().__init__(**kwargs)
            self._core._gate_way = gateway.rstrip("/")

        @property
        def gateway(self) -> str:
            return self._core._gate_way

    return GatewayWeChatPay


def _pem(value):
    """Settings may hold PEM text or a path to a PEM file."""
    if value and "-----BEGIN" not in value and os.path.exists(value):
        with open(value, encoding="utf-8") as fh:
            return fh.read()
    return value


def pay_client(config):
    """One WeChatPay per distinct configuration (key loading is not free; the object is thread-safe)."""
    from wechatpayv3 import WeChatPayType

    keys = ("WECHATPAY_MCHID", "WECHATPAY_PRIVATE_KEY", "WECHATPAY_CERT_SERIAL_NO", "WECHAT_APP_ID",
            "WECHATPAY_APIV3_KEY", "WECHATPAY_PUBLIC_KEY", "WECHATPAY_PUBLIC_KEY_ID", "WECHATPAY_BASE_URL")
    cache_key = tuple(config.get(k) for k in keys)
    with _lock:
        if cache_key not in _cache:
            missing = [k for k in keys[:-1] if not config.get(k)]
            if missing:
                raise Unavailable("微信支付未配置: " + ", ".join(missing), code="pay_not_configured")
            wp = gateway_wechatpay_class()(
                           gateway=config.get("WECHATPAY_BASE_URL") or DEFAULT_GATEWAY,
                           wechatpay_type=WeChatPayType.JSAPI, mchid=config["WECHATPAY_MCHID"],
                           private_key=_pem(config["WECHATPAY_PRIVATE_KEY"]),
                           cert_serial_no=config["WECHATPAY_CERT_SERIAL_NO"], appid=config["WECHAT_APP_ID"],
                           apiv3_key=config["WECHATPAY_APIV3_KEY"], notify_url=notify_url(config),
                           public_key=_pem(config["WECHATPAY_PUBLIC_KEY"]),
                           public_key_id=config["WECHATPAY_PUBLIC_KEY_ID"], timeout=(5, 10))
            _cache[cache_key] = wp
        return _cache[cache_key]


def notify_url(config) -> str:
    return config.get("WECHATPAY_NOTIFY_URL") or config["PUBLIC_BASE_URL"].rstrip("/") + "/wechat/pay/notify"


def jsapi_params(wp, appid: str, prepay_id: str) -> dict:
    """The object WeixinJSBridge 'getBrandWCPayRequest' takes, signed with the merchant key."""
    ts, nonce, package = str(int(time.time())), secrets.token_hex(16), f"prepay_id={prepay_id}"
    return {"appId": appid, "timeStamp": ts, "nonceStr": nonce, "package": package, "signType": "RSA",
            "paySign": wp.sign([appid, ts, nonce, package])}


NOTIFY_HEADERS = ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial",
                  "Wechatpay-Signature-Type")


def held_serials(wp, config) -> set[str]:
    """Serials whose key we already hold: the WeChat Pay public key id and any loaded certificates."""
    serials = {config["WECHATPAY_PUBLIC_KEY_ID"]}
    serials.update(format(cert.serial_number, "X") for cert in getattr(wp._core, "_certificates", ()))
    return serials


def verify_notification(headers, body: bytes | str, config) -> dict:
    """The decrypted transaction of a genuine, fresh TRANSACTION.SUCCESS notification, else raise."""
    return check_transaction(open_notification(headers, body, config), config)


def open_notification(headers, body: bytes | str, config) -> dict:
    """A genuine, fresh notification of any event type (payment, REFUND.*), resource decrypted, else raise."""
    canonical = {name: headers.get(name, "") for name in NOTIFY_HEADERS}
    ts = canonical["Wechatpay-Timestamp"]
    if not ts.isdigit() or abs(time.time() - int(ts)) > MAX_SKEW:
        raise Unauthorized("通知时间戳无效或过期", code="pay_notify_stale")
    if canonical["Wechatpay-Signature-Type"] != "WECHATPAY2-SHA256-RSA2048":
        raise Unauthorized("不支持的签名类型", code="pay_notify_bad_signature")
    wp = pay_client(config)
    if canonical["Wechatpay-Serial"].upper() not in {s.upper() for s in held_serials(wp, config)}:
        raise Unauthorized("未知的平台公钥或证书序列号", code="pay_notify_unknown_serial")
    if not (canonical["Wechatpay-Signature"] and canonical["Wechatpay-Nonce"]):
        raise Unauthorized("通知签名或密文无效", code="pay_notify_bad_signature")
    try:
        data = wp.callback(canonical, body)
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
