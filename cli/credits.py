"""``xintu credits``: show, adjust and audit user credits (every change goes through CreditService)."""
from __future__ import annotations

import getpass

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options


@click.group()
def credits():
    """Show, adjust and audit user credits.

    \b
    Examples:
      xintu credits show 42
      xintu credits adjust 42 +5 --reason "补偿：编辑失败未退款"
      xintu credits audit            # exit 1 if any balance drifts from its ledger
    """


@credits.command()
@click.argument("user")
@click.option("--limit", default=20, show_default=True, help="Ledger rows to show.")
@output_options
@with_app
def show(user, limit, fmt):
    """Balance and recent ledger of USER (id or openid)."""
    from xintu.member.credits import ledger_view
    from xintu.member.service import get_service
    from xintu.member.users import get_user

    found = get_user(user)
    rows = [ledger_view(e, operator=True) for e in get_service().credits.history(found.id, limit)]
    if fmt == "json":
        emit({"user_id": found.id, "balance": found.credits_balance, "ledger": rows}, fmt)
        return
    if fmt == "table":
        click.echo(f"user {found.id}: balance {found.credits_balance}")
    emit(rows, fmt, ["id", "delta", "reason", "ref", "balance_after", "operator", "created_at"])


@credits.command(context_settings={"ignore_unknown_options": True})
@click.argument("user")
@click.argument("delta")
@click.option("--reason", required=True, help="Why (recorded in the ledger).")
@click.option("--operator", default=getpass.getuser, show_default="current login",
              help="Who is adjusting (recorded in the ledger).")
@output_options
@with_app
def adjust(user, delta, reason, operator, fmt):
    """Add (+N) or remove (-N) credits of USER (at most 100000 either way, like the 管理后台); refused if the
    balance would go negative."""
    from xintu.member.service import get_service
    from xintu.member.users import get_user

    try:
        amount = int(delta)
    except ValueError:
        raise click.ClickException(f"DELTA must be a whole number like +5 or -3, not {delta!r}") from None
    found = get_user(user)
    move = get_service().credits.adjust(found.id, amount, operator, reason)
    emit({"user_id": found.id, "delta": move.delta, "balance": move.balance_after, "ledger_id": move.ledger_id},
         fmt)


@credits.command()
@output_options
@with_app
def audit(fmt):
    """Recompute every balance from the ledger; print drift; exit 1 if any. Also lists refund shortfalls
    (credits spent before their order was refunded), which are not drift."""
    from xintu.member.refunds import attention
    from xintu.member.service import get_service

    drift = get_service().credits.audit()
    if drift or fmt != "table":
        emit(drift, fmt, ["user_id", "balance", "ledger", "drift"])
    else:
        click.echo("no drift: every balance equals the sum of its ledger")
    if fmt == "table":   # not drift (the ledger says so): credits spent before their order was refunded
        for row in attention()["shortfalls"]:
            click.echo(f"refund shortfall: user {row['user_id']} order {row['out_trade_no']} refund "
                       f"{row['out_refund_no']}: {row['credits_shortfall']} credits already spent")
    if drift:
        raise click.exceptions.Exit(1)
