"""``xintu doctor``: is every external dependency and production setting right? Exit 1 on any fail."""

from __future__ import annotations

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit

_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


@click.command()
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True,
              help="Output format.")
@with_app
def doctor(fmt):
    """Check databases, WeChat, WeChat Pay, DashScope, addresses and secrets; one line of advice each.

    \b
    Examples:
      xintu doctor                  # before the first user finds out
      xintu doctor --format json    # for monitoring; exit status 1 when any check fails
    """
    from flask import current_app

    from xintu.ops import doctor as service

    checks = service.run(current_app.config)
    rows = [{**c.row(), "level": _MARK[c.level] if fmt == "table" else c.level} for c in checks]
    emit(rows, fmt, ["level", "name", "message", "advice"])
    if service.failed(checks):
        raise click.exceptions.Exit(1)
