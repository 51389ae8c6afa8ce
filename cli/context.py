"""The app behind CLI commands: same config, same services, same database as the web process."""

from __future__ import annotations

import functools

import click

_app = None


def get_app(overrides: dict | None = None, *, schema: bool = True):
    """The process's app (built once). With ``schema``, the embedded SQLite database is created or upgraded
    on first use, and a MySQL schema that is behind is refused with one line naming `xintu db migrate`."""
    global _app
    if _app is None or overrides:
        from xintu.app import create_app
        from xintu.config import load_config
        from xintu.sandbox.runtime import running_overrides

        config = load_config(overrides)
        # While `xintu serve` runs on this instance folder, its sandbox is the WeChat / DashScope we talk to.
        running = running_overrides(config) if config["SANDBOX"] else {}
        _app = create_app({**running, **(overrides or {})})
    if schema and not _app.extensions.get("xintu_schema_checked"):
        from xintu import db, migrations

        with _app.app_context():   # quietly: stdout/stderr of a command may be machine-read
            migrations.ensure_current(db.primary.obj)
        _app.extensions["xintu_schema_checked"] = True
    return _app


def with_app(func=None, *, schema: bool = True):
    """Run the command inside an app context; the DB connection is closed afterwards.

    ``@with_app`` for commands that use the schema; ``@with_app(schema=False)`` for those that manage it."""
    if func is None:
        return functools.partial(with_app, schema=schema)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        app = get_app(schema=schema)
        with app.app_context():
            return func(*args, **kwargs)

    return wrapper


def fail(message: str) -> None:
    raise click.ClickException(message)
