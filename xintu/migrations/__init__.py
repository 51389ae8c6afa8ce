"""Versioned schema migrations, applied in order by ``xintu db migrate`` (idempotent).

A migration is a module ``mNNNN_<what>.py`` in this package with ``def up(db, migrator)``, where
``migrator`` is a ``playhouse.migrate.SchemaMigrator`` for ``db``.  Applied versions are recorded in
``schema_migrations``; a version is applied once.  ``m0001_initial`` creates the tables from the current
models, so on a fresh database it already yields the latest shape: every later migration must therefore
be written to be a no-op when its change is already there — use ``add_column_if_missing`` /
``add_index_if_missing`` / ``create_tables`` (``safe=True``) below.  MySQL DDL commits implicitly, which
is one more reason each step must be safe to re-run after a crash half-way.

Concurrent ``migrate`` runs (two app hosts deploying at once) are serialised by ``GET_LOCK`` on MySQL.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from contextlib import contextmanager

from peewee import CharField, DateTimeField, IntegerField, Model
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_operations

from xintu.db import is_mysql
from xintu.errors import ConfigError
from xintu.timeutil import utcnow

_NAME = re.compile(r"^m(\d{4})_(\w+)$")


class SchemaMigration(Model):
    version = IntegerField(primary_key=True)
    name = CharField(100)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_migrations"


def discover() -> list[tuple[int, str, str]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = _NAME.match(info.name)
        if match:
            found.append((int(match.group(1)), match.group(2), f"{__name__}.{info.name}"))
    return sorted(found)


def _bind(db):
    return SchemaMigration.bind_ctx(db)


def status(db) -> list[dict]:
    with _bind(db):
        applied = {}
        if db.table_exists(SchemaMigration._meta.table_name):
            applied = {row.version: row.applied_at for row in SchemaMigration.select()}
    return [{"version": version, "name": name, "applied_at": applied.get(version)}
            for version, name, _ in discover()]


def current_version(db) -> int:
    done = [row["version"] for row in status(db) if row["applied_at"]]
    return max(done, default=0)


def ensure_current(db) -> list[tuple[int, str]]:
    """Bring the schema up to date where that is ours to do, or say in one line what to run.

    The embedded SQLite default belongs to this process's instance folder, so it is upgraded on the spot
    (a fresh instance just works); a MySQL/MariaDB schema is shared by every app host and is migrated by
    the operator (`xintu db migrate`, which the deploy runs)."""
    pending = [row for row in status(db) if not row["applied_at"]]
    if not pending:
        return []
    if is_mysql(db):
        raise ConfigError(f"the database schema is behind ({len(pending)} migration(s) pending, first "
                          f"{pending[0]['version']:04d}_{pending[0]['name']}): run `xintu db migrate`")
    return migrate(db)


@contextmanager
def _migration_lock(db):
    if is_mysql(db):
        got = db.execute_sql("SELECT GET_LOCK('xintu_migrate', 60)").fetchone()[0]
        if got != 1:
            raise RuntimeError("another migration is running (GET_LOCK timed out)")
        try:
            yield
        finally:
            db.execute_sql("SELECT RELEASE_LOCK('xintu_migrate')")
    else:
        yield


def migrate(db) -> list[tuple[int, str]]:
    """Apply pending migrations; returns what was applied (empty when up to date)."""
    applied = []
    with db.connection_context(), _bind(db), _migration_lock(db):
        db.create_tables([SchemaMigration], safe=True)
        done = {row.version for row in SchemaMigration.select()}
        for version, name, module_name in discover():
            if version in done:
                continue
            module = importlib.import_module(module_name)
            with db.atomic():
                module.up(db, SchemaMigrator.from_database(db))
                SchemaMigration.create(version=version, name=name)
            applied.append((version, name))
    return applied


def column_names(db, table: str) -> set[str]:
    return {col.name for col in db.get_columns(table)}


def add_column_if_missing(db, migrator, table: str, name: str, field) -> None:
    if name not in column_names(db, table):
        run_operations(migrator.add_column(table, name, field))


def add_index_if_missing(db, migrator, table: str, columns: tuple, unique: bool = False) -> None:
    wanted = tuple(columns)
    if not any(tuple(index.columns) == wanted for index in db.get_indexes(table)):
        run_operations(migrator.add_index(table, columns, unique))
