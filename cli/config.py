"""``xintu config``: the effective configuration and the runtime switches stored in the database."""

from __future__ import annotations

import json

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options

_SECRET_WORDS = ("SECRET", "KEY", "PASSWORD", "TOKEN")


def _mask(key: str, value):
    if value and any(word in key for word in _SECRET_WORDS) and not key.endswith("_ID"):
        return "********"
    if value and key.endswith("_URL") and "@" in str(value):
        scheme, rest = str(value).split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return value


@click.group()
def config():
    """Effective configuration and runtime switches.

    \b
    Examples:
      xintu config show
      xintu config set inference.mode local
      xintu config get inference.mode
    """


@config.command()
@output_options
def show(fmt):
    """The effective configuration (defaults < instance file < XINTU_* env), secrets masked."""
    from xintu.config import load_config

    settings = load_config()
    emit({key: _mask(key, settings[key]) for key in sorted(settings)}, fmt)


@config.command(name="get")
@click.argument("key")
@with_app
def get_(key):
    """Print one runtime switch (e.g. inference.mode)."""
    from xintu.settings_store import get_setting

    click.echo(json.dumps(get_setting(key), ensure_ascii=False))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
@click.option("--by", default=None, help="Who made the change (recorded). Default: $USER.")
@with_app
def set_(key, value, by):
    """Set a runtime switch for every worker (takes effect within a few seconds)."""
    import os

    from xintu.settings_store import set_setting

    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    set_setting(key, parsed, by=by or os.environ.get("USER") or "cli")
    click.echo(f"{key} = {json.dumps(parsed, ensure_ascii=False)}")


@config.command(name="list")
@output_options
@with_app
def list_(fmt):
    """Every runtime switch with its current value."""
    from xintu.settings_store import all_settings

    emit([{"key": k, "value": v} for k, v in sorted(all_settings().items())], fmt)
