"""OrderService: WeChat Pay v3 JSAPI orders for membership and credit packages (docs/ARCHITECTURE.md, "Paying").

An order becomes paid exactly once: ``created → paid`` is a compare-and-set UPDATE, and the grant runs in
the same transaction, so duplicate notifications (WeChat Pay re-sends until it sees a 2xx) and a
notification racing the sweep's query cannot grant twice. What an order grants (days, credits) is fixed
when it is created; WeChat is told when it expires (``time_expire``). A payment for an order we already
closed is granted while still honourable (paid by ``time_expire`` + PAY_LATE_GRACE_MINUTES), otherwise
refunded in full automatically (docs/MEMBER.md); either way WeChat gets its 2xx.
"""
from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

from xintu import db
from xintu.errors import Conflict, NotFound, RateLimited, Unauthorized, UpstreamError
from xintu.member import prices
from xintu.member.credits import CreditService
from xintu.member.pay import check_transaction, jsapi_params, notify_url, open_notification, pay_client
from xintu.member.refunds import RefundService
from xintu.member.users import extend_membership
from xintu.models import Order, Refund, User
from xintu.timeutil import iso, utcnow
from xintu.wechat.h5 import h5_url

log = logging.getLogger(__name__)
PENDING_LIMIT = 10             # unpaid orders a user may open within SWEEP_AFTER
SWEEP_AFTER = timedelta(minutes=30)
CST = timezone(timedelta(hours=8))
AUTO_REFUND_REASON = "订单已关闭后才付款，自动退款"


def new_trade_no() -> str:
    return "XT" + utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(8).upper()  # 32 chars


class OrderService:
    def __init__(self, config, refunds: RefundService | None = None, credits: CreditService | None = None):
        self.config = config
        self.credits = credits or CreditService()
        self.refunds = refunds or RefundService(config, self.credits)

    def create(self, user: User, kind: str, package: str | None) -> dict:
        product = prices.lookup(self.config, kind, package)
        recent = Order.select().where(Order.user == user.id, Order.status == "created",
                                      Order.created_at > utcnow() - SWEEP_AFTER).count()
        if recent >= PENDING_LIMIT:
            raise RateLimited("未支付的订单太多，请稍后再试", code="too_many_pending_orders")
        now = utcnow().replace(microsecond=0)
        expire = now + timedelta(minutes=int(self.config.get("PAY_ORDER_EXPIRE_MINUTES") or 30))
        member = product.kind == "member"
        order = Order.create(out_trade_no=new_trade_no(), user=user.id, kind=product.kind,
                             package=product.package, quantity=product.quantity,
                             amount_fen=product.amount_fen, created_at=now, time_expire=expire,
                             grant_days=product.quantity if member else 0,
                             grant_credits=product.bonus_credits if member else product.quantity)
        wp = pay_client(self.config)
        try:
            code, text = wp.pay(description=product.description, out_trade_no=order.out_trade_no,
                                amount={"total": product.amount_fen, "currency": "CNY"},
                                payer={"openid": user.openid}, notify_url=notify_url(self.config),
                                time_expire=wechat_time(expire))
            prepay_id = json.loads(text)["prepay_id"] if code == 200 else None
        except Exception as exc:  # noqa: BLE001  network error, or the SDK refusing an unsigned answer
            log.warning("prepay failed for %s: %s", order.out_trade_no, exc)
            prepay_id = None
        if not prepay_id:
            self._close_at_wechat(wp, order)
            Order.update(status="closed", closed_at=utcnow()).where(Order.id == order.id).execute()
            raise UpstreamError("微信支付下单失败，请稍后再试", code="pay_prepay_failed")
        Order.update(prepay_id=prepay_id).where(Order.id == order.id).execute()
        order.prepay_id = prepay_id
        params = jsapi_params(wp, self.config["WECHAT_APP_ID"], prepay_id)
        return {**order_view(order), "pay": self._pay_step(order, params)}

    @staticmethod
    def _close_at_wechat(wp, order) -> None:
        """WeChat may have created the order before the prepay failed for us: close it there too (best
        effort; time_expire and the paid-after-close rule cover a close that does not get through)."""
        try:
            code, _ = wp.close(out_trade_no=order.out_trade_no)
            if code not in (204, 404):
                log.warning("close of %s at WeChat Pay answered %s", order.out_trade_no, code)
        except Exception as exc:  # noqa: BLE001
            log.warning("close of %s at WeChat Pay failed: %s", order.out_trade_no, exc)

    def _pay_step(self, order, params) -> dict:
        if not (self.config.get("SANDBOX") and self.config.get("SANDBOX_PAY_CASHIER_URL")):
            return {"mode": "jsapi", "params": params}
        # Offline: the sandbox cashier checks the same signed package WeixinJSBridge would get.
        back = h5_url(self.config) + "?" + urlencode({"order": order.out_trade_no})
        return {"mode": "sandbox", "params": params,
                "cashier_url": self.config["SANDBOX_PAY_CASHIER_URL"] + "?" + urlencode({**params,
                                                                                      "return_url": back})}

    # -- payment confirmation ---------------------------------------------------------------------
    def handle_notify(self, headers, body):
        """A WeChat Pay notification: a payment, or a refund's outcome (REFUND.*)."""
        data = open_notification(headers, body, self.config)
        if str(data.get("event_type") or "").startswith("REFUND."):
            return self.refunds.handle_notification(data)
        return self.apply_payment(check_transaction(data, self.config))

    def apply_payment(self, tx: dict) -> Order:
        """Mark paid and grant, once. ``tx`` is a verified transaction (notify or query answer)."""
        order = Order.get_or_none(Order.out_trade_no == str(tx.get("out_trade_no")))
        if order is None:
            raise NotFound("订单不存在", code="order_not_found")
        if (tx.get("amount") or {}).get("total") != order.amount_fen:
            log.error("amount mismatch on %s: %s != %s", order.out_trade_no, tx.get("amount"), order.amount_fen)
            raise Unauthorized("支付金额与订单不符", code="pay_amount_mismatch")
        owner = User.get_by_id(order.user_id)
        if (tx.get("payer") or {}).get("openid") not in (None, owner.openid):
            raise Unauthorized("付款人与订单用户不符", code="pay_payer_mismatch")
        honourable = self.honourable(order, tx)
        refund = None
        with db.atomic():
            flipped = 0
            if honourable:
                flipped = (Order.update(status="paid", transaction_id=tx.get("transaction_id"),
                                        paid_at=utcnow())
                           .where(Order.id == order.id, Order.status.in_(("created", "closed"))).execute())
            if flipped == 1:
                if order.grant_days:
                    extend_membership(order.user_id, order.grant_days)
                if order.grant_credits:
                    self.credits.grant(order.user_id, order.grant_credits,
                                        "membership_bonus" if order.kind == "member" else "purchase",
                                        order.out_trade_no)
            elif not honourable:
                refund = self._refund_late_payment(order, tx)
        if refund is not None:
            try:
                self.refunds.send(refund)
            except Exception as exc:  # noqa: BLE001  the row is recorded: `xintu orders sweep` re-sends it
                log.warning("automatic refund %s not sent yet: %s", refund.out_refund_no, exc)
        order = Order.get_by_id(order.id)
        if order.status == "created":   # cannot happen after the updates above; never keep money silently
            raise Conflict(f"订单状态为 {order.status}，不能再入账", code="order_not_payable")
        return order

    def honourable(self, order: Order, tx: dict) -> bool:
        """May a payment for this order still be granted? Yes if paid by time_expire + grace."""
        grace = timedelta(minutes=int(self.config.get("PAY_LATE_GRACE_MINUTES") or 0))
        deadline = (order.time_expire or order.created_at + SWEEP_AFTER) + grace
        return _paid_at(tx) <= deadline

    def _refund_late_payment(self, order: Order, tx: dict):
        """Inside the payment's transaction: an order paid too late grants nothing and is refunded."""
        flipped = (Order.update(status="refunding", transaction_id=tx.get("transaction_id"), paid_at=utcnow(),
                                grant_days=0, grant_credits=0)
                   .where(Order.id == order.id, Order.status.in_(("created", "closed"))).execute())
        if flipped != 1:
            return None   # a duplicate notification: the first one recorded the refund
        log.warning("order %s was paid after it closed: refunding it", order.out_trade_no)
        return Refund.create(out_refund_no=f"{order.out_trade_no}R1", order=order.id,
                             amount_fen=order.amount_fen, reason=AUTO_REFUND_REASON, source="auto")

    # -- housekeeping -----------------------------------------------------------------------------
    def sweep(self, older_than: timedelta = SWEEP_AFTER, now: datetime | None = None) -> dict:
        """Ask WeChat Pay about orders unpaid for ``older_than``: apply the paid ones, close the rest."""
        wp = pay_client(self.config)
        cutoff = (now or utcnow()) - older_than
        result = {"paid": 0, "closed": 0, "failed": 0}
        for order in Order.select().where(Order.status == "created", Order.created_at < cutoff):
            try:
                code, text = wp.query(out_trade_no=order.out_trade_no)
                tx = json.loads(text) if code == 200 else {}
                if tx.get("trade_state") == "SUCCESS" and tx.get("mchid") == self.config["WECHATPAY_MCHID"]:
                    self.apply_payment(tx)
                    result["paid"] += 1
                    continue
                if code in (200, 404):
                    code, _ = wp.close(out_trade_no=order.out_trade_no)
                if code == 204 or tx.get("trade_state") == "CLOSED":
                    Order.update(status="closed", closed_at=utcnow()).where(
                        Order.id == order.id, Order.status == "created").execute()
                    result["closed"] += 1
                else:
                    result["failed"] += 1
            except Exception as exc:  # noqa: BLE001  one bad order must not stop the sweep
                log.warning("sweep of %s failed: %s", order.out_trade_no, exc)
                result["failed"] += 1
        result.update(self.refunds.resume())
        return result


def wechat_time(value: datetime) -> str:
    """Naive UTC → the RFC 3339 time WeChat Pay wants (Beijing time with its offset)."""
    return value.replace(tzinfo=UTC).astimezone(CST).isoformat(timespec="seconds")


def _paid_at(tx: dict) -> datetime:
    """The transaction's success_time as naive UTC (now if WeChat left it out or it is unreadable)."""
    try:
        when = datetime.fromisoformat(str(tx.get("success_time")))
    except ValueError:
        return utcnow()
    if when.tzinfo is None:
        when = when.replace(tzinfo=CST)
    return when.astimezone(UTC).replace(tzinfo=None)


def order_view(order: Order, *, operator: bool = False) -> dict:
    """An order as an answer shows it; ``operator`` (管理后台's list, ``order.user`` joined) names the user."""
    if operator:
        return {"id": order.id, "out_trade_no": order.out_trade_no, "user_id": order.user.id,
                "nickname": order.user.nickname, "kind": order.kind, "package": order.package,
                "quantity": order.quantity, "amount_fen": order.amount_fen, "refunded_fen": order.refunded_fen,
                "status": order.status, "created_at": iso(order.created_at), "paid_at": iso(order.paid_at)}
    return {"out_trade_no": order.out_trade_no, "kind": order.kind, "package": order.package,
            "quantity": order.quantity, "amount_fen": order.amount_fen, "status": order.status,
            "refunded_fen": order.refunded_fen, "created_at": iso(order.created_at),
            "paid_at": iso(order.paid_at), "time_expire": iso(order.time_expire)}


def user_orders(user_id: int, limit: int = 20) -> list[Order]:
    return list(Order.select().where(Order.user == user_id).order_by(Order.id.desc()).limit(limit))


def user_order(user_id: int, out_trade_no: str) -> Order:
    order = Order.get_or_none(Order.out_trade_no == out_trade_no, Order.user == user_id)
    if order is None:
        raise NotFound("订单不存在", code="order_not_found")
    return order


def list_orders(status=None, limit=50) -> list[Order]:
    query = Order.select().order_by(Order.id.desc()).limit(limit)
    return list(query.where(Order.status == status) if status else query)
