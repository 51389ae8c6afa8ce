"""StatsService: every number the CLI, the daily report and the admin dashboard show.

One code path measures a day from the raw tables into (metric, key) → value; the roll-up stores
exactly that in ``daily_stats``, so a rolled-up day and a live day give the same figures, and
request_log rows of rolled-up days can be pruned.  Reads run on the replica via ``stale_call``
(primary when the replica is down or lagging); the roll-up reads and writes the primary.
Days are Asia/Shanghai calendar days.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from flask import current_app
from peewee import Case, fn

from xintu.db import stale_call
from xintu.errors import BadRequest
from xintu.models import (
    CreditLedger,
    DailyStat,
    EditTask,
    Order,
    RequestLog,
    User,
    WechatEvent,
)
from xintu.stats.figures import DayFigures, Values, from_values, latency_bucket
from xintu.stats.report import DailyReport
from xintu.timeutil import day_bounds_utc, local_today, to_local, utcnow

# Metrics that the roll-up owns and rewrites; "downloads" is counted live at download time.
MARKER = "_rollup"
LIVE_METRICS = ("downloads",)
MAX_RANGE_DAYS = 366


def check_range(since: date | None, until: date | None, default_days: int = 7) -> tuple[date, date]:
    until = until or local_today()
    since = since or until - timedelta(days=default_days - 1)
    if since > until:
        raise BadRequest("起始日期晚于结束日期", code="invalid_range")
    if (until - since).days >= MAX_RANGE_DAYS:
        raise BadRequest(f"日期范围不能超过 {MAX_RANGE_DAYS} 天", code="range_too_long")
    return since, until


def days_between(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def measure_day(day: date) -> Values:
    """Measure one day from the raw tables (whatever database the models are bound to)."""
    start, end = day_bounds_utc(day)
    values: Values = Counter()
    log_in_day = (RequestLog.ts >= start) & (RequestLog.ts < end)
    count = fn.COUNT(RequestLog.id)
    rows = (RequestLog.select(RequestLog.endpoint, RequestLog.method, RequestLog.category,
                              RequestLog.ok, RequestLog.batch_size, count.alias("n"))
            .where(log_in_day)
            .group_by(RequestLog.endpoint, RequestLog.method, RequestLog.category, RequestLog.ok,
                      RequestLog.batch_size).tuples())
    for endpoint, method, category, ok, batch_size, n in rows:
        values["requests", ""] += n
        values["endpoint", endpoint] += n
        if not ok:
            values["failed", ""] += n
        if method:
            values["method", method] += n
        if category:
            values["category", category] += n
        if batch_size:
            values["batch_rows", str(batch_size)] += n
    for latency, n in (RequestLog.select(RequestLog.latency_ms, count).where(log_in_day)
                       .group_by(RequestLog.latency_ms).tuples()):
        values["latency", str(latency_bucket(latency))] += n

    values["new_users", ""] += User.select().where(User.created_at >= start, User.created_at < end).count()
    values["new_followers", ""] += (WechatEvent.select()
                                    .where(WechatEvent.event.in_(("subscribe", "subscribe_scan")),
                                           WechatEvent.created_at >= start, WechatEvent.created_at < end)
                                    .count())
    for kind, n, fen in (Order.select(Order.kind, fn.COUNT(Order.id), fn.SUM(Order.amount_fen))
                         .where(Order.status == "paid", Order.paid_at >= start, Order.paid_at < end)
                         .group_by(Order.kind).tuples()):
        values["orders_paid", kind] += n
        values["revenue_fen", kind] += int(fen or 0)
    plus = fn.SUM(Case(None, [(CreditLedger.delta > 0, CreditLedger.delta)], 0))
    minus = fn.SUM(Case(None, [(CreditLedger.delta < 0, 0 - CreditLedger.delta)], 0))
    for reason, got, gave in (CreditLedger.select(CreditLedger.reason, plus, minus)
                              .where(CreditLedger.created_at >= start, CreditLedger.created_at < end)
                              .group_by(CreditLedger.reason).tuples()):
        values["credits_in", reason] += int(got or 0)
        values["credits_out", reason] += int(gave or 0)
    for status, n in (EditTask.select(EditTask.status, fn.COUNT(EditTask.id))
                      .where(EditTask.created_at >= start, EditTask.created_at < end)
                      .group_by(EditTask.status).tuples()):
        values["edit_tasks", status] += n
    for metric, key, value in (DailyStat.select(DailyStat.metric, DailyStat.key, DailyStat.value)
                               .where(DailyStat.day == day, DailyStat.metric.in_(LIVE_METRICS)).tuples()):
        values[metric, key] += value
    return +values   # drop zeros


def stored_days(since: date, until: date) -> dict[date, Values]:
    """Rolled-up days in the range (those with the marker row) → their values."""
    found: dict[date, Values] = {}
    rows = (DailyStat.select(DailyStat.day, DailyStat.metric, DailyStat.key, DailyStat.value)
            .where(DailyStat.day.between(since, until)).tuples())
    for day, metric, key, value in rows:
        found.setdefault(day, Counter())[metric, key] += value
    return {day: +v for day, v in found.items() if v.pop((MARKER, ""), 0)}


class StatsService:
    """Read side; every public method is one stale-tolerant read."""

    def values_by_day(self, since: date, until: date) -> dict[date, Values]:
        def read():
            stored = stored_days(since, until)
            today = local_today()
            # today is never taken from a roll-up: it is still moving
            return {d: stored[d] if d in stored and d < today else measure_day(d)
                    for d in days_between(since, until)}
        return stale_call(read)

    def days(self, since: date | None = None, until: date | None = None) -> list[DayFigures]:
        since, until = check_range(since, until)
        return [from_values(d, v) for d, v in self.values_by_day(since, until).items()]

    def summary(self, since: date | None = None, until: date | None = None) -> DayFigures:
        since, until = check_range(since, until, default_days=1)
        total: Values = Counter()
        for v in self.values_by_day(since, until).values():
            total.update(v)
        return from_values(since if since == until else None, total)

    def members(self) -> dict:
        def read():
            now = utcnow()
            active = User.select().where(User.member_expires_at > now).count()
            expiring = (User.select().where(User.member_expires_at > now,
                                            User.member_expires_at <= now + timedelta(days=7)).count())
            return {"members_active": active, "members_expiring_7d": expiring,
                    "users_total": User.select().count()}
        return stale_call(read)

    def daily_report(self, day: date | None = None) -> DailyReport:
        day = day or local_today() - timedelta(days=1)
        trend = self.days(day - timedelta(days=6), day)
        members = self.members()
        return DailyReport(day=day, figures=trend[-1], trend=trend, generated_at=to_local(utcnow()),
                           members_active=members["members_active"],
                           members_expiring_7d=members["members_expiring_7d"],
                           downloads_by_version=trend[-1].downloads_by_version)


def get_service(app=None) -> StatsService:
    """The app's StatsService, built once per app (``app.extensions["xintu.stats"]``)."""
    app = app or current_app
    svc = app.extensions.get("xintu.stats")
    if svc is None:
        svc = app.extensions.setdefault("xintu.stats", StatsService())
    return svc
