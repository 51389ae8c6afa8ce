"""StatsService, the roll-up and pruning on the real MariaDB primary + replica."""
from datetime import timedelta

import pytest

from tests.stats_fixtures import EXPECTED_DAY, EXPECTED_DAY_BEFORE, EXPECTED_MEMBERS
from xintu import db
from xintu.errors import BadRequest
from xintu.models import DailyStat, RequestLog
from xintu.stats.rollup import prune, rollup
from xintu.stats.service import StatsService

pytestmark = pytest.mark.mariadb


def _assert_day(figures, expected):
    got = figures.as_dict()
    for key, value in expected.items():
        assert got[key] == value, key


def test_every_number_of_a_shanghai_day(mysql_app, stats_data):
    with mysql_app.app_context():
        before = db.fallback_count()
        service = StatsService()
        _assert_day(service.summary(stats_data.day, stats_data.day), EXPECTED_DAY)
        _assert_day(service.summary(stats_data.day - timedelta(days=1), stats_data.day - timedelta(days=1)),
                    EXPECTED_DAY_BEFORE)
        assert service.members() == EXPECTED_MEMBERS
        assert db.fallback_count() == before   # the replica answered


def test_range_summary_merges_days_and_latency_histograms(mysql_app, stats_data):
    with mysql_app.app_context():
        days = StatsService().days(stats_data.day - timedelta(days=1), stats_data.day + timedelta(days=1))
        assert [d.requests for d in days] == [1, 9, 1]
        total = StatsService().summary(stats_data.day - timedelta(days=1), stats_data.day + timedelta(days=1))
        assert total.requests == 11 and total.revenue_fen == 3980 + 3900
        assert total.methods == {"cache": 4, "llm": 3, "local": 1, "llm_fallback": 1}
        # 11 latencies: 5 8 9 12 15 30 95 100 1500 2100 3300 → rank 6 of 11
        assert total.latency_p50_ms == 30.0 and total.latency_p95_ms == 3300.0


def test_stats_read_the_replica(mysql_app, stats_data, mariadb, mysql_database):
    # A row that exists only on the replica (written locally there, outside replication, with an id
    # the primary will never use) shows up in the numbers: the reads went to the replica.
    conn = mariadb.admin(mariadb.replica)
    with conn, conn.cursor() as cur:
        cur.execute("SET sql_log_bin=0")
        cur.execute(f"INSERT INTO {mysql_database}.request_log (id, ts, endpoint, latency_ms, ok, status) "
                    "VALUES (900000000, %s, '/api/v1/location', 1, 1, 200)", (stats_data.start,))
        conn.commit()
        try:
            with mysql_app.app_context():
                assert StatsService().summary(stats_data.day, stats_data.day).requests == 10
                with db.atomic():  # the primary does not have it
                    assert RequestLog.select().where(RequestLog.ts >= stats_data.start,
                                                     RequestLog.ts < stats_data.end).count() == 9
        finally:
            cur.execute(f"DELETE FROM {mysql_database}.request_log WHERE id = 900000000")
            conn.commit()


def test_rollup_is_idempotent_and_agrees_with_live_numbers(mysql_app, stats_data, mariadb):
    with mysql_app.app_context():
        span = (stats_data.day - timedelta(days=1), stats_data.day)
        live = [d.as_dict() for d in StatsService().days(*span)]
        assert rollup(*span)["rolled_up"] == list_days(*span)
        first = sorted(DailyStat.select(DailyStat.day, DailyStat.metric, DailyStat.key, DailyStat.value).tuples())
        rollup(*span)
        again = sorted(DailyStat.select(DailyStat.day, DailyStat.metric, DailyStat.key, DailyStat.value).tuples())
        assert first == again
        assert ("_rollup" in {m for _, m, _, _ in first})
        # live downloads rows are kept, not duplicated
        assert DailyStat.select().where(DailyStat.metric == "downloads").count() == 2
        # remove the raw request rows behind the service's back: the rolled-up day still has its numbers
        RequestLog.delete().where(RequestLog.ts < stats_data.end).execute()
        mariadb.wait_replica()
        assert [d.as_dict() for d in StatsService().days(*span)] == live


def list_days(since, until):
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def test_prune_rolls_up_first_and_keeps_the_numbers(mysql_app, stats_data, mariadb):
    with mysql_app.app_context():
        expected = StatsService().summary(stats_data.day, stats_data.day).as_dict()
        result = prune(keep_days=1)   # keeps yesterday and today; the stats day is older
        assert result["deleted"] == 10   # 9 rows of the day + 1 of the day before; the day-after row stays
        assert stats_data.day in result["rolled_up"]
        assert RequestLog.select().count() == 1
        mariadb.wait_replica()
        assert StatsService().summary(stats_data.day, stats_data.day).as_dict() == expected
        # a later roll-up leaves pruned days alone instead of wiping them
        again = rollup(stats_data.day, stats_data.day)
        assert again == {"rolled_up": [], "skipped_pruned": [stats_data.day]}
        assert prune(keep_days=1)["deleted"] == 0


def test_rollup_refuses_days_not_over_and_bad_ranges(mysql_app):
    from xintu.timeutil import local_today

    with mysql_app.app_context():
        with pytest.raises(BadRequest) as info:
            rollup(local_today(), local_today())
        assert info.value.code == "day_not_over"
        with pytest.raises(BadRequest) as info:
            StatsService().days(local_today(), local_today() - timedelta(days=1))
        assert info.value.code == "invalid_range"
        with pytest.raises(BadRequest) as info:
            prune(0)
        assert info.value.code == "invalid_keep_days"


def test_daily_report_from_the_database(mysql_app, stats_data):
    from bs4 import BeautifulSoup

    from xintu.stats.report import render_daily_report

    with mysql_app.app_context():
        report = StatsService().daily_report(stats_data.day)
    soup = BeautifulSoup(render_daily_report(report), "html.parser")
    card = {c["data-key"]: c.select_one(".value").get_text(strip=True) for c in soup.select(".card")}
    assert card["requests"] == "9" and card["revenue"] == "¥39.80"
    assert card["cache_hit_ratio"] == "42.9%" and card["members_active"] == "2"
    assert card["credits_spent"] == "2" and card["downloads"] == "4"
    assert len(soup.select("[data-chart] svg.pygal-chart")) == 5
    # LLM success 66.7 % is below the floor
    assert "llm_failing" in {li["data-key"] for li in soup.select("#anomalies li")}
    assert soup.select_one('#downloads-table tr[data-key="windows 1.2.0"] td:last-child').text == "3"
    assert {tr["data-key"]: tr.select("td")[1].text for tr in soup.select("#batches-table tr[data-key]")} == {
        "1": "4", "3": "1"}




def test_overlapping_rollups_are_refused(mysql_app, stats_data, mariadb, mysql_database):
    from contextlib import closing

    from xintu.errors import Conflict

    # another host holds the roll-up lock
    with closing(mariadb.admin(mariadb.primary)) as other, other.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (f"xintu_stats_rollup:{mysql_database}",))
        with mysql_app.app_context(), pytest.raises(Conflict) as info:
            rollup(stats_data.day, stats_data.day)
        assert info.value.code == "rollup_running"
        cur.execute("SELECT RELEASE_LOCK(%s)", (f"xintu_stats_rollup:{mysql_database}",))
    with mysql_app.app_context():
        assert rollup(stats_data.day, stats_data.day)["rolled_up"] == [stats_data.day]
