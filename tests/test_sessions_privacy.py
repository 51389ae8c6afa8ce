"""Sessions a user controls and personal data a user can take away or erase, on the real MariaDB primary
with the WeChat / WeChat Pay sandbox: expiry, logout, revoke on unsubscribe, the one-transaction token
hand-out under concurrent polls, fresh QR codes for a follower's SCAN, the H5 per-browser nonce, export
and erasure with orders and ledger rows, and the retention job."""
from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from xintu.auth import sessions
from xintu.models import (
    ClientSession,
    CreditLedger,
    EditImage,
    EditTask,
    ForgottenIdentity,
    Order,
    QrBinding,
    RequestLog,
    User,
    WechatEvent,
)
from xintu.timeutil import utcnow

pytestmark = pytest.mark.mariadb


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _qr(stack, device):
    resp = requests.post(stack.url + "/api/v1/auth/wechat/qrcode", headers=_auth(device), timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["scene"]


def _poll(stack, device, scene):
    return requests.get(stack.url + "/api/v1/auth/wechat/binding", params={"scene": scene},
                        headers=_auth(device), timeout=10)


def _bound_token(stack, openid, first_follow=True):
    device = stack.register_device()
    scene = _qr(stack, device)
    status, reply = stack.sandbox.mp.simulate_scan(scene, openid, first_follow=first_follow)
    assert status == 200 and "客户端登录成功" in reply, reply
    body = _poll(stack, device, scene).json()
    assert body["status"] == "bound" and body["token"], body
    return device, body["token"], reply


def _me(stack, token):
    return requests.get(stack.url + "/api/v1/me", headers=_auth(token), timeout=10)


def _error(resp):
    return resp.status_code, resp.json()["error"]["code"]


def test_logout_revokes_the_presented_token(mysql_member_stack):
    stack = mysql_member_stack
    device = stack.register_device()
    out = requests.post(stack.url + "/api/v1/auth/logout", headers=_auth(device), timeout=10)
    assert out.status_code == 204
    again = requests.post(stack.url + "/api/v1/auth/wechat/qrcode", headers=_auth(device), timeout=10)
    assert _error(again) == (401, "token_revoked")
    with stack.in_app():
        assert ClientSession.get(ClientSession.revoked_at.is_null(False)).revoked_reason == "logout"


def test_bound_tokens_expire_when_idle_or_old_device_tokens_later(mysql_member_stack):
    stack = mysql_member_stack
    _, idle, _ = _bound_token(stack, "oEXPIRE1")
    _, old, _ = _bound_token(stack, "oEXPIRE2")
    assert _me(stack, idle).status_code == 200
    with stack.in_app():
        bound = {s.user.openid: s for s in ClientSession.select().where(ClientSession.kind == "bound")}
        ClientSession.update(last_seen_at=utcnow() - timedelta(days=31)).where(
            ClientSession.id == bound["oEXPIRE1"].id).execute()
        ClientSession.update(created_at=utcnow() - timedelta(days=181)).where(
            ClientSession.id == bound["oEXPIRE2"].id).execute()
        # a device token idle as long is still alive (SESSION_DEVICE_IDLE_DAYS 180)
        ClientSession.update(last_seen_at=utcnow() - timedelta(days=31)).where(
            ClientSession.kind == "device").execute()
    sessions.clear()   # rows changed behind the app's back: a worker would see it within SESSION_CACHE_SECONDS
    assert _error(_me(stack, idle)) == (401, "token_expired")
    assert _error(_me(stack, old)) == (401, "token_expired")
    assert _error(_me(stack, idle)) == (401, "token_expired")   # stays dead, recorded as expired
    device = stack.register_device()
    with stack.in_app():
        ClientSession.update(last_seen_at=utcnow() - timedelta(days=31)).where(
            ClientSession.kind == "device").execute()
    sessions.clear()
    assert requests.post(stack.url + "/api/v1/auth/wechat/qrcode", headers=_auth(device),
                         timeout=10).status_code == 201
    with stack.in_app():
        ClientSession.update(last_seen_at=utcnow() - timedelta(days=181)).where(
            ClientSession.kind == "device").execute()
    sessions.clear()
    late = requests.post(stack.url + "/api/v1/auth/wechat/qrcode", headers=_auth(device), timeout=10)
    assert _error(late) == (401, "token_expired")


def test_unsubscribe_revokes_the_users_bound_tokens(mysql_member_stack):
    stack = mysql_member_stack
    _, token, _ = _bound_token(stack, "oLEAVER")
    _, other, _ = _bound_token(stack, "oSTAYER")
    status, _ = stack.sandbox.mp.simulate_unsubscribe("oLEAVER")
    assert status == 200
    assert _error(_me(stack, token)) == (401, "token_revoked")
    assert _me(stack, other).status_code == 200
    with stack.in_app():
        assert {s.revoked_reason for s in ClientSession.select().join(User).where(
            User.openid == "oLEAVER")} == {"unsubscribe"}


def test_concurrent_polls_hand_out_the_token_once(mysql_member_stack):
    stack = mysql_member_stack
    device = stack.register_device()
    scene = _qr(stack, device)
    stack.sandbox.mp.simulate_scan(scene, "oRACER", first_follow=True)
    barrier, results = threading.Barrier(8), []

    def poll():
        barrier.wait()
        results.append(_poll(stack, device, scene).json())

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    tokens = [r["token"] for r in results if "token" in r]
    assert len(results) == 8 and len(tokens) == 1 and all(r["status"] == "bound" for r in results)
    with stack.in_app():
        sessions = list(ClientSession.select().where(ClientSession.kind == "bound"))
        binding = QrBinding.get(QrBinding.scene == scene)
        assert len(sessions) == 1 and binding.token_delivered
        assert binding.client_token_hash == sessions[0].token_hash
    assert _me(stack, tokens[0]).status_code == 200


def test_follower_scan_binds_only_a_fresh_qr_and_the_reply_names_the_client(mysql_member_stack):
    stack = mysql_member_stack
    _, _, reply = _bound_token(stack, "oFAN", first_follow=True)
    assert "Windows 电脑" in reply and "我的设备" in reply and "/wechat/oauth/start" in reply
    device = stack.register_device()
    stale = _qr(stack, device)
    with stack.in_app():   # the attacker's code has been shown around for three minutes
        QrBinding.update(created_at=utcnow() - timedelta(minutes=3)).where(QrBinding.scene == stale).execute()
    status, reply = stack.sandbox.mp.simulate_scan(stale, "oFAN", first_follow=False)
    assert status == 200 and "二维码已失效" in reply
    assert _poll(stack, device, stale).json()["status"] == "pending"
    fresh = _qr(stack, device)
    time.sleep(1.1)   # WeChat's de-dup key has CreateTime in whole seconds
    status, reply = stack.sandbox.mp.simulate_scan(fresh, "oFAN", first_follow=False)
    assert "客户端登录成功" in reply and "token" in _poll(stack, device, fresh).json()


def _oauth_until_ticket(stack, openid):
    """A browser that went through OAuth up to the landing's redirect (ticket not redeemed yet)."""
    http = requests.Session()
    start = http.get(stack.url + "/wechat/oauth/start", params={"next": stack.url + "/h5/"},
                     allow_redirects=False, timeout=10)
    assert start.status_code == 302 and "xintu_oauth" in start.cookies
    authorize = start.headers["Location"].split("#")[0]
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    consent = http.post(authorize.split("?")[0], data={**query, "openid": openid}, allow_redirects=False,
                        timeout=10)
    return http, consent.headers["Location"]


def test_h5_ticket_made_for_another_browser_does_not_log_this_one_in(mysql_member_stack):
    stack = mysql_member_stack
    attacker, landing_url = _oauth_until_ticket(stack, "oATTACKER")
    landing = attacker.get(landing_url, allow_redirects=False, timeout=10)
    ticket = parse_qs(urlsplit(landing.headers["Location"]).query)["ticket"][0]
    victim = requests.Session()
    victim.get(stack.url + "/wechat/oauth/start", params={"next": stack.url + "/h5/"}, allow_redirects=False,
               timeout=10)   # the victim's own nonce
    assert _error(victim.post(stack.url + "/api/v1/h5/session", json={"ticket": ticket},
                              timeout=10)) == (401, "h5_ticket_foreign")
    assert _error(requests.post(stack.url + "/api/v1/h5/session", json={"ticket": ticket},
                                timeout=10)) == (401, "h5_ticket_foreign")
    # the attacker's landing URL opened in the victim's browser is refused at the landing already
    _, other_landing = _oauth_until_ticket(stack, "oATTACKER")
    refused = victim.get(other_landing, allow_redirects=False, timeout=10)
    assert _error(refused) == (400, "oauth_state_foreign")
    # the browser that started the flow is let in
    welcome = attacker.post(stack.url + "/api/v1/h5/session", json={"ticket": ticket}, timeout=10)
    assert welcome.status_code == 200


def test_my_devices_lists_and_revokes_sessions(mysql_member_stack):
    stack = mysql_member_stack
    _, token, _ = _bound_token(stack, "oDEVICES")
    browser = stack.h5_login("oDEVICES")
    items = browser.get(stack.url + "/api/v1/h5/sessions", timeout=10).json()["items"]
    assert len(items) == 1 and items[0]["platform"] == "windows" and items[0]["place"] == "本机"
    assert items[0]["first_seen_at"] and items[0]["last_seen_at"] and "ip" not in items[0]
    stranger = stack.h5_login("oSTRANGER")
    assert _error(stranger.post(f"{stack.url}/api/v1/h5/sessions/{items[0]['id']}/revoke",
                                timeout=10)) == (404, "session_not_found")
    assert _me(stack, token).status_code == 200
    mine = browser.post(f"{stack.url}/api/v1/h5/sessions/{items[0]['id']}/revoke", timeout=10)
    assert mine.status_code == 204
    assert _error(_me(stack, token)) == (401, "token_revoked")
    assert browser.get(stack.url + "/api/v1/h5/sessions", timeout=10).json()["items"] == []


def _edit_task(user_id, client_id):
    from xintu.edit.service import store_image

    task = EditTask.create(task_id="t" + client_id[-8:], user=user_id, prompt="把我家猫变成老虎",
                           images=[], n_images=1, status="succeeded")
    images = [{"position": 0, "status": "succeeded", "stored": [task.id, 0],
               "result_url": "https://upstream.example/r.png"}]
    EditTask.update(images=images).where(EditTask.id == task.id).execute()
    store_image(task.id, 0, "image/png", b"\x89PNG result bytes", kind="result")
    RequestLog.create(endpoint="classify", client=client_id)
    RequestLog.create(endpoint="classify", client=client_id)
    RequestLog.create(endpoint="classify", client="someone-else")
    return task


def test_export_and_forget_with_orders_and_ledger(mysql_member_stack):
    stack = mysql_member_stack
    device, token, _ = _bound_token(stack, "oFORGETME")
    browser = stack.h5_login("oFORGETME")
    order = stack.buy(browser, "credits", "10")
    assert stack.sandbox.pay.simulate_payment(stack.prepay_id(order)) == [204]
    with stack.in_app():
        user = User.get(User.openid == "oFORGETME")
        client_id = ClientSession.get(ClientSession.kind == "bound").client_id
        _edit_task(user.id, client_id)
        orders_before = [(o.out_trade_no, o.amount_fen, o.status) for o in Order.select()]
        ledger_before = [(e.delta, e.reason, e.created_at)
                         for e in CreditLedger.select().order_by(CreditLedger.id)]

    exported = stack.cli("users", "export", "--user-id", str(user.id), "--format", "json")
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.output)
    assert data["profile"]["openid"] == "oFORGETME" and len(data["sessions"]) == 1
    assert data["orders"][0]["amount_fen"] == 990 and data["orders"][0]["status"] == "paid"
    assert data["ledger"][0]["reason"] == "signup_bonus"
    assert data["edit_tasks"][0]["stored_images"] == [{"kind": "result", "position": 0, "mime": "image/png",
                                                       "bytes": 17}]
    assert data["requests"][0]["endpoint"] == "classify" and data["requests"][0]["count"] == 2
    h5_export = browser.get(stack.url + "/api/v1/h5/export", timeout=10)
    assert h5_export.json()["profile"]["openid"] == "oFORGETME"
    zipped = browser.get(stack.url + "/api/v1/h5/export.zip", timeout=10)
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert zipped.headers["Content-Type"] == "application/zip" and "data.json" in names
    assert any(n.endswith("result-0.png") for n in names)

    forgotten = stack.cli("users", "forget", "--user-id", str(user.id), "--reason", "工单 42",
                          "--format", "json")
    assert forgotten.exit_code == 0, forgotten.output
    assert json.loads(forgotten.output)["sessions_revoked"] == 1

    after = stack.cli("users", "export", "--user-id", str(user.id), "--format", "json")
    assert "oFORGETME" not in after.output and json.loads(after.output)["profile"]["forgotten_at"]
    assert _error(_me(stack, token)) == (401, "token_revoked")
    assert _error(browser.get(stack.url + "/api/v1/h5/me", timeout=10)) == (401, "h5_login_required")
    audit = stack.cli("credits", "audit")
    assert audit.exit_code == 0, audit.output
    with stack.in_app():
        tomb = User.get_by_id(user.id)
        assert tomb.openid == f"forgotten:{user.id}" and tomb.nickname is None and tomb.unionid is None
        assert [(o.out_trade_no, o.amount_fen, o.status) for o in Order.select()] == orders_before
        assert [(e.delta, e.reason, e.created_at) for e in
                CreditLedger.select().order_by(CreditLedger.id)] == ledger_before
        assert EditImage.select().count() == 0 and EditTask.get().prompt == ""
        assert [r.client for r in RequestLog.select()] == ["someone-else"]
        assert not WechatEvent.select().where(WechatEvent.openid == "oFORGETME").exists()
        assert ForgottenIdentity.select().count() == 1
        assert "oFORGETME" not in json.dumps(list(ForgottenIdentity.select().dicts()), default=str)

    # the same person opens the H5 page, then follows again: a new user, without a second signup bonus
    stack.h5_login("oFORGETME")
    status, reply = stack.sandbox.mp.simulate_subscribe("oFORGETME")
    assert status == 200 and "欢迎回到" in reply and "赠送" not in reply
    with stack.in_app():
        again = User.get(User.openid == "oFORGETME")
        assert again.id != user.id and again.credits_balance == 0
        assert not CreditLedger.select().where(CreditLedger.user == again.id).exists()
    assert stack.cli("credits", "audit").exit_code == 0


def test_h5_forget_needs_the_confirmation(mysql_member_stack):
    stack = mysql_member_stack
    browser = stack.h5_login("oH5FORGET")
    refused = browser.post(stack.url + "/api/v1/h5/forget", json={"confirm": "yes"}, timeout=10)
    assert _error(refused) == (422, "validation_error")
    assert browser.get(stack.url + "/api/v1/h5/me", timeout=10).status_code == 200
    done = browser.post(stack.url + "/api/v1/h5/forget", json={"confirm": "注销账号"}, timeout=10)
    assert done.status_code == 200 and done.json()["ok"]
    assert _error(browser.get(stack.url + "/api/v1/h5/me", timeout=10)) == (401, "h5_login_required")
    with stack.in_app():
        assert not User.select().where(User.openid == "oH5FORGET").exists()


def test_retention_deletes_old_request_log_and_edit_images(mysql_member_stack):
    stack = mysql_member_stack
    with stack.in_app():
        user = User.create(openid="oRETAIN")
        old = _edit_task(user.id, "pc-old-client1")
        EditTask.update(created_at=utcnow() - timedelta(days=91)).where(EditTask.id == old.id).execute()
        RequestLog.update(ts=utcnow() - timedelta(days=200)).where(
            RequestLog.client == "pc-old-client1").execute()
        new = EditTask.create(task_id="tnew", user=user.id, prompt="p", images=[], n_images=1,
                              status="succeeded")
        from xintu.edit.service import store_image
        store_image(new.id, 0, "image/png", b"new", kind="result")
    result = stack.cli("users", "retention", "--format", "json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts["request_log_deleted"] == 2 and counts["edit_images_deleted"] == 1
    with stack.in_app():
        assert [i.task_id for i in EditImage.select()] == [new.id]
        assert EditTask.get_by_id(old.id).images[0]["stored"] is False
        assert [r.client for r in RequestLog.select()] == ["someone-else"]
