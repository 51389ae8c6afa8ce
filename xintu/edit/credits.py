"""The ledger calls of image editing, in one place so they can move onto CreditService.

Each is one guarded UPDATE of the cached balance plus one ledger row, in one transaction; the
ledger's unique (reason, ref) with ref = task id makes a repeated reserve or refund impossible.
"""
from __future__ import annotations

from peewee import IntegrityError

from xintu import db
from xintu.errors import PaymentRequired
from xintu.models import CreditLedger, User

SPEND, REFUND = "edit_spend", "edit_refund"


def reserve(user_id: int, amount: int, task_id: str) -> int:
    """Take ``amount`` credits up front for a task; 402 when the balance is short. Returns the balance."""
    with db.atomic():
        taken = (User.update(credits_balance=User.credits_balance - amount)
                 .where(User.id == user_id, User.credits_balance >= amount).execute())
        if taken != 1:
            raise PaymentRequired(f"积分不足：本次需要 {amount} 积分", code="insufficient_credits")
        balance = User.select(User.credits_balance).where(User.id == user_id).scalar()
        CreditLedger.create(user=user_id, delta=-amount, reason=SPEND, ref=task_id, balance_after=balance)
    return balance


def refund(user_id: int, amount: int, task_id: str) -> bool:
    """Give back what a task did not use; False when this task was already refunded."""
    if amount <= 0:
        return False
    try:
        with db.atomic():
            User.update(credits_balance=User.credits_balance + amount).where(User.id == user_id).execute()
            balance = User.select(User.credits_balance).where(User.id == user_id).scalar()
            CreditLedger.create(user=user_id, delta=amount, reason=REFUND, ref=task_id, balance_after=balance)
    except IntegrityError:  # (edit_refund, task id) exists: the savepoint rolled the balance back too
        return False
    return True
