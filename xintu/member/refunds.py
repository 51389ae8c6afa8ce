"""RefundService: refunds through WeChat Pay v3 and what a refund takes back.

A refund is a row in ``refunds`` first (status ``processing``, the order ``refunding``), then a call to
WeChat Pay with that row's ``out_refund_no``: repeating the call (the operator re-runs the command after a
timeout, the sweep re-sends) asks for the same refund again, which WeChat answers with the same refund
instead of paying twice. WeChat's answer or its notification (REFUND.SUCCESS / ABNORMAL / CLOSED, verified
and decrypted like payments) settles the row once: ``processing → success`` is a compare-and-set UPDATE
under the order's row lock, and what the refunded share bought is taken back in the same transaction —
credits by a ``refund`` ledger row (never below zero; what was already spent is recorded as the
shortfall), membership by shortening the expiry in proportion. Shares are cumulative over the order's
refunds, so partial refunds that add up to the whole take back exactly what the order granted.
A notification for an ``out_refund_no`` we never sent is a refund made in the merchant portal: its row is
created from the notification and settled the same way.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

from peewee import IntegrityError, fn

from xintu import db, metrics
from xintu.errors import BadRequest, Conflict, NotFound, Unauthorized, Unavailable, UpstreamError
from xintu.member.credits import CreditService
from xintu.member.pay import notify_url, pay_client
from xintu.member.users import shorten_membership
from xintu.models import Order, Refund, User
from xintu.timeutil import iso, utcnow

log = logging.getLogger(__name__)
REASON_MAX = 80                      # WeChat's limit on the refund reason
OPEN = ("processing", "abnormal")    # an order with such a refund is "refunding"
REFUNDABLE = ("paid", "partially_refunded", "refunding")
WX_STATUS = {"SUCCESS": "success", "ABNORMAL": "abnormal", "CLOSED": "closed", "PROCESSING": "processing"}
DAY = 86400


class RefundService:
    def __init__(self, config, credits: CreditService | None = None):
        self.config = config
        self.credits = credits or CreditService()

    # -- starting a refund ------------------------------------------------------------------------
    def start(self, out_trade_no: str, reason: str, amount_fen: int | None = None, *, operator=None,
              source: str = "cli") -> Refund:
        """Refund ``amount_fen`` (default: all that is left) of a paid order; returns the refund row."""
        reason = (reason or "").strip()
        if not reason:
            raise BadRequest("退款必须写明原因", code="refund_reason_required")
        if len(reason) > REASON_MAX:
            raise BadRequest(f"退款原因不能超过 {REASON_MAX} 个字符", code="refund_reason_too_long")
        if amount_fen is not None and (not isinstance(amount_fen, int) or isinstance(amount_fen, bool)
                                       or amount_fen <= 0):
            raise BadRequest("退款金额必须是正整数（分）", code="invalid_amount")
        if not Order.select().where(Order.out_trade_no == str(out_trade_no)).exists():
            raise NotFound(f"订单不存在: {out_trade_no}", code="order_not_found")
        pay_client(self.config)   # refuse before recording anything when WeChat Pay is not configured
        with db.atomic():
            order = _lock_order(out_trade_no)
            unsent = (Refund.select().where(Refund.order == order.id, Refund.status == "processing",
                                            Refund.sent == False)   # noqa: E712  peewee expression
                      .order_by(Refund.id).first())
            if unsent is not None and amount_fen in (None, unsent.amount_fen):
                refund = unsent   # the earlier request never reached WeChat: ask again, same out_refund_no
            else:
                refund = self._new(order, reason, amount_fen, operator, source)
        return self.send(refund)

    def _new(self, order: Order, reason, amount_fen, operator, source) -> Refund:
        if order.status == "refunded":
            raise Conflict(f"订单 {order.out_trade_no} 已全额退款", code="order_refunded")
        if order.status not in REFUNDABLE:
            raise Conflict(f"订单状态为 {order.status}，不能退款", code="order_not_refundable")
        if Refund.select().where(Refund.order == order.id, Refund.status.in_(OPEN)).exists():
            raise Conflict(f"订单 {order.out_trade_no} 有退款正在处理", code="refund_in_progress")
        left = order.amount_fen - order.refunded_fen
        amount = left if amount_fen is None else amount_fen
        if amount > left:
            raise BadRequest(f"退款金额 {amount} 分超过可退的 {left} 分", code="refund_exceeds_left")
        seq = Refund.select().where(Refund.order == order.id).count() + 1
        refund = Refund.create(out_refund_no=f"{order.out_trade_no}R{seq}", order=order.id, amount_fen=amount,
                               reason=reason, operator=operator, source=source)
        Order.update(status="refunding").where(Order.id == order.id).execute()
        return refund

    def send(self, refund: Refund) -> Refund:
        """Ask WeChat Pay for ``refund`` (again, if need be) and apply its answer."""
        order = Order.get_by_id(refund.order_id)
        wp = pay_client(self.config)
        try:
            code, text = wp.refund(out_refund_no=refund.out_refund_no, out_trade_no=order.out_trade_no,
                                   amount={"refund": refund.amount_fen, "total": order.amount_fen,
                                           "currency": "CNY"},
                                   reason=refund.reason or None, notify_url=notify_url(self.config))
        except Exception as exc:  # noqa: BLE001  network error, or the SDK refusing an unsigned answer
            log.warning("refund %s not sent: %s", refund.out_refund_no, exc)
            _note(refund, f"not sent: {type(exc).__name__}")
            raise UpstreamError(f"退款请求未送达微信支付，可重试（同一退款单号 {refund.out_refund_no}，不会重复退款）",
                                code="refund_request_failed") from None
        data = _json(text)
        if code == 200:
            return self.settle({**data, "refund_status": data.get("status"), "mchid": self.config.get(
                "WECHATPAY_MCHID")}, known=refund)
        wx_code, message = str(data.get("code") or f"HTTP_{code}"), data.get("message") or ""
        if 400 <= code < 500 and code != 429:
            with db.atomic():
                _lock_order(order.out_trade_no)
                failed = f"{wx_code}: {message}"[:255]
                Refund.update(status="failed", error=failed, updated_at=utcnow()).where(
                    Refund.id == refund.id, Refund.status == "processing", Refund.sent == False  # noqa: E712
                ).execute()
                _restore_status(order.id)
            metrics.count_refund("failed")
            raise UpstreamError(f"微信支付拒绝退款: {wx_code} {message}".strip(), code="refund_" + wx_code.lower())
        _note(refund, f"{wx_code}: {message}")
        raise UpstreamError(f"微信支付暂时无法受理退款（{wx_code}），可重试同一命令", code="refund_request_failed")

    # -- WeChat's answer or notification ----------------------------------------------------------
    def handle_notification(self, data: dict) -> Refund:
        """An opened REFUND.* notification (``xintu.member.pay.open_notification``)."""
        resource = data.get("resource")
        if not isinstance(resource, dict):
            raise BadRequest("退款数据不完整", code="refund_notify_invalid")
        expected = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL", "REFUND.CLOSED": "CLOSED"}
        if expected.get(data.get("event_type")) != resource.get("refund_status"):
            raise Unauthorized("退款通知类型与状态不符", code="refund_notify_mismatch")
        return self.settle(resource)

    def settle(self, resource: dict, known: Refund | None = None) -> Refund:
        """Record WeChat's state of a refund (query answer or notification resource), applying it once."""
        if resource.get("mchid") != self.config.get("WECHATPAY_MCHID"):
            raise Unauthorized("退款通知的商户号与本商户不符", code="pay_notify_wrong_merchant")
        status = WX_STATUS.get(str(resource.get("refund_status")))
        amount = resource.get("amount") if isinstance(resource.get("amount"), dict) else {}
        no, fen = str(resource.get("out_refund_no") or ""), amount.get("refund")
        if status is None or not (1 <= len(no) <= 64) or not isinstance(fen, int) or fen <= 0:
            raise BadRequest("退款数据不完整", code="refund_notify_invalid")
        order = Order.get_or_none(Order.out_trade_no == str(resource.get("out_trade_no")))
        if order is None:
            raise NotFound("订单不存在", code="order_not_found")
        if amount.get("total") != order.amount_fen:
            raise Unauthorized("退款的订单金额与订单不符", code="pay_amount_mismatch")
        settled = None
        with db.atomic():
            order = _lock_order(order.out_trade_no)
            refund = known and Refund.get_by_id(known.id)
            refund = refund or Refund.get_or_none(Refund.out_refund_no == no)
            if refund is None:   # started in the merchant portal: we learn of it here
                if order.paid_at is None:
                    raise Unavailable("订单的支付尚未入账，稍后再通知", code="refund_before_payment")
                refund = _create_from_wechat(order, no, fen)
            if refund.order_id != order.id or refund.amount_fen != fen or refund.out_refund_no != no:
                raise Unauthorized("退款通知与退款单不符", code="refund_mismatch")
            Refund.update(refund_id=resource.get("refund_id") or refund.refund_id, sent=True,
                          updated_at=utcnow()).where(Refund.id == refund.id).execute()
            if status == "success":
                flipped = Refund.update(status="success", succeeded_at=utcnow()).where(
                    Refund.id == refund.id, Refund.status.in_(OPEN + ("failed",))).execute()
                if flipped == 1:
                    settled = _take_back(self.credits, order, Refund.get_by_id(refund.id))
            elif status in ("abnormal", "closed"):
                flipped = Refund.update(status=status).where(Refund.id == refund.id,
                                                             Refund.status.in_(OPEN)).execute()
                settled = Refund.get_by_id(refund.id) if flipped == 1 and refund.status != status else None
            _restore_status(order.id)
        if settled is not None:
            metrics.count_refund(settled.status, settled.credits_shortfall)
            if settled.status == "abnormal":
                log.error("refund %s of %s is ABNORMAL: an operator must act in the merchant portal",
                          no, order.out_trade_no)
        return Refund.get_by_id(refund.id)

    def sync(self, refund: Refund) -> Refund:
        """Ask WeChat Pay for the state of a refund we sent (a lost notification, an abnormal one)."""
        wp = pay_client(self.config)
        code, text = wp.query_refund(out_refund_no=refund.out_refund_no)
        data = _json(text)
        if code != 200:
            raise UpstreamError(f"查询退款失败: {data.get('code') or code}", code="refund_query_failed")
        return self.settle({**data, "refund_status": data.get("status"),
                            "mchid": self.config.get("WECHATPAY_MCHID")})

    def resume(self, older_than_seconds: int = 60) -> dict:
        """Sweep step: re-send refunds that never reached WeChat, query those still unsettled."""
        result = {"refunds_sent": 0, "refunds_settled": 0, "refunds_failed": 0}
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        for refund in Refund.select().where(Refund.status.in_(OPEN), Refund.updated_at <= cutoff):
            try:
                done = self.sync(refund) if refund.sent else self.send(refund)
                result["refunds_settled" if done.status not in OPEN else "refunds_sent"] += 1
            except Exception as exc:  # noqa: BLE001  one refund must not stop the sweep
                log.warning("resuming refund %s failed: %s", refund.out_refund_no, exc)
                result["refunds_failed"] += 1
        return result


def _lock_order(out_trade_no: str) -> Order:
    query = Order.select().where(Order.out_trade_no == str(out_trade_no))
    order = (query.for_update() if db.is_mysql() else query).first()
    if order is None:
        raise NotFound(f"订单不存在: {out_trade_no}", code="order_not_found")
    return order


def _create_from_wechat(order: Order, no: str, fen: int) -> Refund:
    try:
        with db.atomic():
            return Refund.create(out_refund_no=no, order=order.id, amount_fen=fen, reason="商户平台发起的退款",
                                 source="merchant", sent=True)
    except IntegrityError:   # a duplicate notification created it first (we hold the order lock now)
        return Refund.get(Refund.out_refund_no == no)


def _take_back(credits: CreditService, order: Order, refund: Refund) -> Refund:
    """Called once per successful refund, holding the order's row lock: take back the refunded share."""
    refunded = order.refunded_fen + refund.amount_fen
    earlier = (Refund.select(fn.COALESCE(fn.SUM(Refund.credits_taken + Refund.credits_shortfall), 0),
                             fn.COALESCE(fn.SUM(Refund.member_seconds_taken), 0))
               .where(Refund.order == order.id, Refund.status == "success", Refund.id != refund.id).tuples()
               .first())
    credits_due = order.grant_credits * refunded // order.amount_fen - int(earlier[0])
    seconds_due = order.grant_days * DAY * refunded // order.amount_fen - int(earlier[1])
    taken = 0
    if credits_due > 0:
        move = credits.claw_back(order.user_id, credits_due, "refund", f"refund:{refund.id}",
                                       note=f"{order.out_trade_no} 退款 {refund.amount_fen} 分")
        taken = -move.delta if move else 0
    seconds = shorten_membership(order.user_id, seconds_due) if seconds_due > 0 else 0
    Refund.update(credits_taken=taken, credits_shortfall=max(0, credits_due - taken),
                  member_seconds_taken=seconds, updated_at=utcnow()).where(Refund.id == refund.id).execute()
    Order.update(refunded_fen=Order.refunded_fen + refund.amount_fen).where(Order.id == order.id).execute()
    return Refund.get_by_id(refund.id)


def _restore_status(order_id: int) -> None:
    """The order's status from its refunds (call holding its row lock)."""
    order = Order.get_by_id(order_id)
    if order.status not in REFUNDABLE + ("refunded",):
        return
    if Refund.select().where(Refund.order == order_id, Refund.status.in_(OPEN)).exists():
        status = "refunding"
    elif order.refunded_fen >= order.amount_fen:
        status = "refunded"
    else:
        status = "partially_refunded" if order.refunded_fen else "paid"
    if status != order.status:
        Order.update(status=status).where(Order.id == order_id).execute()


def _note(refund: Refund, error: str) -> None:
    Refund.update(error=error[:255], updated_at=utcnow()).where(Refund.id == refund.id).execute()


def _json(text) -> dict:
    try:
        data = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- views ----------------------------------------------------------------------------------------
def refund_view(refund: Refund) -> dict:
    order = Order.get_by_id(refund.order_id)
    return {"out_refund_no": refund.out_refund_no, "out_trade_no": order.out_trade_no,
            "order_status": order.status, "amount_fen": refund.amount_fen, "status": refund.status,
            "reason": refund.reason, "operator": refund.operator, "source": refund.source,
            "refund_id": refund.refund_id, "credits_taken": refund.credits_taken,
            "credits_shortfall": refund.credits_shortfall,
            "member_days_taken": round(refund.member_seconds_taken / DAY, 2), "error": refund.error,
            "created_at": iso(refund.created_at), "succeeded_at": iso(refund.succeeded_at)}


def list_refunds(status=None, limit=50) -> list[Refund]:
    query = Refund.select().order_by(Refund.id.desc()).limit(limit)
    return list(query.where(Refund.status == status) if status else query)


def attention() -> dict:
    """What operators must look at: abnormal refunds, and credits refunds could not take back."""
    abnormal = [refund_view(r)
                for r in Refund.select().where(Refund.status == "abnormal").order_by(Refund.id)]
    short = (Refund.select(Refund, Order, User).join(Order).join(User)
             .where(Refund.credits_shortfall > 0).order_by(Refund.id.desc()).limit(100))
    return {"abnormal": abnormal,
            "shortfalls": [{"out_refund_no": r.out_refund_no, "out_trade_no": r.order.out_trade_no,
                            "user_id": r.order.user.id, "credits_shortfall": r.credits_shortfall,
                            "succeeded_at": iso(r.succeeded_at)} for r in short]}
