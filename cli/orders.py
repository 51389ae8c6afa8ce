"""``xintu orders``: WeChat Pay orders (list, refund, and the sweep job that cron runs)."""
from __future__ import annotations

import getpass
from datetime import timedelta

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options

STATUSES = ("created", "paid", "closed", "refunding", "partially_refunded", "refunded")
REFUND_STATUSES = ("processing", "success", "abnormal", "closed", "failed")


@click.group()
def orders():
    """WeChat Pay orders.

    \b
    Examples:
      xintu orders list --status paid --format csv
      xintu orders refund XT2026… --reason "用户申请退款"              # all that is left
      xintu orders refund XT2026… --reason "少退一半" --amount-fen 495  # partial
      xintu orders list --status refunding   # refunds in progress or ABNORMAL (see `orders refunds`)
      xintu orders sweep             # cron: every 5 min; closes orders unpaid after 30 min
      xintu orders reconcile --date 2026-11-30 --format json   # daily job: exit 1 when anything differs
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
           "amount_fen": o.amount_fen, "refunded_fen": o.refunded_fen, "status": o.status,
           "created_at": o.created_at, "paid_at": o.paid_at}
          for o in list_orders(status, limit)], fmt,
         ["out_trade_no", "user_id", "kind", "package", "amount_fen", "refunded_fen", "status", "created_at",
          "paid_at"])


@orders.command()
@click.argument("out_trade_no")
@click.option("--reason", required=True, help="Why (sent to WeChat Pay, shown to the payer; ≤ 80 chars).")
@click.option("--amount-fen", type=click.IntRange(1), help="Refund only this much (default: all that is left)")
@click.option("--operator", default=getpass.getuser, show_default="current login",
              help="Recorded on the refund.")
@output_options
@with_app
def refund(out_trade_no, reason, amount_fen, operator, fmt):
    """Refund OUT_TRADE_NO through WeChat Pay; what the refunded share bought is taken back when WeChat
    confirms. Re-running after a timeout asks for the same refund again (same out_refund_no)."""
    from xintu.member.refunds import refund_view
    from xintu.member.service import get_service

    done = get_service().refunds.start(out_trade_no, reason, amount_fen, operator=operator, source="cli")
    emit(refund_view(done), fmt)


@orders.command()
@click.option("--status", type=click.Choice(REFUND_STATUSES), help="Only refunds in this state.")
@click.option("--limit", default=50, show_default=True)
@output_options
@with_app
def refunds(status, limit, fmt):
    """Most recent refunds first (abnormal ones need action in the merchant portal)."""
    from xintu.member.refunds import list_refunds, refund_view

    emit([refund_view(r) for r in list_refunds(status, limit)], fmt,
         ["out_refund_no", "out_trade_no", "amount_fen", "status", "source", "operator", "credits_taken",
          "credits_shortfall", "member_days_taken", "reason", "created_at"])


@orders.command()
@click.option("--older-than", default=30, show_default=True, type=click.IntRange(1),
              help="Minutes an order may stay unpaid.")
@output_options
@with_app
def sweep(older_than, fmt):
    """Query unpaid orders at WeChat Pay: apply the paid ones, close the rest."""
    from xintu.member.service import get_service

    emit(get_service().orders.sweep(timedelta(minutes=older_than)), fmt)


@orders.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]),
              help="Beijing-time day of the bill (default: yesterday, whose bill is ready after 10:00).")
@output_options
@with_app
def reconcile(day, fmt):
    """Compare our orders with WeChat Pay's trade bill of one day; exit 1 when anything differs.

    \b
    Problems: here_not_there (paid here, not in the bill), there_not_here (in the bill, not paid here;
    refund lines too, until refunds are recorded here), amount_mismatch. Table/CSV print the problems
    (a summary line goes to stderr); JSON prints the whole report."""
    from datetime import datetime

    from flask import current_app

    from xintu.member.reconcile import reconcile as run
    from xintu.timeutil import SHANGHAI

    day = day.date() if day else (datetime.now(SHANGHAI) - timedelta(days=1)).date()
    report = run(current_app.config, day)
    if fmt == "json":
        emit(report, fmt)
    else:
        bill, ours = report["bill"], report["ours"]
        click.echo(f"{report['date']}: bill {bill['payments']} payments {bill['payment_fen']} fen, "
                   f"{bill['refunds']} refunds {bill['refund_fen']} fen; here {ours['payments']} payments "
                   f"{ours['payment_fen']} fen; {len(report['problems'])} problems", err=True)
        if report["problems"] or fmt == "csv":
            emit(report["problems"], fmt, ["problem", "kind", "out_trade_no", "out_refund_no",
                                           "transaction_id", "bill_fen", "ours_fen", "detail"])
    if report["problems"]:
        raise SystemExit(1)
