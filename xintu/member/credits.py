"""CreditService: the only code that moves credits.  Used by the member and image-edit areas.

Interface (all amounts are positive ints; all return a :class:`Movement`)::

    CreditService.grant(user_id, amount, reason, ref)    # + credits (signup_bonus, purchase, …)
    CreditService.spend(user_id, amount, reason, ref)    # − credits, PaymentRequired if short
    CreditService.refund(user_id, amount, reason, ref)   # + credits back (edit_refund)
    CreditService.adjust(user_id, delta, operator, note) # operator correction, ± (admin_adjust)
    CreditService.claw_back(user_id, amount, reason, ref) # − up to amount, never below 0 (refund)

Guarantees:
- a change is one guarded UPDATE (``balance = balance - n WHERE balance >= n``) plus one ledger row with
  ``balance_after``, in one transaction (a savepoint when the caller already has one, so an order grant
  commits or rolls back with the order's status flip);
- ``(reason, ref)`` is unique in the ledger, so replaying a call with the same reason and ref moves
  nothing and returns the original movement with ``duplicate=True``.  Callers pick refs that name the
  cause: an order number, ``task:<id>``, ``user:<id>`` for the one-time signup bonus.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from peewee import JOIN, IntegrityError, fn

from xintu import db, metrics
from xintu.errors import BadRequest, NotFound, PaymentRequired
from xintu.models import CreditLedger, User

REASONS = ("signup_bonus", "membership_bonus", "purchase", "edit_spend", "edit_refund", "admin_adjust",
           "refund")
SIGNUP_BONUS = 10


@dataclass(frozen=True)
class Movement:
    ledger_id: int
    user_id: int
    delta: int
    balance_after: int
    duplicate: bool = False


class CreditService:
    @staticmethod
    def grant(user_id: int, amount: int, reason: str, ref: str, *, operator=None, note=None) -> Movement:
        _check(amount, reason, ref)
        return _move(user_id, amount, reason, ref, operator, note)

    @staticmethod
    def spend(user_id: int, amount: int, reason: str, ref: str, *, operator=None, note=None) -> Movement:
        _check(amount, reason, ref)
        return _move(user_id, -amount, reason, ref, operator, note)

    @staticmethod
    def refund(user_id: int, amount: int, reason: str = "edit_refund", ref: str = "", *,
               operator=None, note=None) -> Movement:
        _check(amount, reason, ref)
        return _move(user_id, amount, reason, ref, operator, note)

    @staticmethod
    def claw_back(user_id: int, amount: int, reason: str = "refund", ref: str = "", *,
                  operator=None, note=None) -> Movement | None:
        """Take back up to ``amount`` (what a refunded order granted): as much as the balance still holds,
        never below zero. ``Movement.delta`` says what was taken; None when the balance was already 0."""
        _check(amount, reason, ref)
        for _ in range(5):   # on SQLite (no row lock) a concurrent spend can lower the balance under us
            query = User.select(User.credits_balance).where(User.id == user_id)
            balance = (query.for_update() if db.is_mysql() else query).scalar()
            if balance is None:
                raise NotFound("用户不存在", code="user_not_found")
            take = min(balance, amount)
            if take <= 0:
                return None
            try:
                return _move(user_id, -take, reason, ref, operator, note)
            except PaymentRequired:
                continue
        raise PaymentRequired("积分余额变化过快，请重试", code="credits_contended")

    @staticmethod
    def adjust(user_id: int, delta: int, operator: str, note: str) -> Movement:
        """An operator's correction; never idempotent (each call is its own ref), always recorded."""
        if not isinstance(delta, int) or delta == 0:
            raise BadRequest("调整值必须是非零整数", code="invalid_amount")
        if not operator or not note:
            raise BadRequest("人工调整必须写明操作人和原因", code="adjust_reason_required")
        return _move(user_id, delta, "admin_adjust", "adj:" + uuid.uuid4().hex, operator, note[:255])

    @staticmethod
    def balance(user_id: int) -> int:
        user = User.get_or_none(User.id == user_id)
        if user is None:
            raise NotFound("用户不存在", code="user_not_found")
        return user.credits_balance

    @staticmethod
    def history(user_id: int, limit: int = 20) -> list[CreditLedger]:
        return list(CreditLedger.select().where(CreditLedger.user == user_id)
                    .order_by(CreditLedger.id.desc()).limit(limit))

    @staticmethod
    def audit() -> list[dict]:
        """Users whose cached balance differs from the sum of their ledger (should be none)."""
        ledger_sum = fn.COALESCE(fn.SUM(CreditLedger.delta), 0)
        rows = (User.select(User.id, User.credits_balance, ledger_sum.alias("ledger"))
                .join(CreditLedger, on=(CreditLedger.user == User.id), join_type=JOIN.LEFT_OUTER)
                .group_by(User.id, User.credits_balance)
                .having(ledger_sum != User.credits_balance).dicts())
        return [{"user_id": r["id"], "balance": r["credits_balance"], "ledger": int(r["ledger"]),
                 "drift": r["credits_balance"] - int(r["ledger"])} for r in rows]


def _check(amount, reason, ref):
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise BadRequest("积分数量必须是正整数", code="invalid_amount")
    if reason not in REASONS:
        raise BadRequest(f"未知的积分原因 {reason}", code="invalid_reason")
    if not ref or len(ref) > 64:
        raise BadRequest("积分变动必须带有 1–64 字符的 ref", code="invalid_ref")


def _move(user_id, delta, reason, ref, operator, note) -> Movement:
    try:
        with db.atomic():
            guard = User.id == user_id
            if delta < 0:
                guard &= User.credits_balance >= -delta
            changed = (User.update(credits_balance=User.credits_balance + delta).where(guard).execute())
            if changed != 1:
                if not User.select().where(User.id == user_id).exists():
                    raise NotFound("用户不存在", code="user_not_found")
                raise PaymentRequired("积分不足", code="insufficient_credits")
            # We hold the row lock from the UPDATE, so this read is our own result, not a neighbour's.
            after = User.select(User.credits_balance).where(User.id == user_id).scalar()
            entry = CreditLedger.create(user=user_id, delta=delta, reason=reason, ref=ref,
                                        balance_after=after, operator=operator, note=note)
        # after the (save)point is released; a caller's outer rollback can still undo it, which a
        # counter tolerates (the ledger stays the truth, StatsService reads that)
        metrics.count_credits(delta, reason)
        return Movement(entry.id, user_id, delta, after)
    except IntegrityError:
        # (reason, ref) already in the ledger: the savepoint above undid our UPDATE; report the original.
        # A locking read sees the committed row even inside an older REPEATABLE READ snapshot.
        query = CreditLedger.select().where(CreditLedger.reason == reason, CreditLedger.ref == ref)
        entry = (query.for_update() if db.is_mysql() else query).first()
        if entry is None:
            raise
        return Movement(entry.id, entry.user_id, entry.delta, entry.balance_after, duplicate=True)
