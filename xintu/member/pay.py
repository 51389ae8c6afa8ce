"""WeChat Pay v3 through wechatpayv3: client construction, JSAPI sign package, notification checks.

The SDK verifies signatures and decrypts, but it never checks the notification's age and returns None
(not an exception) for a bad signature: both are handled here so callers get one ``XintuError``.

Signatures (answers and notifications) are verified in the mode ``WECHATPAY_VERIFY_MODE`` names:
``public_key`` (the WeChat Pay public key, serial ``PUB_KEY_ID_…``), ``certificate`` (platform
certificates the SDK downloads from ``/v3/certificates``, decrypted with the APIv3 key and kept in
``WECHATPAY_CERT_DIR``; serial = the certificate's serial number in hex) or ``both`` (the transition from
certificates to the public key, when WeChat signs with either). The SDK picks the key by the
``Wechatpay-Serial`` of the message; ``GatewayCore`` only lets it see serials the mode admits.

Two SDK behaviours must never be reachable by whoever can POST a notification: a ``Wechatpay-Serial``
it does not hold makes it clear its certificate list and download ``/v3/certificates`` on the request
thread, and ``Http-Wechatpay-*`` / lower-case headers make it verify those instead of the canonical ones.
So the serial must be one we hold before the SDK is called (in a certificate mode an unknown hex serial
re-downloads the certificates at most once per ``WECHATPAY_CERT_REFRESH_SECONDS`` per process, the old
list kept until a new one arrives; an answer of the gateway with such a serial re-downloads at once: that
is how a rotated certificate is learnt), and the SDK is handed exactly the five canonical headers.

The gateway (the sandbox in development) is a constructor argument of ``GatewayWeChatPay``.
"""
from __future__ import annotations

import copy
import logging
import os
import re
import secrets
import threading
import time

from xintu.errors import Unauthorized, Unavailable

log = logging.getLogger(__name__)

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
MAX_SKEW = 300  # seconds, as WeChat Pay recommends
MODES = ("public_key", "certificate", "both")
_HEX = re.compile(r"[0-9A-Fa-f]{1,64}")
_cache: dict = {}
_lock = threading.Lock()


def verify_mode(config) -> str:
    return config.get("WECHATPAY_VERIFY_MODE") or "public_key"


def certificate_serial(number: int) -> str:
    """A platform certificate's serial as WeChat Pay writes it (``serial_no``, ``Wechatpay-Serial``)."""
    return format(number, "X")


def gateway_core_class():
    """``GatewayCore``: wechatpayv3's ``Core`` reaching ``gateway`` from its first request on, and verifying
    only by the keys of the verification mode.

    wechatpayv3 2.0.4 (pinned in setup.cfg) has no public setting for the gateway: ``Core.__init__``
    hard-codes ``https://api.mch.weixin.qq.com`` and then, without a public key, downloads the platform
    certificates (``_init_certificates``) — so the gateway is put in place just before that download.
    ``_verify_signature`` (answers and notifications) first asks :meth:`held_key`; re-check both when the
    pin moves."""
    from wechatpayv3.core import Core

    class GatewayCore(Core):
        def __init__(self, *, gateway: str, use_certificates: bool, refresh_seconds: float = 300, **kwargs):
            self._gateway = gateway.rstrip("/")
            self._use_certificates = use_certificates
            self._refresh_seconds = float(refresh_seconds)
            self._refreshed_at = None
            self._refresh_lock = threading.Lock()
            self._answering = threading.local()
            super().__init__(**kwargs)
            self._gate_way = self._gateway
            if use_certificates and self._public_key_id:
                # both modes: the SDK loads no certificates when it has a public key
                try:
                    self._init_certificates()
                except Exception as exc:  # noqa: BLE001  the SDK raises a plain Exception when none came
                    log.warning("wechatpay: no platform certificate loaded (%s); the public key still "
                                "verifies", exc)

        def _init_certificates(self):
            self._gate_way = self._gateway
            self._refreshed_at = time.monotonic()
            super()._init_certificates()

        def held_key(self, serial: str, refresh: bool = True) -> str | None:
            """``public_key`` or ``certificate`` when ``serial`` names a key we hold in this mode, else None.
            In a certificate mode an unknown hex serial re-downloads the certificates first, at most once
            per ``refresh_seconds``."""
            if self._public_key_id and serial == self._public_key_id:
                return "public_key"
            if not (self._use_certificates and serial and _HEX.fullmatch(serial)):
                return None
            number = int(serial, 16)
            if any(cert.serial_number == number for cert in self._certificates):
                return "certificate"
            if refresh and self.reload_cert_dir():   # another worker may have downloaded it already
                found = self.held_key(serial, refresh=False)
                if found:
                    return found
            if refresh and self.refresh_certificates(force=False):
                return self.held_key(serial, refresh=False)
            return None

        def reload_cert_dir(self) -> bool:
            """Take the certificates in the cert dir, where the SDK writes every one it downloads, so one a
            sibling worker learnt (from an answer, say) verifies here too without a download of our own.
            Read only when the folder changed since the last look (one stat per unknown serial); the list
            in use is replaced only by a non-empty one. True when it was replaced."""
            folder = self._cert_dir
            try:
                stamp = os.stat(folder).st_mtime_ns if folder else None
            except OSError:
                return False
            if stamp is None or stamp == getattr(self, "_dir_stamp", None):
                return False
            self._dir_stamp = stamp
            fresh = copy.copy(self)
            fresh._certificates = []
            fresh._update_certificates = lambda: None   # the SDK's loader, without its download fallback
            try:
                Core._init_certificates(fresh)
            except Exception:  # noqa: BLE001  the SDK raises a plain Exception when the folder holds none
                return False
            if {c.serial_number for c in fresh._certificates} == {c.serial_number for c in self._certificates}:
                return False
            self._certificates = fresh._certificates
            return True

        def refresh_certificates(self, force: bool = True) -> bool:
            """Download the platform certificates again (the SDK's own download, decrypt and expiry check,
            written to the cert dir); the list in use is replaced only by a non-empty new one. False when
            nothing was downloaded (rate limit, network, an answer without a valid certificate)."""
            with self._refresh_lock:
                now = time.monotonic()
                if not force and self._refreshed_at is not None and now - self._refreshed_at < self._refresh_seconds:
                    return False
                self._refreshed_at = now
                fresh = copy.copy(self)
                fresh._certificates = []
                try:
                    fresh._update_certificates()
                except Exception as exc:  # noqa: BLE001  requests errors, malformed answers
                    log.warning("wechatpay: certificate download failed: %s", exc)
                    return False
                if not fresh._certificates:
                    return False
                self._certificates = fresh._certificates   # one reference swap: readers see old or new
                return True

        def request(self, *args, **kwargs):
            # An answer comes from the gateway we called (over TLS): a certificate serial we do not hold
            # there means WeChat rotated its certificate, so answers re-download without the interval.
            outer = getattr(self._answering, "active", False)   # the certificate download nests in one
            self._answering.active = True
            try:
                return super().request(*args, **kwargs)
            finally:
                self._answering.active = outer

        def _verify_signature(self, headers, body):
            serial = headers.get("Wechatpay-Serial") or headers.get("wechatpay-serial") or ""
            if getattr(self._answering, "active", False):
                known = self.held_key(serial, refresh=False) or (
                    self._use_certificates and _HEX.fullmatch(serial) and self.refresh_certificates()
                    and self.held_key(serial, refresh=False))
            else:
                known = self.held_key(serial)
            if not known:
                return False
            return super()._verify_signature(headers, body)

    return GatewayCore


def gateway_wechatpay_class():
    """``GatewayWeChatPay``: wechatpayv3's ``WeChatPay`` with the gateway as a keyword argument, built on
    :func:`gateway_core_class` (its ``__init__`` only stores these attributes and makes the core)."""
    from wechatpayv3 import WeChatPay

    core_class = gateway_core_class()

    class GatewayWeChatPay(WeChatPay):
        def __init__(self, *, wechatpay_type, mchid, appid, notify_url=None, partner_mode=False,
                     gateway: str = DEFAULT_GATEWAY, use_certificates: bool = False, refresh_seconds: float = 300,
                     **core_kwargs):
            self._type, self._mchid, self._appid = wechatpay_type, mchid, appid
            self._notify_url, self._partner_mode = notify_url, partner_mode
            self._core = core_class(gateway=gateway, use_certificates=use_certificates,
                                    refresh_seconds=refresh_seconds, mchid=mchid, **core_kwargs)

        @property
        def gateway(self) -> str:
            return self._core._gate_way

        @property
        def certificates(self) -> list:
            """The platform certificates held now (x509 objects)."""
            return list(self._core._certificates)

    return GatewayWeChatPay


def _pem(value):
    """Settings may hold PEM text or a path to a PEM file."""
    if value and "-----BEGIN" not in value and os.path.exists(value):
        with open(value, encoding="utf-8") as fh:
            return fh.read()
    return value


_COMMON = ("WECHATPAY_MCHID", "WECHATPAY_PRIVATE_KEY", "WECHATPAY_CERT_SERIAL_NO", "WECHAT_APP_ID",
           "WECHATPAY_APIV3_KEY")
_PUBLIC_KEY = ("WECHATPAY_PUBLIC_KEY", "WECHATPAY_PUBLIC_KEY_ID")


def pay_client(config):
    """One WeChatPay per distinct configuration (key loading is not free; the object is thread-safe).

    In certificate mode the platform certificates come from ``WECHATPAY_CERT_DIR``, downloaded from the
    gateway when the folder holds none valid; no certificate at all is 503 ``pay_certificates_unavailable``."""
    from wechatpayv3 import WeChatPayType

    mode = verify_mode(config)
    if mode not in MODES:
        raise Unavailable(f"WECHATPAY_VERIFY_MODE {mode!r} is unknown", code="pay_not_configured")
    required = _COMMON + (_PUBLIC_KEY if mode != "certificate" else ())
    keys = required + ("WECHATPAY_BASE_URL", "WECHATPAY_CERT_DIR", "WECHATPAY_CERT_REFRESH_SECONDS")
    cache_key = (mode,) + tuple(config.get(k) for k in keys)
    with _lock:
        if cache_key not in _cache:
            missing = [k for k in required if not config.get(k)]
            if mode != "public_key" and not config.get("WECHATPAY_CERT_DIR"):
                missing.append("WECHATPAY_CERT_DIR")
            if missing:
                raise Unavailable("微信支付未配置: " + ", ".join(missing), code="pay_not_configured")
            keyed = {"public_key": _pem(config["WECHATPAY_PUBLIC_KEY"]),
                     "public_key_id": config["WECHATPAY_PUBLIC_KEY_ID"]} if mode != "certificate" else {}
            try:
                wp = gateway_wechatpay_class()(
                    gateway=config.get("WECHATPAY_BASE_URL") or DEFAULT_GATEWAY,
                    use_certificates=mode != "public_key",
                    refresh_seconds=_number(config.get("WECHATPAY_CERT_REFRESH_SECONDS"), 300),
                    cert_dir=config.get("WECHATPAY_CERT_DIR") if mode != "public_key" else None,
                    wechatpay_type=WeChatPayType.JSAPI, mchid=config["WECHATPAY_MCHID"],
                    private_key=_pem(config["WECHATPAY_PRIVATE_KEY"]),
                    cert_serial_no=config["WECHATPAY_CERT_SERIAL_NO"], appid=config["WECHAT_APP_ID"],
                    apiv3_key=config["WECHATPAY_APIV3_KEY"], notify_url=notify_url(config), timeout=(5, 10),
                    **keyed)
            except Exception as exc:
                if not (mode == "certificate" and (_is_network(exc) or "platform certificate" in str(exc))):
                    raise
                raise Unavailable("未能取得微信支付平台证书: " + str(exc)[:160],
                                  code="pay_certificates_unavailable") from None
            _cache[cache_key] = wp
        return _cache[cache_key]


def _number(value, default: float) -> float:
    return default if value is None or value == "" else float(value)


def _is_network(exc) -> bool:
    import requests

    return isinstance(exc, requests.RequestException)


def notify_url(config) -> str:
    return config.get("WECHATPAY_NOTIFY_URL") or config["PUBLIC_BASE_URL"].rstrip("/") + "/wechat/pay/notify"


def jsapi_params(wp, appid: str, prepay_id: str) -> dict:
    """The object WeixinJSBridge 'getBrandWCPayRequest' takes, signed with the merchant key."""
    ts, nonce, package = str(int(time.time())), secrets.token_hex(16), f"prepay_id={prepay_id}"
    return {"appId": appid, "timeStamp": ts, "nonceStr": nonce, "package": package, "signType": "RSA",
            "paySign": wp.sign([appid, ts, nonce, package])}


NOTIFY_HEADERS = ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial",
                  "Wechatpay-Signature-Type")


def held_serials(wp) -> set[str]:
    """Serials whose key we hold now: the WeChat Pay public key id and the platform certificates."""
    serials = {wp._core._public_key_id} if wp._core._public_key_id else set()
    serials.update(certificate_serial(cert.serial_number) for cert in wp.certificates)
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
    if wp._core.held_key(canonical["Wechatpay-Serial"]) is None:
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
