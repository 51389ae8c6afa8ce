"""The sandbox speaks WeChat's and WeChat Pay's wire protocols: the real SDKs, only re-pointed, work
against it, and it rejects what the real platforms reject. The receiving side here is plain wechatpy /
wechatpayv3 code, so these tests pin the protocol, not our services."""
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import wechatpy
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import (
    InvalidSignatureException,
    WeChatClientException,
    WeChatOAuthException,
)
from wechatpy.oauth import WeChatOAuth
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from xintu.member.pay import gateway_wechatpay_class
from xintu.sandbox.base import Response, SandboxServer
from xintu.sandbox.keys import apiv3_key, encoding_aes_key, rsa_keypair, serial_no
from xintu.sandbox.wechat_mp import WeChatSandbox
from xintu.sandbox.wechat_pay import PaySandbox
from xintu.wechat.client import StableTokenClient

APPID, SECRET, TOKEN, MCHID = "wxsandbox0000001", "s" * 32, "cbtoken", "1900000109"


class Receiver(SandboxServer):
    """Stands in for our app: records what arrives and answers with a handler set by the test."""

    def __init__(self, handler):
        super().__init__()
        self.received = []
        self.route("POST", "/in", lambda req: (self.received.append(req), handler(req))[1])

    @property
    def url(self):
        return self.base_url + "/in"


@pytest.fixture
def mp():
    with WeChatSandbox(APPID, SECRET, TOKEN, encoding_aes_key=encoding_aes_key()) as sandbox:
        yield sandbox


@pytest.fixture
def merchant():
    private, public = rsa_keypair()
    return {"private": private, "public": public, "serial": serial_no(), "apiv3": apiv3_key()}


@pytest.fixture
def paysb(merchant):
    with PaySandbox(MCHID, APPID, merchant["apiv3"], merchant["public"]) as sandbox:
        yield sandbox


def pay_client(sandbox, merchant, private_key=None):
    wp = gateway_wechatpay_class()(
        gateway=sandbox.base_url, wechatpay_type=WeChatPayType.JSAPI, mchid=MCHID,
        private_key=private_key or merchant["private"], cert_serial_no=merchant["serial"], appid=APPID,
        apiv3_key=merchant["apiv3"], notify_url="http://127.0.0.1:9/unused",
        public_key=sandbox.platform_public_key, public_key_id=sandbox.public_key_id)
    assert isinstance(wp, WeChatPay) and wp.gateway == sandbox.base_url
    return wp


def test_stable_token_is_shared_and_refreshed_after_expiry(mp):
    first = StableTokenClient(APPID, SECRET, api_base_url=mp.api_base_url)
    second = StableTokenClient(APPID, SECRET, api_base_url=mp.api_base_url)
    assert first.access_token == second.access_token
    assert mp.token_requests == 1
    mp.expire_tokens()
    # wechatpy retries once on 42001 after fetching a fresh token through our stable_token override
    ticket = first.qrcode.create({"expire_seconds": 600, "action_name": "QR_STR_SCENE",
                                  "action_info": {"scene": {"scene_str": "abc"}}})
    assert ticket["url"].startswith(mp.base_url + "/q/")
    assert mp.token_requests == 2


def test_wrong_secret_and_unknown_token_are_refused(mp):
    with pytest.raises(WeChatClientException) as exc:
        StableTokenClient(APPID, "wrong", api_base_url=mp.api_base_url).fetch_access_token()
    assert exc.value.errcode == 40125
    client = StableTokenClient(APPID, SECRET, api_base_url=mp.api_base_url)
    with pytest.raises(WeChatClientException) as exc:  # a token chosen by the caller is not replaced
        client.post("qrcode/create", params={"access_token": "forged"},
                    data={"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "x"}}})
    assert exc.value.errcode == 40001
    client.session.set(client.access_token_key, "forged")  # a stored one is: normal mode, one retry
    assert client.qrcode.create({"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "x"}}})
    assert mp.force_times == []


def test_oauth_code_round_trip_is_single_use(mp):
    oauth = WeChatOAuth(APPID, SECRET, "http://app.example/wechat/oauth?next=%2Fh5", state="s1")
    oauth.API_BASE_URL, oauth.OAUTH_BASE_URL = mp.sns_base_url, mp.oauth_base_url
    form = requests.get(oauth.authorize_url.split("#")[0], timeout=5)
    assert form.status_code == 200 and "id=allow" in form.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(oauth.authorize_url.split("#")[0]).query).items()}
    back = requests.post(oauth.OAUTH_BASE_URL + "oauth2/authorize", data={**query, "openid": "oUSER1"},
                         allow_redirects=False, timeout=5)
    assert back.status_code == 302
    landing = parse_qs(urlsplit(back.headers["Location"]).query)
    assert landing["next"] == ["/h5"] and landing["state"] == ["s1"]
    oauth.fetch_access_token(landing["code"][0])
    assert oauth.open_id == "oUSER1"
    with pytest.raises(WeChatOAuthException):
        oauth.fetch_access_token(landing["code"][0])


@pytest.mark.parametrize("encrypted", [False, True])
def test_scan_event_reaches_callback_signed_and_reply_comes_back(mp, encrypted):
    crypto = WeChatCrypto(TOKEN, mp.encoding_aes_key, APPID)

    def app(req):
        q = {k: v[0] for k, v in req.query.items()}
        try:
            check_signature(TOKEN, q["signature"], q["timestamp"], q["nonce"])
            xml = req.body.decode()
            if q.get("encrypt_type") == "aes":
                xml = crypto.decrypt_message(xml, q["msg_signature"], q["timestamp"], q["nonce"])
        except InvalidSignatureException:
            return Response(403, b"forbidden")
        msg = wechatpy.parse_message(xml)
        reply = TextReply(message=msg, content=f"{msg.event}:{msg.scene_id}").render()
        if q.get("encrypt_type") == "aes":
            reply = crypto.encrypt_message(reply, q["nonce"], q["timestamp"])
        return Response(200, reply.encode(), {"Content-Type": "application/xml"})

    with Receiver(app) as receiver:
        mp.callback_url = receiver.url
        status, reply = mp.simulate_scan("scene42", "oA", first_follow=True, encrypted=encrypted)
        assert status == 200 and "<![CDATA[subscribe_scan:scene42]]>" in reply
        assert "<ToUserName><![CDATA[oA]]></ToUserName>" in reply
        status, reply = mp.simulate_scan("scene42", "oA", first_follow=False, encrypted=encrypted)
        assert status == 200 and "<![CDATA[scan:scene42]]>" in reply
        assert (b"<Encrypt>" in receiver.received[0].body) is encrypted
        # a forger without the token is refused by the receiver's signature check
        assert mp.simulate_scan("scene42", "oB", token="guess", encrypted=encrypted)[0] == 403


def test_pay_prepay_query_notify_close_through_wechatpayv3(paysb, merchant):
    wp = pay_client(paysb, merchant)
    notifications = []

    def app(req):
        notifications.append(wp.callback(req.headers, req.body))
        return Response(204)

    with Receiver(app) as receiver:
        for no in ("ORDER0001", "ORDER0002"):
            code, text = wp.pay(description="芯图会员", out_trade_no=no, amount={"total": 2990},
                                payer={"openid": "oPAYER"}, notify_url=receiver.url)
            assert code == 200
        prepay_id = json.loads(text)["prepay_id"]
        assert json.loads(wp.query(out_trade_no="ORDER0001")[1])["trade_state"] == "NOTPAY"
        prepay_1 = paysb.orders["ORDER0001"]["prepay_id"]
        assert paysb.simulate_payment(prepay_1, repeat=2) == [204, 204]
        assert notifications[0] == notifications[1]
        resource = notifications[0]["resource"]
        assert resource["trade_state"] == "SUCCESS" and resource["amount"]["total"] == 2990
        assert resource["out_trade_no"] == "ORDER0001" and resource["mchid"] == MCHID
        paid = json.loads(wp.query(out_trade_no="ORDER0001")[1])
        assert paid["trade_state"] == "SUCCESS" and paid["transaction_id"] == resource["transaction_id"]
        assert wp.close(out_trade_no="ORDER0002") == (204, b"")  # the SDK verified the signed empty 204
        assert wp.close(out_trade_no="ORDER0001")[0] == 400
        assert paysb.orders["ORDER0002"]["state"] == "CLOSED" and prepay_id
        # forged: signed by someone else's key, or sealed with another APIv3 key → SDK yields None
        other_private, _ = rsa_keypair()
        headers, body = paysb.build_notification(prepay_1, sign_key=other_private)
        assert wp.callback(headers, body) is None
        headers, body = paysb.build_notification(prepay_1, apiv3_key=apiv3_key())
        assert wp.callback(headers, body) is None


def test_pay_refuses_requests_not_signed_by_the_merchant(paysb, merchant):
    other_private, _ = rsa_keypair()
    impostor = pay_client(paysb, merchant, private_key=other_private)
    code, text = impostor.pay(description="x", out_trade_no="ORDER0003", amount={"total": 1},
                              payer={"openid": "o"}, notify_url="http://127.0.0.1:9/n")
    assert code == 401 and "SIGN_ERROR" in text
    assert "ORDER0003" not in paysb.orders


def test_cashier_checks_the_jsapi_pay_sign(paysb, merchant):
    wp = pay_client(paysb, merchant)
    _, text = wp.pay(description="积分 10", out_trade_no="ORDER0004", amount={"total": 990},
                     payer={"openid": "o"}, notify_url="http://127.0.0.1:9/n")
    package = "prepay_id=" + json.loads(text)["prepay_id"]
    ts, nonce = str(int(time.time())), "n0nce"
    params = {"appId": APPID, "timeStamp": ts, "nonceStr": nonce, "package": package, "signType": "RSA",
              "paySign": wp.sign([APPID, ts, nonce, package])}
    page = requests.get(paysb.base_url + "/sandbox/cashier", params=params, timeout=5)
    assert page.status_code == 200 and "¥9.90" in page.text
    forged = requests.get(paysb.base_url + "/sandbox/cashier", params={**params, "nonceStr": "other"}, timeout=5)
    assert forged.status_code == 400


def test_start_embedded_points_the_app_at_fresh_sandboxes():
    from xintu.sandbox import start_embedded, wechat

    overrides = start_embedded({"PUBLIC_BASE_URL": "http://127.0.0.1:5999", "SANDBOX_LLM": False})
    running = wechat._running.pop()
    try:
        assert overrides["REQUIRE_INTERNAL_HEADER"] is False
        assert overrides["WECHATPAY_BASE_URL"] == running.pay.base_url
        assert overrides["WECHAT_API_BASE_URL"] == running.mp.base_url + "/"
        assert "BEGIN PRIVATE KEY" in overrides["WECHATPAY_PRIVATE_KEY"]
        assert running.mp.callback_url == "http://127.0.0.1:5999/wechat/callback"
        assert requests.get(running.pay.base_url + "/sandbox/cashier", timeout=5).status_code == 400
    finally:
        running.stop()


def test_platform_certificate_is_published_as_wechatpayv3_decrypts_it(paysb, merchant, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from wechatpayv3.utils import aes_decrypt, load_certificate

    wp = gateway_wechatpay_class()(
        gateway=paysb.base_url, use_certificates=True, cert_dir=str(tmp_path), wechatpay_type=WeChatPayType.JSAPI,
        mchid=MCHID, private_key=merchant["private"], cert_serial_no=merchant["serial"], appid=APPID,
        apiv3_key=merchant["apiv3"])
    # the SDK's own download (_init_certificates → _update_certificates) reached the fake, not WeChat
    assert paysb.requests == [("GET", "/v3/certificates")]
    [cert] = wp.certificates
    assert format(cert.serial_number, "X") == paysb.certificate["serial_no"]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.PEM, spki) != paysb.platform_public_key.encode()
    assert (tmp_path / (paysb.certificate["serial_no"] + ".pem")).read_text() == paysb.certificate["pem"]
    # the wire format: data[] with serial_no, effective/expire time and an AEAD_AES_256_GCM sealed PEM
    status, text = wp._core.request("/v3/certificates")      # signed answer, verified by the SDK
    [item] = json.loads(text)["data"]
    assert status == 200 and item["serial_no"] == paysb.certificate["serial_no"]
    assert item["effective_time"] < item["expire_time"]
    sealed = item["encrypt_certificate"]
    assert sealed["algorithm"] == "AEAD_AES_256_GCM" and sealed["associated_data"] == "certificate"
    pem = aes_decrypt(nonce=sealed["nonce"], ciphertext=sealed["ciphertext"],
                      associated_data=sealed["associated_data"], apiv3_key=merchant["apiv3"])
    assert load_certificate(pem).serial_number == cert.serial_number
    # unauthenticated requests get WeChat's 401, not the certificates
    assert requests.get(paysb.base_url + "/v3/certificates", timeout=5).status_code == 401


def test_signer_switch_changes_the_serial_and_key_of_answers(paysb, merchant, tmp_path):
    paysb.control_key = "k" * 24
    keyed = pay_client(paysb, merchant)
    certified = gateway_wechatpay_class()(
        gateway=paysb.base_url, use_certificates=True, cert_dir=str(tmp_path), wechatpay_type=WeChatPayType.JSAPI,
        mchid=MCHID, private_key=merchant["private"], cert_serial_no=merchant["serial"], appid=APPID,
        apiv3_key=merchant["apiv3"])
    assert keyed.query(out_trade_no="nosuchorder1")[0] == 404     # errors are not signed: both fine
    refused = requests.post(paysb.base_url + "/sandbox/signing", json={"with": "certificate"}, timeout=5)
    assert refused.status_code == 403 and paysb.signer == "public_key"
    switched = requests.post(paysb.base_url + "/sandbox/signing", json={"with": "certificate"}, timeout=5,
                             headers={"X-Sandbox-Key": paysb.control_key})
    assert switched.json()["signer"] == "certificate" == paysb.signer
    code, _ = certified.pay(description="x", out_trade_no="SIGN000001", amount={"total": 1},
                           payer={"openid": "o1"}, notify_url="http://127.0.0.1:9/n")
    assert code == 200
    with pytest.raises(Exception, match="failed to verify the signature"):
        keyed.query(out_trade_no="SIGN000001")   # a public-key client does not accept the certificate
    paysb.set_signer("public_key")
    assert keyed.query(out_trade_no="SIGN000001")[0] == 200
    with pytest.raises(Exception, match="failed to verify the signature"):
        certified.query(out_trade_no="SIGN000001")
    assert paysb.requests.count(("GET", "/v3/certificates")) == 1   # neither went to download anything
    bad = requests.post(paysb.base_url + "/sandbox/signing", json={"with": "md5"}, timeout=5,
                        headers={"X-Sandbox-Key": paysb.control_key})
    assert bad.status_code == 400 and bad.json()["code"] == "PARAM_ERROR"
