"""Refunds: the refunds table; orders.time_expire, grant_days, grant_credits, refunded_fen; a status
column wide enough for partially_refunded.

Existing orders get the grants they were sold with: days = quantity for membership (credits = the
membership bonus the ledger shows for it, else the default bonus of 10), credits = quantity for packages.
"""
from peewee import DateTimeField, IntegerField

from xintu.db import is_mysql
from xintu.migrations import add_column_if_missing

DEFAULT_MEMBER_BONUS = 10


def up(db, migrator):
    from xintu.models import Refund

    add_column_if_missing(db, migrator, "orders", "time_expire", DateTimeField(null=True))
    for name in ("grant_days", "grant_credits", "refunded_fen"):
        if name not in {c.name for c in db.get_columns("orders")}:
            add_column_if_missing(db, migrator, "orders", name, IntegerField(default=0))
            if name == "grant_days":
                db.execute_sql("UPDATE orders SET grant_days = quantity WHERE kind = 'member'")
            elif name == "grant_credits":
                db.execute_sql("UPDATE orders SET grant_credits = quantity WHERE kind = 'credits'")
                db.execute_sql(
                    "UPDATE orders SET grant_credits = COALESCE((SELECT SUM(l.delta) FROM credit_ledger l "
                    "WHERE l.reason = 'membership_bonus' AND l.ref = orders.out_trade_no), "
                    f"{int(DEFAULT_MEMBER_BONUS)}) WHERE kind = 'member'")
    if is_mysql(db):   # SQLite does not enforce VARCHAR lengths
        width = db.execute_sql(
            "SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'status'").fetchone()[0]
        if width < 20:
            db.execute_sql("ALTER TABLE orders MODIFY status VARCHAR(20) NOT NULL")
    with db.bind_ctx([Refund]):
        db.create_tables([Refund], safe=True)
