"""The daily report renderer and anomaly rules, on figures built in the test (no database)."""
from datetime import date, datetime, timedelta

from bs4 import BeautifulSoup

from xintu.stats.anomalies import detect_anomalies
from xintu.stats.figures import DayFigures, yuan
from xintu.stats.report import DailyReport, render_daily_report


def _day(d, cache=300, llm=150, local=30, fallback=5, requests=480, failed=4, p95=800.0, **kw):
    methods = {"cache": cache, "llm": llm, "local": local, "llm_fallback": fallback}
    base = {"day": d, "requests": requests, "failed": failed, "images": sum(methods.values()),
            "methods": methods, "categories": {"pets": 80, "foods": 60, "screenshot": 90},
            "latency_p50_ms": 120.0, "latency_p95_ms": p95, "new_users": 12, "new_followers": 10,
            "orders_paid": 3, "revenue_fen": 9960, "credits_granted": 60, "credits_spent": 25,
            "edit_tasks": 9, "downloads": 14}
    base.update(kw)
    return DayFigures(**base)


def _week(last):
    start = date(2026, 11, 18)
    return [_day(start + timedelta(days=i)) for i in range(6)] + [last]


def test_yuan_formats_fen_only_at_display():
    assert yuan(2990) == "¥29.90"
    assert yuan(123456789) == "¥1,234,567.89"
    assert yuan(-5) == "-¥0.05"


def test_ratios_are_none_without_traffic():
    empty = DayFigures(day=date(2026, 11, 24))
    assert empty.cache_hit_ratio is None and empty.llm_success_ratio is None
    assert empty.as_dict()["error_ratio"] is None


def test_steady_week_has_no_anomalies():
    days = _week(_day(date(2026, 11, 24)))
    assert detect_anomalies(days[-1], days[:-1]) == []


def test_cache_hit_and_llm_failures_are_flagged():
    today = _day(date(2026, 11, 24), cache=100, fallback=60, p95=2000.0)
    keys = {a.key: a.level for a in detect_anomalies(today, _week(today)[:-1])}
    assert keys == {"cache_hit_drop": "warning", "llm_failing": "critical", "latency_up": "warning"}


def test_traffic_drop_and_error_rise_are_flagged():
    today = _day(date(2026, 11, 24), requests=100, failed=20)
    keys = {a.key for a in detect_anomalies(today, _week(today)[:-1])}
    assert keys == {"traffic_drop", "errors_up"}


def test_quiet_days_do_not_drag_the_baseline_down():
    start = date(2026, 11, 18)
    history = [DayFigures(day=start)] + [_day(start + timedelta(days=i)) for i in range(1, 6)]
    assert detect_anomalies(_day(date(2026, 11, 24)), history) == []


def test_report_is_self_contained_with_numbers_charts_and_anomalies():
    today = _day(date(2026, 11, 24), cache=120, fallback=40, requests=540, revenue_fen=12345)
    report = DailyReport(day=today.day, figures=today, trend=_week(today), members_active=42,
                         members_expiring_7d=5, downloads_by_version={"1.2.0 (windows)": 10},
                         generated_at=datetime(2026, 11, 25, 6, 0))
    html = render_daily_report(report)
    soup = BeautifulSoup(html, "html.parser")

    card = {c["data-key"]: c.select_one(".value").get_text(strip=True) for c in soup.select(".card")}
    assert card["requests"] == "540"
    assert card["revenue"] == "¥123.45"
    assert card["cache_hit_ratio"] == f"{120 / 340 * 100:.1f}%"
    assert card["members_active"] == "42" and card["members_expiring_7d"] == "5"
    assert "flagged" in soup.select_one('.card[data-key="llm_success_ratio"]')["class"]

    alerts = {li["data-key"] for li in soup.select("#anomalies li")}
    assert {"cache_hit_drop", "llm_failing"} <= alerts

    charts = {div["data-chart"]: div.find("svg") for div in soup.select("[data-chart]")}
    assert set(charts) == {"requests", "ratios", "revenue", "methods", "categories"}
    assert all(svg is not None and "pygal-chart" in svg["class"] for svg in charts.values())
    # one bar per day in the request trend, labelled by day
    assert "11-24" in charts["requests"].get_text() and "11-18" in charts["requests"].get_text()
    # self-contained: nothing is fetched from elsewhere
    assert not soup.select("script[src], link[href], img[src]")
    assert soup.select_one('#downloads-table tr[data-key="1.2.0 (windows)"] td:last-child').text == "10"
