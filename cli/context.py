"""The app behind CLI commands: same config, same services, same database as the web process."""

from __future__ import annotations

import functools

import click

_app = None


def get_app(overrides: dict | None = None):
    global _app
    if _app is None or overrides:
        from xintu.app import create_app

        _app = create_app(overrides)
    return _app


def with_app(func):
    """Run the command inside an app context; the DB connection is closed afterwards."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        app = get_app()
        with app.app_context():
            return func(*args, **kwargs)

    return wrapper


def fail(message: str) -> None:
    raise click.ClickException(message)
