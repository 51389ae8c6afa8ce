"""The official-account token shared through the DB, the web-tier guard, and the H5 session."""
import threading
import time

import pytest
import requests

from xintu import db
from xintu.models import WechatToken
from xintu.wechat import official_account


@pytest.mark.mariadb
def test_concurrent_workers_refresh_the_token_once(mysql_member_stack):
    stack = mysql_member_stack
    barrier, tokens = threading.Barrier(8), []

    def worker():
        with stack.app.app_context():
            client = official_account(stack.app.config)       # each worker its own client object
            barrier.wait()
            tokens.append(client.access_token)
            db.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(set(tokens)) == 1 and stack.sandbox.mp.token_requests == 1

    # WeChat invalidates the token (e.g. refreshed elsewhere): the next call gets 42001, refreshes once
    # under the row lock, and retries.
    stack.sandbox.mp.expire_tokens()
    with stack.in_app():
        client = official_account(stack.app.config)
        result = client.qrcode.create({"expire_seconds": 60, "action_name": "QR_STR_SCENE",
                                       "action_info": {"scene": {"scene_str": "after-expiry"}}})
        assert result["ticket"]
        assert WechatToken.get().access_token != tokens[0]
    assert stack.sandbox.mp.token_requests == 2


def test_an_expired_db_token_is_not_used(member_stack):
    stack = member_stack
    with stack.in_app():
        client = official_account(stack.app.config)
        first = client.access_token
        WechatToken.update(expires_at=WechatToken.updated_at).execute()   # stale in the shared store
        stack.sandbox.mp.expire_tokens()
        assert official_account(stack.app.config).access_token != first
    assert stack.sandbox.mp.token_requests == 2


@pytest.fixture
def guarded(app):
    app.config.update(REQUIRE_INTERNAL_HEADER=True, INTERNAL_SHARED_SECRET="s3cret-web-tier",
                      INTERNAL_ALLOWED_ADDRS=["10.0.0.7"], WECHAT_TOKEN="tok")
    return app.test_client()


@pytest.mark.parametrize("path,method", [("/wechat/callback", "post"), ("/wechat/callback", "get"),
                                         ("/wechat/oauth", "get"), ("/wechat/pay/notify", "post")])
def test_internal_routes_need_the_secret_and_a_web_tier_address(guarded, path, method):
    call = getattr(guarded, method)
    good = {"X-Xintu-Internal": "s3cret-web-tier"}
    for headers, addr in [({}, "10.0.0.7"), ({"X-Xintu-Internal": "guess"}, "10.0.0.7"), (good, "10.0.0.8")]:
        resp = call(path, headers=headers, environ_base={"REMOTE_ADDR": addr})
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    # With both, the request reaches the view, which still insists on WeChat's own proof.
    resp = call(path, headers=good, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert resp.status_code in (400, 401, 403)


def test_x_forwarded_for_cannot_fake_the_web_tier_address(guarded):
    resp = guarded.post("/wechat/pay/notify", headers={"X-Xintu-Internal": "s3cret-web-tier",
                                                       "X-Forwarded-For": "10.0.0.7"},
                        environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert resp.status_code == 404


def test_oauth_refuses_foreign_redirects_and_forged_state(member_stack):
    stack = member_stack
    resp = requests.get(stack.url + "/wechat/oauth/start", params={"next": "https://evil.example/h5/"},
                        allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_redirect"
    landing = requests.get(stack.url + "/wechat/oauth", params={
        "code": "x", "state": f"{int(time.time())}.{'0' * 32}", "next": stack.url + "/h5/"},
        allow_redirects=False, timeout=10)
    assert landing.status_code == 400 and landing.json()["error"]["code"] == "oauth_state_invalid"
    bad_ticket = requests.post(stack.url + "/api/v1/h5/session", json={"ticket": "forged"}, timeout=10)
    assert bad_ticket.status_code == 401 and bad_ticket.json()["error"]["code"] == "h5_ticket_invalid"


def test_h5_ticket_is_redeemed_once(member_stack):
    stack = member_stack
    browser = stack.h5_login("oREPLAY")
    replay = browser.post(stack.url + "/api/v1/h5/session", json={"ticket": stack.last_ticket}, timeout=10)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "h5_ticket_used"
    assert "xintu_h5" not in replay.cookies


def test_h5_session_cookie_is_httponly_and_the_page_is_served(member_stack):
    stack = member_stack
    http = stack.h5_login("oCOOKIE")
    cookie = next(c for c in http.cookies if c.name == "xintu_h5")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert http.get(stack.url + "/api/v1/h5/me", timeout=10).json()["credits_balance"] == 0
    page = requests.get(stack.url + "/h5/", timeout=10)
    assert page.status_code == 200 and "会员中心" in page.text
