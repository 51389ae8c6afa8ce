"""The 管理后台 in headless Chromium: the SPA (its own origin, as on the web tier) against the admin API
served by a real HTTP server on the real MariaDB pair.  Log in, see the inserted numbers, adjust
credits, see the ledger row."""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from tests.stats_fixtures import insert_stats_rows
from xintu.admin.auth import create_admin
from xintu.errors import Unauthorized
from xintu.models import CreditLedger, User
from xintu.timeutil import local_today, utcnow

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]
SPA = Path(__file__).resolve().parents[1] / "xintu" / "sites" / "admin"
CHROMIUM = "/usr/bin/chromium"
# Screenshots kept for a human to look at (CI artifacts), beside the H5 one.
SHOTS = os.environ.get("XINTU_SCREENSHOTS") or str(Path(__file__).resolve().parents[1] / "artifacts")


class _SpaHandler(http.server.SimpleHTTPRequestHandler):
    api_base = ""

    def do_GET(self):
        if self.path.split("?")[0] == "/config.js":
            body = f'window.XINTU_ADMIN = {{ apiBase: "{self.api_base}" }};'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def dashboard(mysql_app, mariadb, tmp_path):
    api = make_server("127.0.0.1", 0, mysql_app, threaded=True)
    api_base = f"http://127.0.0.1:{api.server_port}"
    handler = type("Handler", (_SpaHandler,), {"api_base": api_base})
    spa = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(SPA)))
    spa_origin = f"http://127.0.0.1:{spa.server_port}"
    mysql_app.config["ADMIN_ALLOWED_ORIGINS"] = [spa_origin]
    mysql_app.config["RELEASES_DIR"] = str(tmp_path / "releases")
    with mysql_app.app_context():
        data = insert_stats_rows(local_today())
        create_admin("op1", "operator password", "operator")
        create_admin("viewer1", "viewer password", "viewer")
    mariadb.wait_replica()
    _serve(api), _serve(spa)
    yield {"url": spa_origin + "/index.html", "data": data}
    api.shutdown(), spa.shutdown()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert errors == []   # no script errors anywhere in the session


def _shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _login(page, url, username, password):
    page.goto(url)
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-submit")


def test_operator_sees_numbers_adjusts_credits_uploads_a_release(dashboard, page, mysql_app, tmp_path):
    _login(page, dashboard["url"], "op1", "wrong password")
    page.wait_for_selector("#login-error:has-text('用户名或密码错误')")

    _login(page, dashboard["url"], "op1", "operator password")
    page.wait_for_selector("#overview-cards")

    def value(key):
        return page.inner_text(f'#overview-cards .card[data-key="{key}"] .value')

    assert value("requests") == "9"
    assert value("cache_hit_ratio") == "42.9%"
    assert value("revenue") == "¥39.80"
    assert value("new_users") == "2" and value("members_active") == "2"
    assert value("credits_spent") == "2" and value("downloads") == "4"
    assert page.locator(".chart svg.pygal-chart").count() == 5
    assert page.inner_text("#who-role") == "运营"
    _shot(page, "overview")

    page.click("a[data-page=users]")
    page.fill("#user-search", "小明")
    page.click("#user-search-submit")
    expect(page.locator("tr.clickable")).to_have_count(1)   # the search narrowed 3 users to 1
    page.click("tr.clickable:has-text('o-alice')")
    page.wait_for_selector("#adjust-delta")
    assert page.inner_text('.card[data-key="balance"] .value') == "26"
    page.fill("#adjust-delta", "7")
    page.fill("#adjust-reason", "客服补偿")
    page.click("#adjust-submit")
    page.wait_for_selector("#adjust-status:has-text('已调整')")
    expect(page.locator('.card[data-key="balance"] .value')).to_have_text("33")
    first = page.locator("#ledger tbody tr").first
    assert first.locator('td[data-col="delta"]').inner_text() == "+7"
    assert first.locator('td[data-col="operator"]').inner_text() == "op1"
    assert first.locator('td[data-col="note"]').inner_text() == "客服补偿"
    assert first.locator('td[data-col="reason"]').inner_text() == "后台调整"
    # the signup bonus was written at 01:00 Beijing time (17:00 UTC the day before): shown as Beijing time
    signup = page.locator("#ledger tbody tr:has-text('关注赠送') td[data-col=created_at]")
    assert signup.inner_text() == f"{dashboard['data'].day.isoformat()} 01:00"
    _shot(page, "user")
    # the user's client logins: shown, and an operator ends one (its token then answers token_revoked)
    from xintu.auth import issue_token, lookup

    with mysql_app.app_context():
        token, _ = issue_token(client_id="pc-alice-0001", kind="bound", platform="windows", ip="192.168.1.9",
                               user=User.get(User.openid == "o-alice"))
    page.reload()
    expect(page.locator("#sessions tbody tr")).to_have_count(1)
    expect(page.locator("#sessions tbody tr").first).to_contain_text("pc-alice-0001")
    expect(page.locator("#sessions tbody tr").first).to_contain_text("局域网")
    page.click("#sessions button[data-session]")
    expect(page.locator("#sessions tbody tr").first).to_contain_text("暂无数据")
    with mysql_app.test_request_context(), pytest.raises(Unauthorized, match="已注销"):
        lookup(token)
    with mysql_app.app_context():
        entry = CreditLedger.select().order_by(CreditLedger.id.desc()).get()
        assert (entry.delta, entry.reason, entry.operator, entry.balance_after) == (7, "admin_adjust", "op1", 33)
        assert User.get(User.openid == "o-alice").credits_balance == 33

    page.click("a[data-page=orders]")
    t1 = "tbody tr:has(td[data-col=out_trade_no]:text-is('T1'))"
    page.wait_for_selector(t1)
    assert page.inner_text(t1 + ' td[data-col="amount_fen"]') == "¥29.90"
    assert page.inner_text(t1 + ' td[data-col="status"]') == "已支付"
    _shot(page, "orders")

    installer = tmp_path / "xintu-setup.exe"
    installer.write_bytes(b"MZ" + bytes(range(256)) * 40)
    page.click("a[data-page=releases]")
    page.select_option("#release-form select[name=platform]", "windows")
    page.fill("#release-form input[name=version]", "1.3.0")
    page.fill("#release-form input[name=notes]", "新增批量识别")
    page.set_input_files("#release-form input[name=file]", str(installer))
    page.click("#release-form button[type=submit]")
    page.wait_for_selector("#release-status:has-text('已上传 1.3.0')")
    digest = hashlib.sha256(installer.read_bytes()).hexdigest()
    assert digest[:12] in page.inner_text("#release-status")
    row = "tbody tr:has(td[data-col=version]:text-is('1.3.0'))"
    assert page.inner_text(row + " td[data-col=notes]") == "新增批量识别"
    _shot(page, "releases")

    page.click("a[data-page=inference]")
    page.select_option("#inference-mode", "local")
    page.wait_for_selector("#inference-status:has-text('只用本地模型')")
    with mysql_app.app_context():
        from xintu.models import Setting
        assert Setting.get_by_id("inference.mode").value == "local"
        assert Setting.get_by_id("inference.mode").updated_by == "op1"
    assert page.inner_text("#upstreams").splitlines() == ["dashscope.classify：正常", "dashscope.edit：正常"]
    with mysql_app.app_context():
        from xintu.upstreams import Breaker
        Breaker("dashscope.classify").open("quota", "Throttling.AllocationQuota", "quota gone")
    page.reload()
    page.wait_for_selector("#upstreams li:has-text('已熔断（Throttling.AllocationQuota')")
    _shot(page, "inference")


def test_viewer_has_no_write_controls_and_expired_session_returns_to_login(dashboard, page, mysql_app):
    from xintu.models import AdminSession

    _login(page, dashboard["url"], "viewer1", "viewer password")
    page.wait_for_selector("#overview-cards")
    page.goto(dashboard["url"] + "#/users/" + str(dashboard["data"].users["bob"].id))
    page.wait_for_selector("#adjust-panel")
    assert page.locator("#adjust-delta").count() == 0
    assert "只读账号不能调整积分" in page.inner_text("#adjust-panel")
    page.click("a[data-page=inference]")
    page.wait_for_selector("#inference-mode")
    assert page.locator("#inference-mode").is_disabled()

    with mysql_app.app_context():
        AdminSession.update(last_seen_at=utcnow() - timedelta(hours=1)).execute()
    page.click("a[data-page=orders]")
    page.wait_for_selector("#login-view:not([hidden])")
    assert page.inner_text("#login-error") == "登录已过期，请重新登录"


def test_refunds_needing_attention_are_alerts_and_operators_get_the_refund_form(dashboard, page, mysql_app,
                                                                               mariadb):
    from xintu.models import Order, Refund

    with mysql_app.app_context():
        order = Order.get(Order.out_trade_no == "T1")
        Refund.create(out_refund_no="T1R1", order=order.id, amount_fen=order.amount_fen, status="abnormal",
                      reason="用户申请", sent=True)
        Refund.create(out_refund_no="T1R0", order=order.id, amount_fen=100, status="success",
                      credits_taken=1, credits_shortfall=4, succeeded_at=utcnow())
    mariadb.wait_replica()
    _login(page, dashboard["url"], "op1", "operator password")
    page.wait_for_selector("#refund-alerts")
    assert "T1R1" in page.inner_text('#refund-alerts li[data-key="refund_abnormal"]')
    assert "少收回 4 积分" in page.inner_text('#refund-alerts li[data-key="refund_shortfall"]')
    page.click("a[data-page=orders]")
    page.wait_for_selector("#refund-submit")
    page.fill("#refund-order", "T2")
    page.fill("#refund-reason", "测试")
    page.click("#refund-submit")
    page.wait_for_selector("text=微信支付未配置")   # the form reached the API with the operator's token
    _shot(page, "refund-alerts")
