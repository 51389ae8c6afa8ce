"""``xintu users``: WeChat users, their sessions and personal data.

Credits change through `xintu credits`."""
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
      xintu users sessions --user-id 42
      xintu users revoke --user-id 42 --all
      xintu users export --user-id 42 --format json > user-42.json
      xintu users forget --user-id 42 --reason "工单 1234：用户要求注销" --yes
      xintu users retention            # daily job: request_log and edit images past their age
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


SESSION_COLUMNS = ["id", "platform", "client_id", "first_seen_at", "last_seen_at", "expires_at", "place",
                   "ip", "active", "revoked_reason"]


@users.command()
@click.option("--user-id", required=True, type=int, help="The user (numeric id).")
@click.option("--all", "include_ended", is_flag=True, help="Also ended sessions (revoked or expired).")
@output_options
@with_app
def sessions(user_id, include_ended, fmt):
    """The clients logged in as a user (bound tokens)."""
    from xintu.member.sessions import session_view, user_sessions
    from xintu.member.users import get_user

    user = get_user(user_id, allow_forgotten=True)
    emit([session_view(s, operator=True) for s in user_sessions(user.id, include_ended=include_ended)],
         fmt, SESSION_COLUMNS)


@users.command()
@click.option("--user-id", required=True, type=int, help="The user (numeric id).")
@click.option("--session", "session_id", type=int, help="One session id (see `xintu users sessions`).")
@click.option("--all", "everything", is_flag=True, help="Every session of the user.")
@output_options
@with_app
def revoke(user_id, session_id, everything, fmt):
    """End one session (--session ID) or all (--all) of a user: their tokens answer 401 token_revoked."""
    from xintu.member.sessions import revoke_user_sessions
    from xintu.member.users import get_user

    if bool(session_id) == everything:
        raise click.UsageError("give exactly one of --session ID or --all")
    user = get_user(user_id, allow_forgotten=True)
    ended = revoke_user_sessions(user.id, session_id=session_id, reason="operator")
    emit({"user_id": user.id, "revoked": ended}, fmt)


@users.command()
@click.option("--user-id", required=True, type=int, help="The user (numeric id).")
@click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True,
              help="Output format (one JSON document).")
@click.option("--images", "images_zip", type=click.Path(dir_okay=False, writable=True),
              help="Also write data.json and the stored edit images into this zip file.")
@with_app
def export(user_id, fmt, images_zip):
    """Everything we hold about a user, as one JSON document (the right of access)."""
    import json

    from xintu.member.privacy import export as export_user
    from xintu.member.privacy import export_images_zip
    from xintu.member.users import get_user

    user = get_user(user_id, allow_forgotten=True)
    click.echo(json.dumps(export_user(user), ensure_ascii=False, indent=2))
    if images_zip:
        with open(images_zip, "wb") as out:
            count = export_images_zip(user, out)
        click.echo(f"{count} image(s) written to {images_zip}", err=True)


@users.command()
@click.option("--user-id", required=True, type=int, help="The user (numeric id).")
@click.option("--reason", required=True, help="Why (kept with the tombstone, e.g. the ticket number).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (asked only on a terminal).")
@output_options
@with_app
def forget(user_id, reason, yes, fmt):
    """Erase a user: sessions revoked, identity and images erased, orders and ledger kept unlinked."""
    from xintu.member.privacy import forget as forget_user
    from xintu.member.users import get_user

    user = get_user(user_id, allow_forgotten=True)
    import sys

    asked = not yes and sys.stdin.isatty()
    if asked and not click.confirm(f"erase user {user.id} for good?", default=False, err=True):
        raise click.Abort()
    emit(forget_user(user, reason, operator="cli"), fmt)


@users.command()
@output_options
@with_app
def retention(fmt):
    """Delete request_log rows and stored edit images older than their retention (a daily job)."""
    from flask import current_app

    from xintu.member.privacy import retention as run_retention

    emit(run_retention(current_app.config), fmt)
