"""The app behind CLI commands: same config, same services, same database as the web process.

The app lives on the click context of the command being run, built on first use by ``@with_app`` and kept in
``ctx.meta`` for the rest of that invocation, so every ``xintu …`` run (and every ``CliRunner.invoke`` in a
test) gets an app of its own. A caller that already has an app passes it as the context object:
``cli.main(args, obj=app)`` / ``CliRunner().invoke(cli, args, obj=app)``.
"""

from __future__ import annotations

import functools

import click

APP_KEY = "xintu.app"


def _build(overrides: dict | None):
    # Imported here, not at the top: `xintu --help` must not load the app (scripts/bench/cli_startup.py).
    from xintu.app import create_app
    from xintu.config import load_config
    from xintu.sandbox.runtime import running_overrides

    config = load_config(overrides)
    # While `xintu serve` runs on this instance folder, its sandbox is the WeChat / DashScope we talk to.
    running = running_overrides(config) if config["SANDBOX"] else {}
    return create_app({**running, **(overrides or {})})


def get_app(overrides: dict | None = None, *, schema: bool = True):
    """The app of the click invocation in progress (built once per invocation; the context object when the
    caller passed an app); outside a click context, a new app. With ``schema``, the embedded SQLite database
    is created or upgraded on first use, and a MySQL schema that is behind is refused with one line naming
    `xintu db migrate`."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        app = _build(overrides)
    else:
        app = None if overrides else ctx.meta.get(APP_KEY)
        if app is None:
            given = ctx.find_root().obj
            app = given if given is not None and not overrides else _build(overrides)
            ctx.meta[APP_KEY] = app
    if schema and not app.extensions.get("xintu_schema_checked"):
        from xintu import db, migrations

        with app.app_context():   # quietly: stdout/stderr of a command may be machine-read
            migrations.ensure_current(db.primary.obj)
        app.extensions["xintu_schema_checked"] = True
    return app


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
