"""`xintu stats …` and `xintu report daily` against the real MariaDB pair, in every output format."""
import csv
import io
import json
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup

from tests.stats_fixtures import EXPECTED_DAY

pytestmark = pytest.mark.mariadb


def _day_args(data):
    return ["--since", data.day.isoformat(), "--until", data.day.isoformat()]


def test_summary_in_three_formats(xintu, stats_data):
    js = json.loads(xintu("stats", "summary", *_day_args(stats_data), "--format", "json").output)
    for key in ("requests", "failed", "images", "cache_hit_ratio", "llm_success_ratio", "latency_p95_ms",
                "new_users", "new_followers", "orders_paid", "revenue_fen", "credits_granted",
                "credits_spent", "edit_tasks", "downloads"):
        assert js[key] == EXPECTED_DAY[key], key
    assert js["revenue"] == "¥39.80" and js["members_active"] == 2 and js["members_expiring_7d"] == 1

    rows = {r["key"]: r["value"] for r in csv.DictReader(io.StringIO(
        xintu("stats", "summary", *_day_args(stats_data), "--format", "csv").output))}
    assert rows["requests"] == "9" and rows["revenue_fen"] == "3980" and rows["cache_hit_ratio"] == "0.4286"

    since = (stats_data.day - timedelta(days=1)).isoformat()
    days = json.loads(xintu("stats", "days", "--since", since, "--until", stats_data.day.isoformat(),
                            "--format", "json").output)
    assert [(d["day"], d["requests"], d["revenue_fen"]) for d in days] == [
        (since, 1, 3900), (stats_data.day.isoformat(), 9, 3980)]

    table = xintu("stats", "summary", *_day_args(stats_data)).output.splitlines()
    assert table[0].split() == ["key", "value"]
    assert "requests 9" in [" ".join(line.split()) for line in table]
    assert "revenue ¥39.80" in [" ".join(line.split()) for line in table]


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_categories_methods_revenue_members(xintu, stats_data, fmt):
    def rows(*args):
        out = xintu("stats", *args, "--format", fmt).output
        if fmt == "json":
            return json.loads(out)
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(out)))
        lines = out.splitlines()
        header = lines[0].split()
        return [dict(zip(header, line.split(), strict=False)) for line in lines[2:]]

    cats = {r["category"]: int(r["images"]) for r in rows("categories", *_day_args(stats_data))}
    assert cats == {**dict.fromkeys(["social_activities", "single_person", "idcard"], 0),
                    **EXPECTED_DAY["categories"]}
    methods = {r["method"]: int(r["images"]) for r in rows("methods", *_day_args(stats_data))}
    assert methods == {"local_fallback": 0, **EXPECTED_DAY["methods"]}   # every method has a row
    since = (stats_data.day - timedelta(days=1)).isoformat()
    revenue = rows("revenue", "--since", since, "--until", stats_data.day.isoformat())
    assert [(str(r["day"]), int(r["revenue_fen"]), int(r["member_fen"])) for r in revenue] == [
        (since, 3900, 0), (stats_data.day.isoformat(), 3980, 2990)]
    sizes = {int(r["images_per_request"]): int(r["requests"]) for r in rows("batches", *_day_args(stats_data))}
    assert sizes == EXPECTED_DAY["batch_sizes"]
    members = rows("members")
    if fmt == "json":
        assert members == {"members_active": 2, "members_expiring_7d": 1, "users_total": 3}
    else:
        assert {r["key"]: int(r["value"]) for r in members}["members_expiring_7d"] == 1


def test_rollup_cli_is_idempotent_and_prunes(xintu, stats_data, mysql_app):
    from xintu.models import DailyStat, RequestLog

    first = xintu("stats", "rollup", "--date", stats_data.day.isoformat(), "--format", "json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == [{"day": stats_data.day.isoformat(), "action": "rolled_up"}]
    with mysql_app.app_context():
        count = DailyStat.select().count()
    assert xintu("stats", "rollup", "--date", stats_data.day.isoformat()).exit_code == 0
    from datetime import timedelta

    from xintu import budgets
    from xintu.models import UsageCounter
    from xintu.timeutil import utcnow
    with mysql_app.app_context():
        UsageCounter.create(key="llm:device:1", window="2026-01-01", count=3,
                            created_at=utcnow() - timedelta(days=30))
        assert budgets.take("llm:all", 5)
    pruned = xintu("stats", "rollup", "--keep-days", "1", "--format", "json")
    assert pruned.exit_code == 0, pruned.output
    assert {"day": None, "action": "pruned 10 request_log rows"} in json.loads(pruned.output)
    assert {"day": None, "action": "pruned 1 usage_counters rows"} in json.loads(pruned.output)
    with mysql_app.app_context():
        assert [c.key for c in UsageCounter.select()] == ["llm:all"]     # today's budget stays
        assert RequestLog.select().count() == 1
        assert DailyStat.select().count() > count   # the day before got rolled up too, plus prune marks
    again = json.loads(xintu("stats", "summary", *_day_args(stats_data), "--format", "json").output)
    assert again["requests"] == 9 and again["latency_p50_ms"] == 30.0


def test_errors_are_one_line(xintu, stats_data):
    bad = xintu("stats", "summary", "--since", "2026-11-20", "--until", "2026-11-01")
    assert bad.exit_code == 1 and bad.output.strip() == "Error: 起始日期晚于结束日期"
    today = xintu("stats", "rollup", "--date", "2999-01-01")
    assert today.exit_code == 1 and "只能汇总已经结束的日期" in today.output
    assert xintu("stats", "summary", "--since", "yesterday").exit_code == 2


def test_report_daily_writes_a_self_contained_page(xintu, stats_data, tmp_path):
    out = tmp_path / "report.html"
    result = xintu("report", "daily", "--date", stats_data.day.isoformat(), "--out", out)
    assert result.exit_code == 0, result.output
    soup = BeautifulSoup(out.read_text(encoding="utf-8"), "html.parser")
    assert soup.select_one("#report-day").text == stats_data.day.isoformat()
    card = {c["data-key"]: c.select_one(".value").get_text(strip=True) for c in soup.select(".card")}
    assert card["requests"] == "9" and card["new_users"] == "2" and card["revenue"] == "¥39.80"
    assert len(soup.select("[data-chart] svg")) == 5
    assert not soup.select("script[src], link[href]")
    unmailable = xintu("report", "daily", "--date", stats_data.day.isoformat(), "--out", out,
                       "--mail-to", "ops@example.com")
    assert unmailable.exit_code == 1
    assert unmailable.output.strip().splitlines()[-1] == "Error: mailing the report needs SMTP_HOST and SMTP_FROM"


def test_prune_command_and_admin_accounts(xintu, stats_data, mysql_app):
    from werkzeug.security import check_password_hash

    from xintu.models import Admin

    pruned = xintu("stats", "prune", "--keep-days", "1", "--format", "json")
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.output) == {"deleted": 10, "rolled_up": 2, "pruned_days": 2}

    made = xintu("admin", "create-user", "ops-li", "--role", "operator", "--password-stdin",
                 input="a long enough password\n")
    assert made.exit_code == 0 and made.output.strip() == "created admin ops-li (operator)"
    with mysql_app.app_context():
        stored = Admin.get(Admin.username == "ops-li")
    assert stored.role == "operator" and check_password_hash(stored.password_hash, "a long enough password")
    weak = xintu("admin", "create-user", "ops-wang", "--password-stdin", input="short\n")
    assert weak.exit_code == 1 and weak.output.strip() == "Error: 密码至少 10 个字符"
    listed = json.loads(xintu("admin", "list-users", "--format", "json").output)
    assert [(a["username"], a["role"]) for a in listed] == [("ops-li", "operator")]


def test_report_is_mailed_through_a_real_smtp_server(xintu, stats_data, monkeypatch, tmp_path):
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    from xintu.ops.procs import free_port

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.rcpt_tos, envelope.content))
            return "250 OK"

    port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setenv("XINTU_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("XINTU_SMTP_PORT", str(port))
        monkeypatch.setenv("XINTU_SMTP_FROM", "report@xintu.example.com")
        result = xintu("report", "daily", "--date", stats_data.day.isoformat(), "--out", tmp_path / "r.html",
                       "--mail-to", "ops@example.com", "--mail-to", "boss@example.com")
        assert result.exit_code == 0, result.output
    finally:
        controller.stop()
    [(rcpts, raw)] = inbox.messages
    assert rcpts == ["ops@example.com", "boss@example.com"]
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["Subject"].startswith(f"芯图相册日报 {stats_data.day.isoformat()}")
    assert "异常" in mail["Subject"]   # the LLM success ratio of the day is below the floor
    html = mail.get_body(("html",)).get_content()
    soup = BeautifulSoup(html, "html.parser")
    assert soup.select_one('.card[data-key="requests"] .value').text.strip() == "9"
    assert "识别请求 9" in mail.get_body(("plain",)).get_content()


def test_dashboard_cli_and_report_agree(xintu, mysql_app, mariadb, tmp_path):
    from tests.stats_fixtures import insert_stats_rows
    from xintu.admin.auth import create_admin
    from xintu.timeutil import local_today

    with mysql_app.app_context():
        insert_stats_rows(local_today())
        create_admin("viewer1", "viewer password", "viewer")
    mariadb.wait_replica()
    client = mysql_app.test_client()
    token = client.post("/api/v1/admin/login", json={"username": "viewer1", "password": "viewer password"})
    overview = client.get("/api/v1/admin/overview",
                          headers={"Authorization": "Bearer " + token.get_json()["token"]}).get_json()
    cli = json.loads(xintu("stats", "summary", "--format", "json").output)   # default range: today
    xintu("report", "daily", "--date", local_today().isoformat(), "--out", tmp_path / "today.html")
    soup = BeautifulSoup((tmp_path / "today.html").read_text(encoding="utf-8"), "html.parser")
    card = {c["data-key"]: c.select_one(".value").get_text(strip=True) for c in soup.select(".card")}
    for key in ("requests", "images", "new_users", "orders_paid", "revenue_fen", "credits_granted",
                "credits_spent", "edit_tasks", "downloads", "cache_hit_ratio", "latency_p95_ms"):
        assert overview["today"][key] == cli[key], key
    assert overview["members_active"] == cli["members_active"] == int(card["members_active"])
    assert card["requests"] == str(cli["requests"]) and card["revenue"] == cli["revenue"]
