"""``xintu admin``: accounts of the 管理后台 (passwords are read from a prompt or stdin, never argv)."""
from __future__ import annotations

import sys

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group()
def admin():
    """Admin dashboard accounts (管理后台).

    \b
    Examples:
      xintu admin create-user alice --role operator      # asks for the password twice
      echo "$PW" | xintu admin create-user bob --password-stdin
    """


@admin.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "operator"]), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@with_app
def create_user(username, role, password_stdin):
    """Create an admin account (viewer: read only; operator: may adjust credits, upload releases)."""
    from xintu.admin.auth import create_admin

    user = create_admin(username, _password(password_stdin), role)
    click.echo(f"created admin {user.username} ({user.role})")


@admin.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@with_app
def set_password(username, password_stdin):
    """Change a password; also unlocks the account and ends its sessions."""
    from xintu.admin.auth import set_password as change

    change(username, _password(password_stdin))
    click.echo(f"password of {username} changed; its sessions were ended")


@admin.command("list-users")
@output_options
@with_app
def list_users(fmt):
    """Admin accounts, with failed logins since the last success (they slow logins down, lock nothing)."""
    from xintu.models import Admin
    from xintu.timeutil import iso

    emit([{"username": a.username, "role": a.role, "failed_logins": a.failed_logins,
           "last_login_at": iso(a.last_login_at)} for a in Admin.select().order_by(Admin.username)],
         fmt, ["username", "role", "failed_logins", "last_login_at"])
