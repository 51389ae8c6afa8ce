"""Create every table of xintu.models (utf8mb4 on MySQL)."""

from xintu.db import is_mysql


def up(db, migrator):
    from xintu.models import ALL_MODELS

    if is_mysql(db):
        db.execute_sql("ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    with db.bind_ctx(ALL_MODELS):
        db.create_tables(ALL_MODELS, safe=True)
