"""Hostile traffic: WeChat callback signatures accepted once, shared abuse budgets, registrations per /64."""

from peewee import CharField

from xintu.migrations import add_column_if_missing, add_index_if_missing


def up(db, migrator):
    from xintu.models import UsageCounter, WechatNonce

    with db.bind_ctx([WechatNonce, UsageCounter]):
        db.create_tables([WechatNonce, UsageCounter], safe=True)
    add_column_if_missing(db, migrator, "client_sessions", "created_net", CharField(45, null=True))
    add_index_if_missing(db, migrator, "client_sessions", ("created_net", "created_at"))
