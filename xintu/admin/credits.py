"""Seam to the member area's CreditService for operator adjustments.

Until CreditService lands this does the same thing it must: one atomic balance statement plus a
ledger row with the operator's name, in one transaction; a debit never takes the balance below 0.
"""
from __future__ import annotations

from xintu.db import atomic
from xintu.errors import PaymentRequired
from xintu.models import CreditLedger, User


def admin_adjust(user_id: int, delta: int, *, note: str, operator: str) -> CreditLedger:
    with atomic():
        query = User.update(credits_balance=User.credits_balance + delta).where(User.id == user_id)
        if delta < 0:
            query = query.where(User.credits_balance >= -delta)
        if query.execute() != 1:
            raise PaymentRequired("扣减后积分将小于 0", code="insufficient_credits")
        balance = User.select(User.credits_balance).where(User.id == user_id).scalar()
        return CreditLedger.create(user=user_id, delta=delta, reason="admin_adjust", ref=None,
                                   balance_after=balance, operator=operator, note=note)
