"""Session lifecycle and erasure: client_sessions.last_ip / revoked_reason, users.forgotten_at, and the
forgotten_identities table (keyed hashes of erased openids)."""
from peewee import CharField, DateTimeField

from xintu.migrations import add_column_if_missing


def up(db, migrator):
    from xintu.models import ForgottenIdentity

    add_column_if_missing(db, migrator, "client_sessions", "last_ip", CharField(45, null=True))
    add_column_if_missing(db, migrator, "client_sessions", "revoked_reason", CharField(16, null=True))
    add_column_if_missing(db, migrator, "users", "forgotten_at", DateTimeField(null=True))
    with db.bind_ctx([ForgottenIdentity]):
        db.create_tables([ForgottenIdentity], safe=True)
