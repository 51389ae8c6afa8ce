"""我的设备 and 注销账号 on the H5 member page in headless Chromium, against the app and the sandbox: the
demo PC client logs in by QR, the reply names it, the page lists it and logs it out, and the account is
erased after the confirmation step.  Screenshots go to artifacts/."""
import re
import shutil
from pathlib import Path

import requests

from xintu.models import User
from xintu.sandbox.demo import add_demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def test_my_devices_and_account_erasure_in_chromium(member_stack):
    from playwright.sync_api import expect, sync_playwright

    stack = member_stack
    add_demo(stack.sandbox.mp, stack.url)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                                       is_mobile=True, has_touch=True).new_page()
            page.set_default_timeout(15000)
            page.goto(stack.sandbox.mp.base_url + "/demo")
            status_url = page.locator("#status").get_attribute("href")
            page.click("#scan")
            page.fill("input[name=openid]", "oDEVICES")
            page.click("#scan")
            expect(page.locator("pre")).to_contain_text("客户端登录成功")
            expect(page.locator("pre")).to_contain_text("我的设备")
            page.goto(stack.sandbox.mp.base_url + status_url)
            token = re.search(r'"token":"(xt_[^"]+)"', page.locator("#binding").inner_text()).group(1)
            assert requests.get(stack.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"},
                                timeout=10).status_code == 200

            page.goto(stack.url + "/h5/?view=devices")        # the link in the login notice
            page.wait_for_url(re.compile(r"/connect/oauth2/authorize"))
            page.click("#allow")
            expect(page.locator("#devices li")).to_have_count(1)
            expect(page.locator("#devices li").first).to_contain_text("首次登录")
            expect(page.locator("#devices li").first).to_contain_text("本机")
            page.screenshot(path=str(ARTIFACTS / "h5-my-devices.png"), full_page=True)
            page.click("#devices li button")
            expect(page.locator("#notice")).to_contain_text("已退出")
            expect(page.locator("#devices li").first).to_contain_text("没有已登录的客户端")
            dead = requests.get(stack.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"},
                                timeout=10)
            assert dead.status_code == 401 and dead.json()["error"]["code"] == "token_revoked"

            page.click("#forget-start")
            expect(page.locator("#forget-confirm")).to_be_visible()
            expect(page.locator("#forget-do")).to_be_disabled()
            page.fill("#forget-text", "注销账号")
            expect(page.locator("#forget-do")).to_be_enabled()
            page.locator("#forget-confirm").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "h5-forget-confirm.png"), full_page=True)
            page.click("#forget-do")
            expect(page.locator("#notice")).to_contain_text("账号已注销")
        finally:
            browser.close()
    with stack.in_app():
        assert not User.select().where(User.openid == "oDEVICES").exists()
    for name in ("h5-my-devices.png", "h5-forget-confirm.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
