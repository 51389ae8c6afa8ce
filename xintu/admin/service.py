"""What the admin API does: listings (stale reads), credit adjustments, the inference switch.

One :class:`AdminService` per app (``app.extensions["xintu.admin"]``, :func:`get_service`); the rules of
what it changes are the member service's (credit adjustments, refunds), which it calls."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app

from xintu.db import stale_call
from xintu.errors import BadRequest, NotFound
from xintu.member.credits import ledger_view
from xintu.member.orders import order_view
from xintu.member.refunds import attention as refund_attention
from xintu.member.refunds import refund_view
from xintu.member.service import MemberService
from xintu.member.service import get_service as member_service
from xintu.member.sessions import revoke_user_sessions, session_view, user_sessions
from xintu.member.users import user_view
from xintu.models import CreditLedger, Order, Setting, User
from xintu.settings_store import get_setting, set_setting
from xintu.stats import charts
from xintu.stats.anomalies import detect_anomalies
from xintu.stats.service import StatsService
from xintu.timeutil import iso, local_today
from xintu.upstreams import breaker_states

log = logging.getLogger(__name__)

MAX_PER_PAGE = 100
ORDER_STATUSES = ("created", "paid", "closed", "refunding", "partially_refunded", "refunded")


def _page(page: int, per_page: int) -> tuple[int, int]:
    return max(1, page), min(max(1, per_page), MAX_PER_PAGE)


class AdminService:
    def __init__(self, config, member: MemberService, stats: StatsService):
        self.config, self.member, self.stats = config, member, stats

    def overview(self) -> dict:
        today = local_today()
        trend = self.stats.days(today - timedelta(days=6), today)
        members = self.stats.members()
        yesterday = trend[-2]
        return {
            "day": today.isoformat(),
            "today": trend[-1].as_dict(),
            "trend": [d.as_dict() for d in trend],
            "anomalies": [a.__dict__ for a in detect_anomalies(yesterday, trend[:-2])],
            "refunds": stale_call(refund_attention),
            **members,
            "charts": {"requests": charts.requests_trend(trend), "ratios": charts.ratio_trend(trend),
                       "revenue": charts.revenue_trend(trend), "methods": charts.method_mix(trend[-1]),
                       "categories": charts.category_distribution(trend[-1])},
        }

    def search_users(self, q: str = "", page: int = 1, per_page: int = 20) -> dict:
        page, per_page = _page(page, per_page)
        q = (q or "").strip()[:64]

        def read():
            query = User.select()
            if q:
                query = query.where(User.nickname.contains(q) | User.openid.startswith(q)
                                    | (User.id == (int(q) if q.isdigit() else -1)))
            rows = query.order_by(User.id.desc()).paginate(page, per_page)
            return {"items": [user_view(u, operator=True) for u in rows], "total": query.count(), "page": page,
                    "per_page": per_page}
        return stale_call(read)

    def user_detail(self, user_id: int, ledger_limit: int = 200, fresh: bool = False) -> dict:
        def read():
            user = User.get_or_none(User.id == user_id)
            if user is None:
                raise NotFound("用户不存在", code="user_not_found")
            ledger = (CreditLedger.select().where(CreditLedger.user == user_id)
                      .order_by(CreditLedger.id.desc()).limit(ledger_limit))
            return {"user": user_view(user, operator=True), "ledger": [ledger_view(e, operator=True) for e in ledger],
                    "sessions": [session_view(s, operator=True) for s in user_sessions(user_id)]}
        # right after an adjustment the operator must see it: read the primary, not a lagging replica
        return read() if fresh else stale_call(read)

    def adjust_credits(self, user_id: int, delta: int, note: str, operator: str) -> dict:
        # the credit service checks reason and cap (reason_required, invalid_delta) and moves the credits:
        # one guarded UPDATE + a ledger row (reason admin_adjust, our name) in one transaction
        move = self.member.credits.adjust(user_id, delta, operator, note)
        return {"entry": ledger_view(CreditLedger.get_by_id(move.ledger_id), operator=True),
                **self.user_detail(user_id, fresh=True)}

    def revoke_sessions(self, user_id: int, session_id: int | None, operator: str) -> dict:
        """End one bound session of the user, or all of them (session_id None); returns the fresh detail."""
        if User.get_or_none(User.id == user_id) is None:
            raise NotFound("用户不存在", code="user_not_found")
        ended = revoke_user_sessions(user_id, session_id=session_id, reason="operator")
        log.info("admin %s revoked %d session(s) of user %d", operator, ended, user_id)
        return {"revoked": ended, **self.user_detail(user_id, fresh=True)}

    def list_orders(self, status: str = "", page: int = 1, per_page: int = 50) -> dict:
        page, per_page = _page(page, per_page)
        if status and status not in ORDER_STATUSES:
            raise BadRequest(f"订单状态只能是 {' / '.join(ORDER_STATUSES)}", code="invalid_status")

        def read():
            query = Order.select(Order, User).join(User)
            if status:
                query = query.where(Order.status == status)
            rows = query.order_by(Order.id.desc()).paginate(page, per_page)
            return {"items": [order_view(o, operator=True) for o in rows], "total": query.count(), "page": page,
                    "per_page": per_page}
        return stale_call(read)

    def refund_order(self, out_trade_no: str, reason: str, amount_fen: int | None, operator: str) -> dict:
        # the refund service checks the reason (refund_reason_required / _too_long) and the amount
        return refund_view(self.member.refunds.start(out_trade_no, reason, amount_fen, operator=operator,
                                                     source="admin"))

    def inference(self) -> dict:
        row = Setting.get_or_none(Setting.key == "inference.mode")
        # upstreams: the DashScope breakers (open after quota / key / billing / missing-model errors)
        return {"mode": get_setting("inference.mode"), "updated_by": row.updated_by if row else None,
                "updated_at": iso(row.updated_at) if row else None, "upstreams": breaker_states()}

    def set_inference(self, mode: str, operator: str) -> dict:
        set_setting("inference.mode", mode, by=operator)
        return self.inference()


def get_service(app=None) -> AdminService:
    app = app or current_app
    svc = app.extensions.get("xintu.admin")
    if svc is None:
        svc = app.extensions.setdefault("xintu.admin",
                                        AdminService(app.config, member_service(app), StatsService()))
    return svc
