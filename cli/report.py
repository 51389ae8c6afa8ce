"""``xintu report daily``: the HTML report cron writes (and optionally mails) every morning."""
from __future__ import annotations

from pathlib import Path

import click

from xintu_cli.context import with_app


@click.group()
def report():
    """Reports built from StatsService.

    \b
    Examples:
      xintu report daily --out /var/lib/xintu/reports/daily.html
      xintu report daily --date 2026-11-24 --out - --mail-to ops@example.com
    """


@report.command()
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Asia/Shanghai day to report. Default: yesterday.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Write the self-contained HTML here ('-' for stdout).")
@click.option("--mail-to", multiple=True, help="Also mail it (SMTP_* settings). Repeatable.")
@with_app
def daily(day, out, mail_to):
    """The day's figures, 7-day trends and anomalies as one HTML file."""
    from xintu.stats.mail import send_report
    from xintu.stats.report import render_daily_report
    from xintu.stats.service import get_service

    data = get_service().daily_report(day.date() if day else None)
    html = render_daily_report(data)
    if out == "-":
        click.echo(html)
    else:
        target = Path(out)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(target)   # a reader (web server, mailer) never sees half a report
        click.echo(f"wrote {target} ({len(html)} bytes, {len(data.anomalies)} anomalies)", err=True)
    if mail_to:
        send_report(data, html, list(mail_to))
        click.echo(f"mailed to {', '.join(mail_to)}", err=True)
