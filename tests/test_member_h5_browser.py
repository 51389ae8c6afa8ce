"""The H5 member page in headless Chromium (Debian's /usr/bin/chromium) against the running app and the
sandbox: demo client QR → simulated scan → H5 page → WeChat OAuth → buy membership → sandbox cashier →
the page shows the member-until date and the credits.  Screenshots go to artifacts/ (a CI artifact)."""
import re
import shutil
from datetime import date
from pathlib import Path

from xintu.sandbox.demo import add_demo
from xintu.timeutil import utcnow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def test_h5_member_purchase_in_chromium(member_stack):
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

            page.goto(stack.sandbox.mp.base_url + "/demo")                 # the PC client shows a QR code
            expect(page.locator("#qr")).to_be_visible()
            status_url = page.locator("#status").get_attribute("href")
            page.click("#scan")                                            # the phone scans it
            page.fill("input[name=openid]", "oBROWSER")
            page.click("#scan")
            expect(page.locator("pre")).to_contain_text("已赠送 10 积分")
            page.goto(stack.sandbox.mp.base_url + status_url)              # the client's poll got its token
            expect(page.locator("#binding")).to_contain_text('"status":"bound"')
            expect(page.locator("#binding")).to_contain_text('"token":"xt_')

            page.goto(stack.url + "/h5/")                                   # opened inside WeChat
            page.wait_for_url(re.compile(r"/connect/oauth2/authorize"))
            expect(page.locator("input[name=openid]")).to_have_value("oBROWSER")
            page.click("#allow")
            expect(page.locator("#member-status")).to_have_text("未开通")
            expect(page.locator("#credits")).to_have_text("10")
            expect(page.locator("#credit-prices li")).to_have_count(3)

            page.click("button[data-kind=member]")
            expect(page.locator("#amount")).to_have_text("¥29.90")      # the sandbox cashier
            page.click("#pay")
            until = utcnow().date().toordinal() + 30
            expect(page.locator("#member-status")).to_have_text(re.compile(r"会员至 \d{4}-\d{2}-\d{2}"))
            expect(page.locator("#credits")).to_have_text("20")
            expect(page.locator("#notice")).to_have_text("支付成功")
            expect(page.locator("#orders li").first).to_contain_text("已支付")
            shown = page.locator("#member-status").inner_text().split()[-1]
            assert abs(date.fromisoformat(shown).toordinal() - until) <= 1   # Shanghai vs UTC day
            page.screenshot(path=str(ARTIFACTS / "h5-member-purchase.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "h5-member-purchase.png").stat().st_size > 10_000
