"""``xintu wechat``: the official account's custom menu, kept in a TOML file."""
from __future__ import annotations

import json

import click

from xintu_cli.context import with_app


@click.group()
def wechat():
    """WeChat official account (公众号) administration.

    \b
    Examples:
      xintu wechat menu show
      xintu wechat menu sync conf/wechat-menu.toml --dry-run
    """


@wechat.group()
def menu():
    """The custom menu (自定义菜单): show it, or apply a TOML file when it differs."""


def _client():
    from flask import current_app

    from xintu.wechat import official_account

    return official_account(current_app.config)


@menu.command()
@click.option("--format", "fmt", type=click.Choice(("toml", "json")), default="toml", show_default=True)
@with_app
def show(fmt):
    """Print the menu WeChat has now (in the file format, ready to edit and sync)."""
    from xintu.wechat.menu import current

    have = current(_client())
    if have is None:
        click.echo("WeChat has no custom menu (46003)")
        return
    if fmt == "json":
        click.echo(json.dumps(have, ensure_ascii=False, indent=2))
        return
    for button in have["button"]:
        click.echo("[[button]]")
        _toml_fields(button)
        for sub in button.get("sub_button", []):
            click.echo("[[button.sub_button]]")
            _toml_fields(sub)
        click.echo()


def _toml_fields(button: dict) -> None:
    for key, value in button.items():
        if key != "sub_button":
            click.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")


@menu.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show the difference, change nothing.")
@with_app
def sync(file, dry_run):
    """Apply the menu in FILE if WeChat's differs; a second run says nothing changed."""
    from xintu.wechat.menu import load
    from xintu.wechat.menu import sync as apply

    wanted = load(file)  # validated before anything is sent
    result = apply(_client(), wanted, dry_run=dry_run)
    if not result["changed"]:
        click.echo("menu unchanged: WeChat already has this menu")
        return
    for line in result["diff"]:
        click.echo(line)
    click.echo("dry run: WeChat's menu would be replaced" if dry_run else "menu applied")
