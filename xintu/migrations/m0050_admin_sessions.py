"""管理后台 sessions and login attempts (lockout and per-address rate limit)."""


def up(db, migrator):
    from xintu.models import AdminLoginAttempt, AdminSession

    with db.bind_ctx([AdminSession, AdminLoginAttempt]):
        db.create_tables([AdminSession, AdminLoginAttempt], safe=True)
