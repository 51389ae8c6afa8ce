"""``xintu stats``: the StatsService numbers for operators (same numbers as the dashboard/report)."""
from __future__ import annotations

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options

DATE = click.DateTime(formats=["%Y-%m-%d"])


def range_options(func):
    func = click.option("--until", type=DATE, help="Last day, inclusive (Asia/Shanghai). Default: today.")(func)
    return click.option("--since", type=DATE, help="First day (Asia/Shanghai). Default: see command.")(func)


def _dates(since, until):
    return (since.date() if since else None), (until.date() if until else None)


def _share(n: int, total: int):
    return round(n / total, 4) if total else None


def _labelled_counts(column: str, counts: dict, labels: dict) -> list[dict]:
    """Image counts per key with their share: every labelled key (zero included) in label order, then
    any key the labels do not know yet."""
    total = sum(counts.values())
    keys = list(labels) + sorted(set(counts) - set(labels))
    return [{column: k, "label": labels.get(k, k), "images": counts.get(k, 0),
             "share": _share(counts.get(k, 0), total)} for k in keys]


@click.group()
def stats():
    """Usage numbers from the replica (falls back to the primary), by Asia/Shanghai day.

    \b
    Examples:
      xintu stats summary --since 2026-11-01 --until 2026-11-30 --format json
      xintu stats methods                      # today's cache / llm / local mix
      xintu stats rollup                       # cron: roll yesterday up into daily_stats
      xintu stats prune --keep-days 90         # cron: drop old request_log rows
    """


@stats.command()
@range_options
@output_options
@with_app
def summary(since, until, fmt):
    """Totals over a range (default: today)."""
    from xintu.stats.figures import yuan
    from xintu.stats.service import get_service

    service = get_service()
    f = service.summary(*_dates(since, until))
    d = f.as_dict()
    row = {k: d[k] for k in ("requests", "failed", "images", "cache_hit_ratio", "llm_success_ratio",
                             "error_ratio", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                             "new_users", "new_followers", "orders_paid", "revenue_fen")}
    row["revenue"] = yuan(f.revenue_fen)
    row.update({k: d[k] for k in ("credits_granted", "credits_spent", "edit_tasks", "downloads")})
    row.update(service.members())
    emit(row, fmt)


@stats.command()
@range_options
@output_options
@with_app
def days(since, until, fmt):
    """One row per day (default: the last 7 days)."""
    from xintu.stats.service import get_service

    cols = ["day", "requests", "failed", "images", "cache_hit_ratio", "llm_success_ratio", "latency_p95_ms",
            "new_users", "orders_paid", "revenue_fen", "credits_granted", "credits_spent", "edit_tasks",
            "downloads"]
    emit([{c: f.as_dict()[c] for c in cols} for f in get_service().days(*_dates(since, until))], fmt, cols)


@stats.command()
@range_options
@output_options
@with_app
def categories(since, until, fmt):
    """Classified images per category (default: today)."""
    from xintu.stats.charts import CATEGORY_LABELS
    from xintu.stats.service import get_service

    emit(_labelled_counts("category", get_service().summary(*_dates(since, until)).categories,
                          CATEGORY_LABELS), fmt)


@stats.command()
@range_options
@output_options
@with_app
def methods(since, until, fmt):
    """How images were classified: cache / llm / local / llm_fallback (default: today)."""
    from xintu.stats.charts import METHOD_LABELS
    from xintu.stats.service import get_service

    emit(_labelled_counts("method", get_service().summary(*_dates(since, until)).methods,
                          METHOD_LABELS), fmt)


@stats.command()
@range_options
@output_options
@with_app
def revenue(since, until, fmt):
    """Paid orders and revenue per day (default: the last 7 days); fen, and ¥ for reading."""
    from xintu.stats.figures import yuan
    from xintu.stats.service import get_service

    rows = [{"day": f.day, "orders": f.orders_paid, "member_fen": f.revenue_by_kind.get("member", 0),
             "credits_fen": f.revenue_by_kind.get("credits", 0), "revenue_fen": f.revenue_fen,
             "revenue": yuan(f.revenue_fen)} for f in get_service().days(*_dates(since, until))]
    emit(rows, fmt)


@stats.command()
@range_options
@output_options
@with_app
def batches(since, until, fmt):
    """Classification requests by number of images per request (default: today)."""
    from xintu.stats.service import get_service

    sizes = get_service().summary(*_dates(since, until)).batch_sizes
    total = sum(sizes.values())
    emit([{"images_per_request": size, "requests": n, "share": _share(n, total)}
          for size, n in sorted(sizes.items())], fmt, ["images_per_request", "requests", "share"])


@stats.command()
@output_options
@with_app
def members(fmt):
    """Members active now and expiring within 7 days."""
    from xintu.stats.service import get_service

    emit(get_service().members(), fmt)


@stats.command()
@click.option("--date", "day", type=DATE, help="Roll up this day only. Default: yesterday.")
@range_options
@click.option("--keep-days", type=int, help="Then delete request_log rows older than this many days.")
@output_options
@with_app
def rollup(day, since, until, keep_days, fmt):
    """Roll finished days up into daily_stats (idempotent); optionally prune request_log."""
    from xintu.stats.rollup import prune
    from xintu.stats.rollup import rollup as run_rollup

    if day and (since or until):
        raise click.UsageError("use --date or --since/--until, not both")
    if day:
        since = until = day
    result = run_rollup(*_dates(since, until))
    rows = [{"day": d, "action": "rolled_up"} for d in result["rolled_up"]]
    rows += [{"day": d, "action": "kept (request_log already pruned)"} for d in result["skipped_pruned"]]
    if keep_days is not None:
        pruned = prune(keep_days)
        rows += [{"day": d, "action": "rolled_up before prune"} for d in pruned["rolled_up"]]
        rows.append({"day": None, "action": f"pruned {pruned['deleted']} request_log rows"})
        # abuse-budget counters of past windows are history only: same retention
        from datetime import timedelta

        from xintu import budgets

        spent = budgets.purge(timedelta(days=max(keep_days, 2)))
        rows.append({"day": None, "action": f"pruned {spent} usage_counters rows"})
    emit(rows, fmt, ["day", "action"])


@stats.command("prune")
@click.option("--keep-days", type=int, default=90, show_default=True,
              help="Keep request_log rows of this many recent days.")
@output_options
@with_app
def prune_(keep_days, fmt):
    """Delete old request_log rows (their days are rolled up first, so no number is lost)."""
    from xintu.stats.rollup import prune

    result = prune(keep_days)
    emit({"deleted": result["deleted"], "rolled_up": len(result["rolled_up"]),
          "pruned_days": len(result["pruned_days"])}, fmt)
