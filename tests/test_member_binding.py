"""Flows 1–3 on real MariaDB: QR code → signed follow/scan event → client session token, exactly once."""
import secrets
import time

import pytest
import requests

from xintu.models import ClientSession, CreditLedger, QrBinding, User, WechatEvent

pytestmark = pytest.mark.mariadb


def _qr(stack, token):
    resp = requests.post(stack.url + "/api/v1/auth/wechat/qrcode", headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _poll(stack, token, scene):
    return requests.get(stack.url + "/api/v1/auth/wechat/binding", params={"scene": scene},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_follow_by_qr_binds_the_client_and_grants_the_signup_bonus_once(mysql_member_stack):
    stack = mysql_member_stack
    device = stack.register_device()
    qr = _qr(stack, device)
    assert qr["qr_image"].startswith("data:image/svg+xml") and len(qr["scene"]) >= 32
    assert _poll(stack, device, qr["scene"]).json()["status"] == "pending"

    status, reply = stack.sandbox.mp.simulate_scan(qr["scene"], "oFOLLOWER1", first_follow=True)
    assert status == 200 and "已赠送 10 积分" in reply and "客户端登录成功" in reply

    first = _poll(stack, device, qr["scene"]).json()
    assert first["status"] == "bound" and first["token"].startswith("xt_")
    again = _poll(stack, device, qr["scene"]).json()
    assert again["status"] == "bound" and "token" not in again          # handed out exactly once

    me = requests.get(stack.url + "/api/v1/me", headers={"Authorization": f"Bearer {first['token']}"}, timeout=10)
    assert me.status_code == 200
    assert me.json()["credits_balance"] == 10 and "openid" not in me.json()

    # The same user scans a second client's QR: SCAN event, bound, no second bonus.
    other = stack.register_device()
    qr2 = _qr(stack, other)
    status, reply = stack.sandbox.mp.simulate_scan(qr2["scene"], "oFOLLOWER1", first_follow=False)
    assert status == 200 and "赠送" not in reply
    assert "token" in _poll(stack, other, qr2["scene"]).json()
    # Unfollow and follow again: still no second bonus.
    stack.sandbox.mp.simulate_unsubscribe("oFOLLOWER1")
    status, reply = stack.sandbox.mp.simulate_subscribe("oFOLLOWER1")
    assert "欢迎回到" in reply
    with stack.in_app():
        user = User.get(User.openid == "oFOLLOWER1")
        assert user.credits_balance == 10 and user.subscribed
        assert [e.reason for e in CreditLedger.select().where(CreditLedger.user == user.id)] == ["signup_bonus"]
        assert ClientSession.select().where(ClientSession.user == user.id, ClientSession.kind == "bound").count() == 2


@pytest.mark.parametrize("encrypted", [True, False])
def test_forged_event_signature_is_403_and_creates_no_user(mysql_member_stack, encrypted):
    stack = mysql_member_stack
    stack.app.config["WECHAT_AES_KEY"] = stack.sandbox.mp.encoding_aes_key if encrypted else None
    device = stack.register_device()
    qr = _qr(stack, device)
    status, _ = stack.sandbox.mp.simulate_scan(qr["scene"], "oFORGER", token="not-the-token", encrypted=encrypted)
    assert status == 403
    status, _ = stack.sandbox.mp.verify_url(token="not-the-token")[:2]
    assert status == 403
    with stack.in_app():
        assert not User.select().where(User.openid == "oFORGER").exists()
        assert QrBinding.get(QrBinding.scene == qr["scene"]).status == "pending"


def test_stale_event_is_refused(mysql_member_stack):
    stack = mysql_member_stack
    xml = stack.sandbox.mp.event_xml("oLATE", "subscribe")
    status, _ = stack.sandbox.mp.deliver(xml, "oLATE", timestamp=int(time.time()) - 3600)
    assert status == 403
    with stack.in_app():
        assert not User.select().where(User.openid == "oLATE").exists()


def test_replayed_event_is_processed_once(mysql_member_stack):
    stack = mysql_member_stack
    xml = stack.sandbox.mp.event_xml("oREPLAY", "subscribe", create_time=int(time.time()))
    replies = [stack.sandbox.mp.deliver(xml, "oREPLAY") for _ in range(3)]   # WeChat's retries
    assert [status for status, _ in replies] == [200, 200, 200]
    assert "已赠送" in replies[0][1] and replies[1][1] == "success"
    with stack.in_app():
        user = User.get(User.openid == "oREPLAY")
        assert user.credits_balance == 10
        assert WechatEvent.select().where(WechatEvent.openid == "oREPLAY").count() == 1


def test_url_verification_echo(mysql_member_stack):
    status, body, echostr = mysql_member_stack.sandbox.mp.verify_url()
    assert status == 200 and body == echostr


def test_binding_is_private_to_its_client_and_expires(mysql_member_stack):
    stack = mysql_member_stack
    owner, stranger = stack.register_device(), stack.register_device()
    qr = _qr(stack, owner)
    stack.sandbox.mp.simulate_scan(qr["scene"], "oOWNER")
    stolen = _poll(stack, stranger, qr["scene"])
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "binding_not_found"
    assert "token" in _poll(stack, owner, qr["scene"]).json()        # the stranger did not consume it

    late = _qr(stack, owner)
    with stack.in_app():
        QrBinding.update(expires_at=QrBinding.created_at).where(
            QrBinding.scene == late["scene"]).execute()
    _, reply = stack.sandbox.mp.simulate_scan(late["scene"], "oOWNER", first_follow=False)
    assert "二维码已失效" in reply
    assert _poll(stack, owner, late["scene"]).json()["status"] == "expired"


def test_client_supplied_openid_headers_are_ignored(mysql_member_stack):
    stack = mysql_member_stack
    stack.sandbox.mp.simulate_subscribe("oVICTIM")
    device = stack.register_device()
    spoof = {"X-WeChat-OpenID": "oVICTIM", "X-OpenID": "oVICTIM", "Authorization": f"Bearer {device}"}
    me = requests.get(stack.url + "/api/v1/me", headers=spoof, timeout=10)
    assert me.status_code == 403                                   # a device token is not a user
    for method, path in [("get", "/api/v1/h5/me"), ("post", "/api/v1/orders"), ("get", "/api/v1/orders")]:
        resp = getattr(requests, method)(stack.url + path, headers=spoof, json={"kind": "member"}, timeout=10)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "h5_login_required"
    resp = requests.get(stack.url + "/api/v1/h5/me", cookies={"xintu_h5": "forged.cookie.value"}, timeout=10)
    assert resp.status_code == 401


def _signed(token, timestamp=None, nonce=None):
    from xintu.sandbox.wechat_mp import wechat_signature

    timestamp, nonce = str(timestamp or int(time.time())), nonce or secrets.token_hex(5)
    return {"signature": wechat_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


def test_safe_mode_refuses_a_correctly_signed_plaintext_event(mysql_member_stack):
    stack = mysql_member_stack
    assert stack.app.config["WECHAT_AES_KEY"]               # the sandbox runs in safe mode
    xml = stack.sandbox.mp.event_xml("oPLAIN", "subscribe")
    resp = requests.post(stack.url + "/wechat/callback", params=_signed(stack.sandbox.mp.token),
                         data=xml.encode(), timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "wechat_plaintext_refused"
    with stack.in_app():
        assert not User.select().where(User.openid == "oPLAIN").exists()
    # WeChat's compatible mode, only when the operator says so
    stack.app.config["WECHAT_ALLOW_PLAINTEXT"] = True
    resp = requests.post(stack.url + "/wechat/callback", params=_signed(stack.sandbox.mp.token),
                         data=xml.encode(), timeout=10)
    assert resp.status_code == 200 and "已赠送" in resp.text


def test_an_event_encrypted_with_wechatpy_itself_is_accepted(mysql_member_stack):
    import xmltodict
    from wechatpy.crypto import WeChatCrypto

    stack = mysql_member_stack
    mp = stack.sandbox.mp
    crypto = WeChatCrypto(mp.token, stack.app.config["WECHAT_AES_KEY"], stack.app.config["WECHAT_APP_ID"])
    timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
    envelope = crypto.encrypt_message(mp.event_xml("oCRYPTO", "subscribe"), nonce, timestamp)
    params = {**_signed(mp.token, timestamp, nonce), "encrypt_type": "aes",
              "msg_signature": xmltodict.parse(envelope)["xml"]["MsgSignature"]}
    resp = requests.post(stack.url + "/wechat/callback", params=params, data=envelope.encode(), timeout=10)
    assert resp.status_code == 200, resp.text
    reply = xmltodict.parse(resp.text)["xml"]
    text = crypto.decrypt_message(resp.text, reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"])
    assert "已赠送" in text
    with stack.in_app():
        assert User.get(User.openid == "oCRYPTO").credits_balance == 10


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_url_signature_is_accepted_once(mysql_member_stack, encrypted):
    stack = mysql_member_stack
    mp = stack.sandbox.mp
    if not encrypted:
        stack.app.config["WECHAT_AES_KEY"] = None
    params = _signed(mp.token)
    first = requests.post(stack.url + "/wechat/callback", params=params, timeout=10,
                          data=mp.event_xml("oFIRST", "subscribe").encode()) if not encrypted else None
    if encrypted:
        import xmltodict
        from wechatpy.crypto import WeChatCrypto

        crypto = WeChatCrypto(mp.token, mp.encoding_aes_key, stack.app.config["WECHAT_APP_ID"])
        envelope = crypto.encrypt_message(mp.event_xml("oFIRST", "subscribe"), params["nonce"],
                                          params["timestamp"])
        signed = xmltodict.parse(envelope)["xml"]["MsgSignature"]
        aes = {**params, "encrypt_type": "aes", "msg_signature": signed}
        first = requests.post(stack.url + "/wechat/callback", params=aes, data=envelope.encode(), timeout=10)
        params = aes
    assert first.status_code == 200
    first_params = dict(params)
    # the same (signature, timestamp, nonce) carrying another body: refused, no second user
    body = mp.event_xml("oSECOND", "subscribe")
    if encrypted:
        body = crypto.encrypt_message(body, params["nonce"], params["timestamp"])
    if encrypted:
        params = {**params, "msg_signature": xmltodict.parse(body)["xml"]["MsgSignature"]}
    again = requests.post(stack.url + "/wechat/callback", params=params, data=body.encode(), timeout=10)
    assert again.status_code == 403 and again.json()["error"]["code"] == "wechat_signature_reused"
    # the identical request once more is WeChat re-sending: answered, not processed a second time
    resent = requests.post(stack.url + "/wechat/callback", params=first_params, data=first.request.body,
                           timeout=10)
    assert resent.status_code == 200 and resent.text == "success"
    echo = requests.get(stack.url + "/wechat/callback", params={**_signed(mp.token), "echostr": "e1"},
                        timeout=10)
    assert echo.status_code == 200 and echo.text == "e1"
    echo_again = requests.get(echo.url, timeout=10)
    assert echo_again.status_code == 403
    with stack.in_app():
        assert User.select().where(User.openid == "oFIRST").exists()
        assert not User.select().where(User.openid == "oSECOND").exists()


def test_qr_codes_are_limited_per_device_per_network_and_globally(mysql_member_stack):
    stack = mysql_member_stack
    stack.app.config.update(QR_PER_CLIENT=2, QR_PER_ADDRESS_HOUR=3, QR_GLOBAL_HOUR=5)

    def qr(token, address):   # the test server is a loopback peer, i.e. a trusted proxy
        return requests.post(stack.url + "/api/v1/auth/wechat/qrcode", timeout=10,
                             headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": address})

    def created():
        return sum(1 for _, path in stack.sandbox.mp.requests if path.endswith("/qrcode/create"))

    before = created()
    a, b, c, d = (stack.register_device() for _ in range(4))
    codes = [qr(a, "2001:db8:5:6::1").status_code for _ in range(2)]
    third = qr(a, "2001:db8:5:6::1")
    assert codes == [201, 201] and third.json()["error"]["code"] == "qrcode_rate_limited"
    assert qr(b, "2001:db8:5:6:ffff::2").status_code == 201            # same /64: its third code
    rotated = qr(b, "2001:db8:5:6:abcd::9")
    assert rotated.status_code == 429 and rotated.json()["error"]["code"] == "qrcode_address_rate_limited"
    assert [qr(c, "198.51.100.1").status_code for _ in range(2)] == [201, 201]
    busy = qr(d, "198.51.100.2")
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "qrcode_global_rate_limited"
    assert created() - before == 5                                     # refused ones cost WeChat nothing
