"""``xintu users``: WeChat users (read-only; credits change through `xintu credits`)."""
from __future__ import annotations

import click
from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options

COLUMNS = ["id", "openid", "nickname", "subscribed", "member_until", "credits", "created_at", "last_active_at"]


@click.group()
def users():
    """WeChat users.

    \b
    Examples:
      xintu users list --members
      xintu users show oAbC123… --format json
    """


@users.command()
@click.argument("user")
@output_options
@with_app
def show(user, fmt):
    """One user by id or openid."""
    from xintu.member.users import get_user, operator_row

    emit(operator_row(get_user(user)), fmt)


@users.command(name="list")
@click.option("--members", is_flag=True, help="Only users whose membership is active.")
@click.option("--limit", default=50, show_default=True)
@click.option("--offset", default=0)
@output_options
@with_app
def list_(members, limit, offset, fmt):
    """Newest users first."""
    from xintu import db
    from xintu.member.users import list_users, operator_row

    with db.stale_reads():  # an operator listing tolerates replica lag
        rows = [operator_row(u) for u in list_users(members, limit, offset)]
    emit(rows, fmt, COLUMNS)
