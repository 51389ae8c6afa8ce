"""A known set of rows, as classify / member / edit write them, around one Asia/Shanghai day.

``stats_day`` is two days ago (so it is over and can be rolled up); rows sit exactly on its
Shanghai-midnight borders (16:00 UTC) to prove day ranges are Shanghai days, not UTC days.
``EXPECTED`` lists every number StatsService must report for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from xintu.timeutil import day_bounds_utc, local_today, utcnow

EXPECTED_DAY = {
    "requests": 9, "failed": 1, "images": 7,
    "methods": {"cache": 3, "llm": 2, "local": 1, "llm_fallback": 1},
    "categories": {"pets": 3, "foods": 1, "screenshot": 1, "travel_scenery": 1, "other": 1},
    "cache_hit_ratio": 0.4286, "llm_success_ratio": 0.6667, "error_ratio": 0.1111,
    # latencies 5 8 12 15 30 95 1500 2100 3300 → nearest rank
    "latency_p50_ms": 30.0, "latency_p95_ms": 3300.0, "latency_p99_ms": 3300.0,
    "batch_sizes": {1: 4, 3: 1},
    "new_users": 2, "new_followers": 2,
    "orders_paid": 2, "revenue_fen": 3980, "revenue_by_kind": {"member": 2990, "credits": 990},
    "credits_granted": 40, "credits_spent": 2, "edit_tasks": 2,
    "downloads": 4, "downloads_by_version": {"windows 1.2.0": 3, "mac 1.1.0": 1},
}
EXPECTED_DAY_BEFORE = {"requests": 1, "new_users": 1, "orders_paid": 1, "revenue_fen": 3900}
EXPECTED_MEMBERS = {"members_active": 2, "members_expiring_7d": 1, "users_total": 3}


@dataclass
class StatsData:
    day: date
    start: object   # naive UTC start of the day
    end: object
    users: dict


def insert_stats_rows(day: date) -> StatsData:
    from xintu.models import (
        CreditLedger,
        DailyStat,
        EditTask,
        Order,
        RequestLog,
        User,
        WechatEvent,
    )

    start, end = day_bounds_utc(day)

    def at(minutes):
        return start + timedelta(minutes=minutes)

    now = utcnow()
    alice = User.create(openid="o-alice", nickname="小明", subscribed=True, created_at=at(60),
                        member_expires_at=now + timedelta(days=3), credits_balance=26)
    bob = User.create(openid="o-bob", nickname="Bob", subscribed=True, created_at=at(600),
                      member_expires_at=now - timedelta(days=1), credits_balance=20)
    carol = User.create(openid="o-carol", nickname="卡罗尔", subscribed=True,
                        created_at=start - timedelta(hours=3), member_expires_at=now + timedelta(days=20),
                        credits_balance=8)

    def log(minute, method=None, category=None, latency=10, ok=True, endpoint="/api/v1/classify",
            batch_size=None, ts=None):
        RequestLog.create(ts=ts or at(minute), endpoint=endpoint, client="c-1", method=method,
                          category=category, latency_ms=latency, ok=ok, status=200 if ok else 400,
                          batch_size=batch_size)

    log(1, "cache", "pets", 12, batch_size=1)
    log(2, "cache", "pets", 8, batch_size=1)
    log(3, "llm", "foods", 1500, batch_size=1)
    log(4, "local", "screenshot", 95, batch_size=1)
    for method, category, latency in (("llm", "travel_scenery", 2100), ("llm_fallback", "other", 3300),
                                      ("cache", "pets", 15)):
        log(5, method, category, latency, endpoint="/api/v1/classify/batch", batch_size=3)
    log(6, None, None, 5, ok=False)
    log(7, None, None, 30, endpoint="/api/v1/location")
    # the last second of the day before and the first second of the day after (Shanghai days)
    log(0, "llm", "pets", 100, ts=start - timedelta(seconds=1), batch_size=1)
    log(0, "cache", "foods", 9, ts=end, batch_size=1)
    # the very first and very last moment of the day belong to it
    RequestLog.update(ts=start).where(RequestLog.latency_ms == 12).execute()
    RequestLog.update(ts=end - timedelta(seconds=1)).where(RequestLog.latency_ms == 30).execute()

    for user, minute, event in ((alice, 60, "subscribe"), (bob, 600, "subscribe_scan"), (carol, 700, "scan")):
        WechatEvent.create(dedupe_key=f"{user.openid}-{event}", openid=user.openid, event=event,
                           created_at=at(minute))
    for no, user, kind, fen, status, paid in (
            ("T1", alice, "member", 2990, "paid", at(61)), ("T2", bob, "credits", 990, "paid", at(601)),
            ("T3", bob, "credits", 1800, "created", None),
            ("T4", carol, "credits", 3900, "paid", start - timedelta(hours=2))):
        Order.create(out_trade_no=no, user=user, kind=kind, package="10" if kind == "credits" else "month",
                     quantity=1, amount_fen=fen, status=status, created_at=paid or at(650), paid_at=paid)
    for user, delta, reason, ref, balance, minute in (
            (alice, 10, "signup_bonus", "o-alice", 10, 60), (bob, 10, "signup_bonus", "o-bob", 10, 600),
            (alice, 10, "membership_bonus", "T1", 20, 61), (bob, 10, "purchase", "T2", 20, 601),
            (alice, -3, "edit_spend", "E1", 17, 620), (alice, 1, "edit_refund", "E1", 18, 621),
            (carol, -2, "admin_adjust", None, 8, 630)):
        CreditLedger.create(user=user, delta=delta, reason=reason, ref=ref, balance_after=balance,
                            created_at=at(minute), operator="ops" if reason == "admin_adjust" else None)
    for task_id, status in (("E1", "partial"), ("E2", "failed")):
        EditTask.create(task_id=task_id, user=alice, prompt="换成蓝天", images=[], n_images=3,
                        status=status, created_at=at(619))
    # what count_download() wrote on that day
    DailyStat.insert_many([{"day": day, "metric": "downloads", "key": "windows 1.2.0", "value": 3},
                           {"day": day, "metric": "downloads", "key": "mac 1.1.0", "value": 1}]).execute()
    return StatsData(day=day, start=start, end=end, users={"alice": alice, "bob": bob, "carol": carol})


@pytest.fixture
def stats_data(mysql_app, mariadb):
    with mysql_app.app_context():
        data = insert_stats_rows(local_today() - timedelta(days=2))
    mariadb.wait_replica()
    return data


@pytest.fixture
def xintu(mysql_app, mariadb, mysql_database, monkeypatch, tmp_path):
    """Run the real CLI in-process on the same databases as mysql_app (config from XINTU_* env)."""
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path / "cli-instance"))
    monkeypatch.setenv("XINTU_ENV", "testing")
    monkeypatch.setenv("XINTU_SANDBOX", "0")
    monkeypatch.setenv("XINTU_SECRET_KEY", "test-" + "k" * 40)
    monkeypatch.setenv("XINTU_DATABASE_URL", mariadb.app_url(mysql_database))
    monkeypatch.setenv("XINTU_REPLICA_URL", mariadb.ro_url(mysql_database))
    from xintu_cli.main import cli

    def run(*args, input=None):
        result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
        return result
    return run
