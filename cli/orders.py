"""``xintu orders``: WeChat Pay orders (list, and the sweep job that cron runs)."""
from __future__ import annotations

from datetime import timedelta

import click
from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options

STATUSES = ("created", "paid", "closed", "refunded")


@click.group()
def orders():
    """WeChat Pay orders.

    \b
    Examples:
      xintu orders list --status paid --format csv
      xintu orders sweep             # cron: every 5 min; closes orders unpaid after 30 min
    """


@orders.command(name="list")
@click.option("--status", type=click.Choice(STATUSES), help="Only orders in this state.")
@click.option("--limit", default=50, show_default=True)
@output_options
@with_app
def list_(status, limit, fmt):
    """Most recent orders first."""
    from xintu.member.orders import list_orders

    emit([{"out_trade_no": o.out_trade_no, "user_id": o.user_id, "kind": o.kind, "package": o.package,
           "amount_fen": o.amount_fen, "status": o.status, "created_at": o.created_at, "paid_at": o.paid_at}
          for o in list_orders(status, limit)], fmt,
         ["out_trade_no", "user_id", "kind", "package", "amount_fen", "status", "created_at", "paid_at"])


@orders.command()
@click.option("--older-than", default=30, show_default=True, type=click.IntRange(1),
              help="Minutes an order may stay unpaid.")
@output_options
@with_app
def sweep(older_than, fmt):
    """Query unpaid orders at WeChat Pay: apply the paid ones, close the rest."""
    from flask import current_app

    from xintu.member.orders import OrderService

    emit(OrderService(current_app.config).sweep(timedelta(minutes=older_than)), fmt)
