"""The daily_stats roll-up, request_log pruning and live download counting (writes, on the primary).

A rolled-up day carries a marker row; re-running the roll-up rewrites the same rows (idempotent).
Once a day's request_log rows are pruned it also carries a ``_pruned`` marker, and the roll-up
leaves it alone: measuring it again would find no rows and wipe its numbers.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, timedelta

from xintu import metrics
from xintu.db import atomic, is_mysql, primary
from xintu.errors import BadRequest, Conflict
from xintu.models import DailyStat, Release, RequestLog
from xintu.stats.service import LIVE_METRICS, MARKER, days_between, measure_day
from xintu.timeutil import day_bounds_utc, local_today, to_local

PRUNED = "_pruned"
DELETE_CHUNK = 5000   # rows per DELETE, so pruning never holds a huge transaction on the primary


def _marked(days: list[date], metric: str) -> set[date]:
    if not days:
        return set()
    return {d for (d,) in DailyStat.select(DailyStat.day)
            .where(DailyStat.metric == metric, DailyStat.day.between(min(days), max(days))).tuples()}


@contextmanager
def _exclusive():
    """One roll-up/prune at a time across hosts (cron may overlap a slow run): MySQL named lock."""
    if not is_mysql():
        yield
        return
    # named per database: several xintu databases may share one server
    name = "CONCAT('xintu_stats_rollup:', DATABASE())"
    if primary.execute_sql(f"SELECT GET_LOCK({name}, 0)").fetchone()[0] != 1:
        raise Conflict("另一个汇总任务正在运行", code="rollup_running")
    try:
        yield
    finally:
        primary.execute_sql(f"SELECT RELEASE_LOCK({name})")


def rollup(since: date | None = None, until: date | None = None) -> dict:
    """Roll up whole past days (default: yesterday).  Returns what was done, per day."""
    with _exclusive():
        return _rollup(since, until)


def _rollup(since: date | None, until: date | None) -> dict:
    today = local_today()
    until = until or today - timedelta(days=1)
    since = since or until
    if until >= today:
        raise BadRequest("只能汇总已经结束的日期（北京时间）", code="day_not_over")
    if since > until:
        raise BadRequest("起始日期晚于结束日期", code="invalid_range")
    days = days_between(since, until)
    pruned = _marked(days, PRUNED)
    done, skipped = [], []
    for day in days:
        if day in pruned:
            skipped.append(day)
            continue
        with atomic():
            values = measure_day(day)
            (DailyStat.delete()
             .where(DailyStat.day == day, DailyStat.metric.not_in(LIVE_METRICS + (PRUNED,))).execute())
            rows = [{"day": day, "metric": m, "key": k, "value": v}
                    for (m, k), v in values.items() if m not in LIVE_METRICS]
            rows.append({"day": day, "metric": MARKER, "key": "", "value": 1})
            DailyStat.insert_many(rows).execute()
        done.append(day)
    return {"rolled_up": done, "skipped_pruned": skipped}


def prune(keep_days: int) -> dict:
    """Delete request_log rows older than ``keep_days`` whole days, rolling those days up first."""
    if keep_days < 1:
        raise BadRequest("--keep-days 至少为 1", code="invalid_keep_days")
    with _exclusive():
        return _prune(keep_days)


def _prune(keep_days: int) -> dict:
    first_kept = local_today() - timedelta(days=keep_days)
    cutoff, _ = day_bounds_utc(first_kept)
    oldest = RequestLog.select(RequestLog.ts).order_by(RequestLog.ts).limit(1).scalar()
    if oldest is None or oldest >= cutoff:
        return {"deleted": 0, "rolled_up": [], "pruned_days": []}
    first = to_local(oldest).date()
    days = days_between(first, first_kept - timedelta(days=1))
    done = _rollup(first, days[-1])["rolled_up"]
    deleted = 0
    while True:
        ids = [i for (i,) in RequestLog.select(RequestLog.id).where(RequestLog.ts < cutoff)
               .order_by(RequestLog.id).limit(DELETE_CHUNK).tuples()]
        if not ids:
            break
        with atomic():
            deleted += RequestLog.delete().where(RequestLog.id.in_(ids)).execute()
    have = _marked(days, PRUNED)
    marks = [{"day": d, "metric": PRUNED, "key": "", "value": 1} for d in days if d not in have]
    if marks:
        DailyStat.insert_many(marks).execute()
    return {"deleted": deleted, "rolled_up": done, "pruned_days": days}


def count_download(release: Release) -> None:
    """One download: the release's total and the day's per-version count, each one atomic statement."""
    Release.update(downloads=Release.downloads + 1).where(Release.id == release.id).execute()
    key = f"{release.platform} {release.version}"[:64]
    # MySQL's ON DUPLICATE KEY takes no conflict target; SQLite's ON CONFLICT requires one.
    target = None if is_mysql() else [DailyStat.day, DailyStat.metric, DailyStat.key]
    (DailyStat.insert(day=local_today(), metric="downloads", key=key, value=1)
     .on_conflict(conflict_target=target, update={DailyStat.value: DailyStat.value + 1}).execute())
    metrics.DOWNLOADS.labels(release.platform).inc()
