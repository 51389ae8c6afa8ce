"""wechat_tokens.forced_at: when stable_token was last asked with force_refresh (at most once per 30 s)."""
from peewee import DateTimeField

from xintu.migrations import add_column_if_missing


def up(db, migrator):
    add_column_if_missing(db, migrator, "wechat_tokens", "forced_at", DateTimeField(null=True))
