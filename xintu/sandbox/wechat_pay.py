"""Fake WeChat Pay API v3 (JSAPI): prepay, query, close, refund, refund query, and the notifications.

Speaks the real wire protocol so wechatpayv3 can be pointed at it by its gateway
(``xintu.member.pay.gateway_wechatpay_class``):
requests must carry a valid merchant ``Authorization`` (WECHATPAY2-SHA256-RSA2048, checked against the
merchant public key), every 2xx answer is signed with the platform key generated at start (the SDK
verifies it, the empty 204 of close included), and notifications are signed the same way with the
``resource`` sealed by AEAD_AES_256_GCM under the APIv3 key. ``/sandbox/cashier`` stands in for the
WeChat cashier that WeixinJSBridge would open: it checks the JSAPI ``paySign`` and then pays.

Refunds answer like WeChat's (``PROCESSING``, then a REFUND.SUCCESS / ABNORMAL / CLOSED notification a
moment later, per ``refund_outcome``) with its error codes: PARAM_ERROR, RESOURCE_NOT_EXISTS (no such
order or refund), INVALID_REQUEST (unpaid order, a refund above what is left, an out_refund_no reused with
other values), NOT_ENOUGH (the merchant's balance, ``merchant_balance_fen``, cannot cover it).
``portal_refund`` plays a refund made in the merchant portal: an out_refund_no the merchant never sent.

Verification modes: the sandbox holds both a WeChat Pay public key (``public_key_id`` = ``PUB_KEY_ID_…``)
and a platform certificate (self-signed X.509 with a key pair of its own, made at start), published on
``GET /v3/certificates`` as WeChat does (``encrypt_certificate`` sealed by AEAD_AES_256_GCM under the APIv3
key, the answer signed). ``signer`` — ``public_key`` or ``certificate`` — says which one signs answers and
notifications (``Wechatpay-Serial`` = the key id or the certificate's hex serial); ``set_signer`` (or
``POST /sandbox/signing {"with": …}`` with the control key, `xintu sandbox signing`) switches it mid-run,
as WeChat does during a merchant's transition. ``rotate_certificate`` adds a newer certificate that signs
from then on.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .base import Response, SandboxServer
from .keys import platform_certificate, rsa_keypair

CST = timezone(timedelta(hours=8))
AUTH_RE = re.compile(r'(\w+)="([^"]*)"')
BILL_COLUMNS = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
                "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
                "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注").split(",")
BILL_SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额".split(",")
FEE_RATE = 6  # per mille, as WeChat Pay charges most merchants


def yuan(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def render_bill(rows: list[dict]) -> str:
    """WeChat Pay's ALL trade bill text for ``rows`` (dicts of BILL_COLUMNS; amounts in fen under the
    keys ``settled``, ``refund``, ``total``): every field backtick-prefixed, then the summary block."""
    def line(cells):
        return ",".join("`" + str(c).replace(",", " ") for c in cells)

    out = [",".join(BILL_COLUMNS)]
    fees = 0
    for row in rows:
        fee = row["settled"] * FEE_RATE // 1000
        fees += fee
        cells = {**row, "应结订单金额": yuan(row["settled"]), "代金券金额": "0.00", "退款金额": yuan(row["refund"]),
                 "充值券退款金额": "0.00", "手续费": f"{fee / 100:.5f}", "费率": f"{FEE_RATE / 10:.2f}%",
                 "订单金额": yuan(row["total"]), "申请退款金额": yuan(row["refund"]), "费率备注": ""}
        out.append(line(cells.get(c, "") for c in BILL_COLUMNS))
    out.append(",".join(BILL_SUMMARY))
    settled, refund = sum(r["settled"] for r in rows), sum(r["refund"] for r in rows)
    out.append(line([len(rows), yuan(settled), yuan(refund), "0.00", f"{fees / 100:.5f}",
                     yuan(sum(r["total"] for r in rows)), yuan(refund)]))
    return "\r\n".join(out) + "\r\n"


def rsa_sign(private_pem: str, message: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(public_pem: str, message: str, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(base64.b64decode(signature), message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):  # binascii.Error is a ValueError
        return False


class PaySandbox(SandboxServer):
    def __init__(self, mchid, appid, apiv3_key, merchant_public_key, **kw):
        super().__init__(**kw)
        self.mchid, self.appid, self.apiv3_key = mchid, appid, apiv3_key
        self.merchant_public_key = merchant_public_key
        self.platform_private_key, self.platform_public_key = rsa_keypair()
        self.public_key_id = "PUB_KEY_ID_" + secrets.token_hex(12).upper()
        self.lock = threading.Lock()
        self.certificates: list[dict] = []   # published on /v3/certificates; the last one signs
        self.rotate_certificate()
        self.signer = "public_key"           # or "certificate": who signs answers and notifications
        self.orders: dict[str, dict] = {}   # out_trade_no -> transaction
        self.by_prepay: dict[str, str] = {}  # prepay_id -> out_trade_no
        self.refunds: dict[str, dict] = {}   # out_refund_no -> refund
        self.refund_outcome = "SUCCESS"      # SUCCESS / ABNORMAL / CLOSED, or None: no notification
        self.refund_delay = 0.3              # seconds before the refund notification
        self.merchant_balance_fen = 10**9
        self.notified: list[tuple[str, int]] = []   # (out_refund_no, HTTP status of our server)
        self.fail_prepay = False             # create the order, then answer 500 SYSTEM_ERROR
        self.control_key: str | None = None  # set by the embedded runtime: `xintu sandbox bill`
        self.bill_files: dict[str, bytes] = {}   # download token -> gzip of a bill
        self.bill_changes = _no_changes()    # how the bills disagree with what happened (tests)
        for method, pattern, handler in [
            ("POST", "/v3/pay/transactions/jsapi", self._jsapi),
            ("GET", "/v3/pay/transactions/out-trade-no/(?P<no>[^/]+)", self._query),
            ("POST", "/v3/pay/transactions/out-trade-no/(?P<no>[^/]+)/close", self._close),
            ("POST", "/v3/refund/domestic/refunds", self._refund),
            ("GET", "/v3/refund/domestic/refunds/(?P<no>[^/]+)", self._query_refund),
            ("GET", "/v3/bill/tradebill", self._trade_bill),
            ("GET", "/v3/billdownload/file", self._download_bill),
            ("GET", "/v3/certificates", self._certificates),
            ("POST", "/sandbox/signing", self._control_signing),
            ("GET", "/sandbox/cashier", self._cashier_page),
            ("POST", "/sandbox/bill", self._control_bill),
            ("POST", "/sandbox/cashier", self._cashier_pay),
        ]:
            self.route(method, pattern, self._authenticated(handler) if pattern.startswith("/v3") else handler)

    # -- signing keys -----------------------------------------------------------------------------
    def rotate_certificate(self) -> str:
        """A new platform certificate, published next to the old ones and signing from now on (in
        certificate mode); returns its serial as ``Wechatpay-Serial`` carries it."""
        private, pem, number = platform_certificate()
        cert = {"private_key": private, "pem": pem, "serial_no": format(number, "X"),
                "effective_time": (datetime.now(CST) - timedelta(days=1)).isoformat(timespec="seconds"),
                "expire_time": (datetime.now(CST) + timedelta(days=1825)).isoformat(timespec="seconds")}
        with self.lock:
            self.certificates.append(cert)
        return cert["serial_no"]

    @property
    def certificate(self) -> dict:
        """The platform certificate that signs in certificate mode (the newest)."""
        return self.certificates[-1]

    def set_signer(self, signer: str) -> None:
        if signer not in ("public_key", "certificate"):
            raise ValueError(f"unknown signer {signer!r}")
        self.signer = signer

    def signing_key(self) -> tuple[str, str]:
        """(private key PEM, Wechatpay-Serial) of whoever signs now."""
        if self.signer == "certificate":
            return self.certificate["private_key"], self.certificate["serial_no"]
        return self.platform_private_key, self.public_key_id

    def _certificates(self, req):
        """GET /v3/certificates: every published certificate, sealed under the APIv3 key."""
        data = []
        for cert in list(self.certificates):
            nonce, aad = secrets.token_hex(6), "certificate"
            cipher = AESGCM(self.apiv3_key.encode()).encrypt(nonce.encode(), cert["pem"].encode(), aad.encode())
            data.append({"serial_no": cert["serial_no"], "effective_time": cert["effective_time"],
                         "expire_time": cert["expire_time"],
                         "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce,
                                                 "associated_data": aad,
                                                 "ciphertext": base64.b64encode(cipher).decode()}})
        # WeChat signs this answer with a platform certificate whoever signs the rest
        return self._signed(200, {"data": data}, signer=(self.certificate["private_key"],
                                                          self.certificate["serial_no"]))

    def _control_signing(self, req):
        """`xintu sandbox signing`: switch the signer mid-run (keyed, like /sandbox/bill)."""
        key = req.header("X-Sandbox-Key") or ""
        if not self.control_key or not secrets.compare_digest(key, self.control_key):
            return self._error(403, "NO_AUTH", "sandbox control key required")
        if req.json().get("with") == "rotate":
            self.rotate_certificate()
            self.set_signer("certificate")
        else:
            try:
                self.set_signer(req.json().get("with"))
            except ValueError:
                return self._error(400, "PARAM_ERROR", "with 须为 public_key、certificate 或 rotate")
        return Response.json({"signer": self.signer, "public_key_id": self.public_key_id,
                              "certificates": [c["serial_no"] for c in self.certificates]})

    # -- protocol plumbing ------------------------------------------------------------------------
    def signed_headers(self, body: str, timestamp=None, private_key=None, serial=None) -> dict:
        """Signed by the current signer; ``private_key`` / ``serial`` override it (forgeries in tests)."""
        ts, nonce = str(timestamp or int(time.time())), secrets.token_hex(16).upper()
        signer_key, signer_serial = self.signing_key()
        signature = rsa_sign(private_key or signer_key, f"{ts}\n{nonce}\n{body}\n")
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
                "Wechatpay-Serial": serial or signer_serial,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def _signed(self, status, data=None, signer=None):
        body = "" if data is None else json.dumps(data, ensure_ascii=False)
        key, serial = signer or (None, None)
        headers = self.signed_headers(body, private_key=key, serial=serial)
        if data is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return Response(status, body.encode("utf-8"), headers)

    @staticmethod
    def _error(status, code, message):
        return Response.json({"code": code, "message": message}, status=status)

    def _authenticated(self, handler):
        def check(req):
            scheme, _, params = req.headers.get("Authorization", "").partition(" ")
            fields = dict(AUTH_RE.findall(params))
            if scheme != "WECHATPAY2-SHA256-RSA2048" or fields.get("mchid") != self.mchid:
                return self._error(401, "SIGN_ERROR", "Authorization 缺失或商户号不符")
            if abs(time.time() - int(fields.get("timestamp") or 0)) > 300:
                return self._error(401, "SIGN_ERROR", "请求时间戳过期")
            message = "\n".join([req.method, req.target, fields["timestamp"], fields.get("nonce_str", ""),
                                 req.body.decode("utf-8")]) + "\n"
            if not rsa_verify(self.merchant_public_key, message, fields.get("signature", "")):
                return self._error(401, "SIGN_ERROR", "签名错误")
            return handler(req)
        return check

    # -- API --------------------------------------------------------------------------------------
    def _jsapi(self, req):
        data = req.json()
        total = (data.get("amount") or {}).get("total")
        openid = (data.get("payer") or {}).get("openid")
        no = data.get("out_trade_no") or ""
        if data.get("appid") != self.appid or data.get("mchid") != self.mchid:
            return self._error(400, "PARAM_ERROR", "appid和mch_id不匹配")
        if not (isinstance(total, int) and total > 0 and openid and 6 <= len(no) <= 32
                and data.get("description") and data.get("notify_url")):
            return self._error(400, "PARAM_ERROR", "参数错误")
        with self.lock:
            order = self.orders.get(no)
            if order and (order["amount"] != total or order["openid"] != openid):
                return self._error(400, "INVALID_REQUEST", "商户订单号重复")
            if order is None:
                order = {"out_trade_no": no, "amount": total, "openid": openid, "state": "NOTPAY",
                         "description": data["description"], "notify_url": data["notify_url"],
                         "attach": data.get("attach", ""), "prepay_id": "wx" + secrets.token_hex(16),
                         "transaction_id": None, "success_time": None, "refunded": 0,
                         "time_expire": data.get("time_expire")}
                self.orders[no] = order
                self.by_prepay[order["prepay_id"]] = no
        if self.fail_prepay:
            return self._error(500, "SYSTEM_ERROR", "系统错误")
        return self._signed(200, {"prepay_id": order["prepay_id"]})

    def transaction(self, order) -> dict:
        """The transaction object as query answers and notifications carry it."""
        result = {"appid": self.appid, "mchid": self.mchid, "out_trade_no": order["out_trade_no"],
                  "trade_type": "JSAPI", "trade_state": order["state"], "attach": order["attach"],
                  "trade_state_desc": {"NOTPAY": "订单未支付", "SUCCESS": "支付成功",
                                       "CLOSED": "已关闭"}[order["state"]],
                  "amount": {"total": order["amount"], "currency": "CNY", "payer_currency": "CNY"},
                  "payer": {"openid": order["openid"]}, "promotion_detail": []}
        if order["state"] == "SUCCESS":
            result.update(transaction_id=order["transaction_id"], success_time=order["success_time"],
                          bank_type="OTHERS")
            result["amount"]["payer_total"] = order["amount"]
        return result

    def _query(self, req):
        if req.arg("mchid") != self.mchid:
            return self._error(400, "PARAM_ERROR", "mchid 不符")
        order = self.orders.get(req.match["no"])
        if order is None:
            return self._error(404, "ORDER_NOT_EXIST", "订单不存在")
        return self._signed(200, self.transaction(order))

    def _close(self, req):
        if req.json().get("mchid") != self.mchid:
            return self._error(400, "PARAM_ERROR", "mchid 不符")
        with self.lock:
            order = self.orders.get(req.match["no"])
            if order is None:
                return self._error(404, "ORDER_NOT_EXIST", "订单不存在")
            if order["state"] == "SUCCESS":
                return self._error(400, "ORDER_PAID", "订单已支付")
            order["state"] = "CLOSED"
        return self._signed(204)

    # -- refunds ----------------------------------------------------------------------------------
    def _refund(self, req):
        data = req.json()
        amount = data.get("amount") or {}
        no, refund = data.get("out_refund_no") or "", amount.get("refund")
        if not (1 <= len(no) <= 64 and isinstance(refund, int) and refund > 0
                and isinstance(amount.get("total"), int) and amount.get("currency", "CNY") == "CNY"
                and (data.get("out_trade_no") or data.get("transaction_id"))):
            return self._error(400, "PARAM_ERROR", "参数错误")
        if len(data.get("reason") or "") > 80:
            return self._error(400, "PARAM_ERROR", "退款原因不能超过80个字符")
        with self.lock:
            order = self.orders.get(data.get("out_trade_no") or "") or next(
                (o for o in self.orders.values() if o["transaction_id"]
                 and o["transaction_id"] == data.get("transaction_id")), None)
            if order is None:
                return self._error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
            existing = self.refunds.get(no)
            if existing:
                if existing["out_trade_no"] != order["out_trade_no"] or existing["refund"] != refund:
                    return self._error(400, "INVALID_REQUEST", "同一退款单号的请求参数不一致")
                return self._signed(200, self.refund_object(existing))
            if order["state"] != "SUCCESS":
                return self._error(400, "INVALID_REQUEST", "订单未支付，不能退款")
            if amount["total"] != order["amount"]:
                return self._error(400, "INVALID_REQUEST", "订单金额与原订单不符")
            if refund > order["amount"] - order["refunded"]:
                return self._error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
            if refund > self.merchant_balance_fen:
                return self._error(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
            created = self._new_refund(order, no, refund, data.get("notify_url") or order["notify_url"])
        self._notify_later(created)
        return self._signed(200, self.refund_object(created))

    def _new_refund(self, order, no, amount, notify_url) -> dict:
        """Called with the lock held: reserve the amount on the order, record the refund."""
        order["refunded"] += amount
        self.merchant_balance_fen -= amount
        created = {"out_refund_no": no, "refund_id": "50" + secrets.token_hex(14), "refund": amount,
                   "out_trade_no": order["out_trade_no"], "status": "PROCESSING", "notify_url": notify_url,
                   "create_time": datetime.now(CST).isoformat(timespec="seconds"), "success_time": None}
        self.refunds[no] = created
        return created

    def refund_object(self, refund) -> dict:
        order = self.orders[refund["out_trade_no"]]
        result = {"refund_id": refund["refund_id"], "out_refund_no": refund["out_refund_no"],
                  "transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
                  "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
                  "create_time": refund["create_time"], "status": refund["status"],
                  "funds_account": "AVAILABLE",
                  "amount": {"total": order["amount"], "refund": refund["refund"],
                             "payer_total": order["amount"],
                             "payer_refund": refund["refund"], "settlement_total": order["amount"],
                             "settlement_refund": refund["refund"], "discount_refund": 0, "currency": "CNY",
                             "refund_fee": 0, "from": []},
                  "promotion_detail": []}
        if refund["success_time"]:
            result["success_time"] = refund["success_time"]
        return result

    def _query_refund(self, req):
        refund = self.refunds.get(req.match["no"])
        if refund is None:
            return self._error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._signed(200, self.refund_object(refund))

    def settle_refund(self, out_refund_no, outcome="SUCCESS") -> dict:
        """WeChat finishes the refund: SUCCESS, ABNORMAL (the payer's card is gone; not final) or CLOSED
        (the amount goes back to the refundable balance)."""
        with self.lock:
            refund = self.refunds[out_refund_no]
            if refund["status"] in ("PROCESSING", "ABNORMAL"):
                refund["status"] = outcome
                if outcome == "SUCCESS":
                    refund["success_time"] = datetime.now(CST).isoformat(timespec="seconds")
                elif outcome == "CLOSED":
                    self.orders[refund["out_trade_no"]]["refunded"] -= refund["refund"]
                    self.merchant_balance_fen += refund["refund"]
            return refund

    def refund_resource(self, refund) -> dict:
        """The decrypted resource of a refund notification (WeChat's shape: no appid, amounts only)."""
        order = self.orders[refund["out_trade_no"]]
        result = {"mchid": self.mchid, "out_trade_no": order["out_trade_no"],
                  "transaction_id": order["transaction_id"], "out_refund_no": refund["out_refund_no"],
                  "refund_id": refund["refund_id"], "refund_status": refund["status"],
                  "user_received_account": "支付用户零钱",
                  "amount": {"total": order["amount"], "refund": refund["refund"],
                             "payer_total": order["amount"], "payer_refund": refund["refund"]}}
        if refund["success_time"]:
            result["success_time"] = refund["success_time"]
        return result

    def build_refund_notification(self, out_refund_no, *, resource=None, **kw):
        refund = self.refunds[out_refund_no]
        plain = resource if resource is not None else self.refund_resource(refund)
        event = {"SUCCESS": ("REFUND.SUCCESS", "退款成功"), "ABNORMAL": ("REFUND.ABNORMAL", "退款异常"),
                 "CLOSED": ("REFUND.CLOSED", "退款关闭")}[plain.get("refund_status", refund["status"])]
        return self._envelope(plain, event_type=event[0], summary=event[1], original_type="refund", **kw)

    def deliver_refund(self, out_refund_no, headers, body) -> int:
        url = self.refunds[out_refund_no]["notify_url"]
        code = requests.post(url, data=body.encode("utf-8"), headers=headers, timeout=10).status_code
        self.notified.append((out_refund_no, code))
        return code

    def notify_refund(self, out_refund_no, outcome="SUCCESS", repeat=1) -> list[int]:
        self.settle_refund(out_refund_no, outcome)
        headers, body = self.build_refund_notification(out_refund_no)
        return [self.deliver_refund(out_refund_no, headers, body) for _ in range(repeat)]

    def _notify_later(self, refund):
        outcome = self.refund_outcome
        if not outcome:
            return

        def run():
            time.sleep(self.refund_delay)
            try:
                self.notify_refund(refund["out_refund_no"], outcome)
            except requests.RequestException:
                pass   # WeChat would retry; tests and the shell can deliver again
        threading.Thread(target=run, name="refund-notify", daemon=True).start()

    def portal_refund(self, out_trade_no, amount, outcome="SUCCESS", notify=True) -> dict:
        """A refund made by staff in the merchant portal: WeChat picks the out_refund_no."""
        with self.lock:
            order = self.orders[out_trade_no]
            if order["state"] != "SUCCESS" or amount > order["amount"] - order["refunded"]:
                raise ValueError("not refundable")
            no = "MP" + secrets.token_hex(15).upper()
            refund = self._new_refund(order, no, amount, order["notify_url"])
        if notify:
            self.notify_refund(refund["out_refund_no"], outcome)
        return refund

    # -- trade bills ------------------------------------------------------------------------------
    def bill_rows(self, day: str) -> list[dict]:
        """The lines of ``day``'s ALL bill: payments and refunds that succeeded that day (Beijing time), as
        changed by :meth:`change_bill` (lines dropped — by out_trade_no or out_refund_no —, amounts changed,
        strangers and refunds added)."""
        changes = self.bill_changes
        rows = []
        with self.lock:
            paid = [o for o in self.orders.values()
                    if o["state"] == "SUCCESS" and (o["success_time"] or "")[:10] == day]
            refunded = [dict(r) for r in self.refunds.values()
                        if r["status"] == "SUCCESS" and (r["success_time"] or "")[:10] == day]
        for order in sorted(paid, key=lambda o: o["success_time"]):
            if order["out_trade_no"] in changes["drop"]:
                continue
            amount = changes["amounts"].get(order["out_trade_no"], order["amount"])
            rows.append(self._bill_row(order, "SUCCESS", amount))
        for stranger in changes["strangers"]:
            if stranger["success_time"][:10] == day:
                rows.append(self._bill_row(stranger, "SUCCESS", stranger["amount"]))
        for refund in sorted(refunded, key=lambda r: r["success_time"]):   # refunds that succeeded that day
            if refund["out_refund_no"] in changes["drop"]:
                continue
            order = self.orders[refund["out_trade_no"]]
            rows.append(self._bill_row({**order, "success_time": refund["success_time"]}, "REFUND", 0,
                                       refund={"refund_id": refund["refund_id"], "amount": refund["refund"],
                                               "out_refund_no": refund["out_refund_no"]}))
        for refund in changes["refunds"]:
            if refund["time"][:10] == day:
                order = self.orders.get(refund["out_trade_no"]) or {
                    "out_trade_no": refund["out_trade_no"], "transaction_id": "4200" + secrets.token_hex(12),
                    "openid": "o" + secrets.token_hex(14), "description": "", "attach": "",
                    "amount": refund["amount"], "success_time": refund["time"]}
                rows.append(self._bill_row({**order, "success_time": refund["time"]}, "REFUND", 0,
                                           refund=refund))
        return rows

    def _bill_row(self, order, state, amount, refund=None) -> dict:
        row = {"交易时间": order["success_time"][:19].replace("T", " "), "公众账号ID": self.appid,
               "商户号": self.mchid, "特约商户号": "0", "设备号": "", "微信订单号": order["transaction_id"],
               "商户订单号": order["out_trade_no"], "用户标识": order["openid"], "交易类型": "JSAPI",
               "交易状态": state, "付款银行": "OTHERS", "货币种类": "CNY", "商品名称": order["description"],
               "商户数据包": order["attach"], "微信退款单号": "0", "商户退款单号": "0", "退款类型": "",
               "退款状态": "", "settled": amount, "refund": 0, "total": amount}
        if refund:
            row.update({"微信退款单号": refund["refund_id"], "商户退款单号": refund["out_refund_no"],
                        "退款类型": "ORIGINAL", "退款状态": "SUCCESS", "refund": refund["amount"]})
        return row

    def change_bill(self, *, drop=None, amount=None, stranger=None, refund=None, reset=False) -> dict:
        """Make the bills disagree with what happened, as a real bill might: ``drop`` an order's line,
        set an order's ``amount`` ((out_trade_no, fen)), add a ``stranger`` payment of so many fen that
        no one here ordered, add a ``refund`` line ((out_trade_no, fen)) — dated now."""
        now = datetime.now(CST).isoformat(timespec="seconds")
        with self.lock:
            if reset:
                self.bill_changes = _no_changes()
            changes = self.bill_changes
            if drop:
                changes["drop"].add(drop)
            if amount:
                changes["amounts"][amount[0]] = int(amount[1])
            if stranger:
                changes["strangers"].append({
                    "out_trade_no": "XTSTRANGER" + secrets.token_hex(8).upper(), "amount": int(stranger),
                    "transaction_id": "4200" + secrets.token_hex(12), "openid": "o" + secrets.token_hex(14),
                    "description": "陌生订单", "attach": "", "success_time": now})
            if refund:
                changes["refunds"].append({"out_trade_no": refund[0], "amount": int(refund[1]), "time": now,
                                           "out_refund_no": "RF" + secrets.token_hex(10).upper(),
                                           "refund_id": "5030" + secrets.token_hex(12)})
            return {"drop": sorted(changes["drop"]), "amounts": dict(changes["amounts"]),
                    "strangers": [s["out_trade_no"] for s in changes["strangers"]],
                    "refunds": [r["out_refund_no"] for r in changes["refunds"]]}

    def _trade_bill(self, req):
        day = req.arg("bill_date") or ""
        try:
            datetime.strptime(day, "%Y-%m-%d")
        except ValueError:
            return self._error(400, "PARAM_ERROR", "bill_date 格式错误")
        kind = req.arg("bill_type", "ALL")
        if kind not in ("ALL", "SUCCESS", "REFUND") or req.arg("tar_type") not in (None, "GZIP"):
            return self._error(400, "PARAM_ERROR", "bill_type 或 tar_type 无效")
        rows = self.bill_rows(day)
        if kind != "ALL":
            rows = [r for r in rows if r["交易状态"] == kind]
        if not rows:
            return self._error(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        text = render_bill(rows).encode("utf-8")
        token = secrets.token_urlsafe(24)
        self.bill_files[token] = gzip.compress(text) if req.arg("tar_type") == "GZIP" else text
        return self._signed(200, {"hash_type": "SHA1", "hash_value": hashlib.sha1(text).hexdigest(),
                                  "download_url": f"{self.base_url}/v3/billdownload/file?token={token}"})

    def _download_bill(self, req):
        data = self.bill_files.get(req.arg("token") or "")
        if data is None:
            return self._error(400, "INVALID_REQUEST", "下载地址无效或已过期")
        return Response(200, data, {"Content-Type": "application/octet-stream"})

    def _control_bill(self, req):
        """`xintu sandbox bill`: the shell's way to make the bills disagree (keyed, loopback only)."""
        key = req.header("X-Sandbox-Key") or ""
        if not self.control_key or not secrets.compare_digest(key, self.control_key):
            return self._error(403, "NO_AUTH", "sandbox control key required")
        data = req.json()
        try:
            pair = lambda key: data.get(key) and (str(data[key][0]), int(data[key][1]))  # noqa: E731
            changes = self.change_bill(drop=data.get("drop"), amount=pair("amount"),
                                       stranger=data.get("stranger") and int(data["stranger"]),
                                       refund=pair("refund"), reset=bool(data.get("reset")))
        except (TypeError, ValueError, IndexError):
            return self._error(400, "PARAM_ERROR", "参数错误")
        return Response.json(changes)

    # -- acting as WeChat Pay towards our notify URL ----------------------------------------------
    def pay(self, prepay_id) -> dict:
        """The payer confirms: the order becomes SUCCESS (once)."""
        with self.lock:
            order = self.orders[self.by_prepay[prepay_id]]
            if order["state"] == "CLOSED":
                raise ValueError("order closed")
            expire = order.get("time_expire")
            if order["state"] == "NOTPAY" and expire and datetime.fromisoformat(expire) < datetime.now(CST):
                raise ValueError("order expired")
            if order["state"] == "NOTPAY":
                order.update(state="SUCCESS", transaction_id="4200" + secrets.token_hex(12),
                             success_time=datetime.now(CST).isoformat(timespec="seconds"))
            return order

    def build_notification(self, prepay_id, *, resource=None, timestamp=None, sign_key=None, apiv3_key=None,
                           serial=None):
        """(headers, body) of a TRANSACTION.SUCCESS notification, signed by the current signer. The keyword
        overrides exist to forge: a changed ``resource``, a stale ``timestamp``, another ``sign_key``,
        ``serial`` or ``apiv3_key``."""
        order = self.orders[self.by_prepay[prepay_id]]
        plain = resource if resource is not None else self.transaction(order)
        return self._envelope(plain, event_type="TRANSACTION.SUCCESS", summary="支付成功",
                              original_type="transaction", timestamp=timestamp, sign_key=sign_key,
                              apiv3_key=apiv3_key, serial=serial)

    def _envelope(self, plain, *, event_type, summary, original_type, timestamp=None, sign_key=None,
                  apiv3_key=None, serial=None):
        nonce, aad = secrets.token_hex(6), original_type
        cipher = AESGCM((apiv3_key or self.apiv3_key).encode()).encrypt(
            nonce.encode(), json.dumps(plain, ensure_ascii=False).encode("utf-8"), aad.encode())
        envelope = {"id": secrets.token_hex(18), "create_time": datetime.now(CST).isoformat(timespec="seconds"),
                    "resource_type": "encrypt-resource", "event_type": event_type, "summary": summary,
                    "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                                 "ciphertext": base64.b64encode(cipher).decode(), "associated_data": aad,
                                 "nonce": nonce}}
        body = json.dumps(envelope, ensure_ascii=False)
        headers = self.signed_headers(body, timestamp=timestamp, private_key=sign_key, serial=serial)
        headers["Content-Type"] = "application/json"
        return headers, body

    def deliver(self, prepay_id, headers, body):
        url = self.orders[self.by_prepay[prepay_id]]["notify_url"]
        resp = requests.post(url, data=body.encode("utf-8"), headers=headers, timeout=10)
        return resp.status_code

    def simulate_payment(self, prepay_id, repeat=1) -> list[int]:
        """Pay the order and notify ``repeat`` times (WeChat Pay re-sends until it sees a 2xx)."""
        self.pay(prepay_id)
        headers, body = self.build_notification(prepay_id)
        return [self.deliver(prepay_id, headers, body) for _ in range(repeat)]

    # -- the cashier page a browser reaches instead of WeixinJSBridge -----------------------------
    def _checked_package(self, params):
        prepay_id = (params.get("package") or "").removeprefix("prepay_id=")
        message = "\n".join(params.get(k) or "" for k in ("appId", "timeStamp", "nonceStr", "package")) + "\n"
        if (prepay_id not in self.by_prepay or params.get("appId") != self.appid
                or not rsa_verify(self.merchant_public_key, message, params.get("paySign") or "")):
            return None
        return prepay_id

    def _cashier_page(self, req):
        params = {k: v[0] for k, v in req.query.items()}
        prepay_id = self._checked_package(params)
        if prepay_id is None:
            return Response.html("<p id=error>支付参数签名无效</p>", status=400)
        order = self.orders[self.by_prepay[prepay_id]]
        hidden = "".join(f"<input type=hidden name={k} value='{html.escape(v)}'>" for k, v in params.items())
        return Response.html(
            "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>模拟微信支付</title><h1>模拟微信支付</h1><p>{html.escape(order['description'])}</p>"
            f"<p id=amount>¥{order['amount'] / 100:.2f}</p><form method=post>{hidden}"
            "<button type=submit id=pay>确认支付</button></form>")

    def _cashier_pay(self, req):
        params = req.form()
        prepay_id = self._checked_package(params)
        if prepay_id is None:
            return Response.html("<p id=error>支付参数签名无效</p>", status=400)
        codes = self.simulate_payment(prepay_id)
        back = params.get("return_url") or ""
        if back.startswith(("http://", "https://")):
            sep = "&" if "?" in back else "?"
            return Response.redirect(back + sep + urlencode({"paid": "1" if codes[0] < 300 else "0"}))
        return Response.html(f"<p id=result>支付完成，通知返回 HTTP {codes[0]}</p>")


def _no_changes() -> dict:
    return {"drop": set(), "amounts": {}, "strangers": [], "refunds": []}
