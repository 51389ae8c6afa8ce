"""WeChat Pay verification modes on real MariaDB: the WeChat Pay public key, platform certificates the SDK
downloads from the (fake) gateway, and both during a merchant's transition, across a mid-run switch of
the sandbox's signer. Notifications go through the real notify route and wechatpayv3."""
import os

import pytest
import requests

from xintu.member.pay import pay_client
from xintu.models import CreditLedger, Order, User
from xintu.sandbox.keys import platform_certificate

pytestmark = pytest.mark.mariadb

CERTS = ("GET", "/v3/certificates")


def _ledger(stack, openid):
    with stack.in_app():
        user = User.get(User.openid == openid)
        return [(e.reason, e.delta) for e in CreditLedger.select().where(CreditLedger.user == user.id)
                .order_by(CreditLedger.id)]


def _mode(stack, tmp_path, mode, signer, **extra):
    stack.sandbox.pay.set_signer(signer)
    stack.app.config.update(stack.sandbox.verify_config(mode, str(tmp_path / "certs")), **extra)


def _order(stack, http, package="10"):
    order = stack.buy(http, "credits", package)
    prepay = stack.prepay_id(order)
    stack.sandbox.pay.pay(prepay)
    return order, prepay


def _post(stack, prepay, headers, body):
    pay = stack.sandbox.pay
    return requests.post(pay.orders[pay.by_prepay[prepay]]["notify_url"], data=body.encode(), headers=headers,
                         timeout=10)


def _refused(resp, code):
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == code


def test_certificate_mode_downloads_the_certificate_and_verifies_by_it(mysql_member_stack, tmp_path):
    stack, pay = mysql_member_stack, mysql_member_stack.sandbox.pay
    _mode(stack, tmp_path, "certificate", "certificate")
    http = stack.h5_login("oCERT")
    order, prepay = _order(stack, http)        # the prepay answer is certificate-signed and verified
    # the SDK fetched the platform certificate from the gateway and kept it in the cert dir
    assert pay.requests.count(CERTS) == 1
    assert os.listdir(tmp_path / "certs") == [pay.certificate["serial_no"] + ".pem"]
    headers, body = pay.build_notification(prepay)
    assert headers["Wechatpay-Serial"] == pay.certificate["serial_no"]
    assert [pay.deliver(prepay, headers, body) for _ in range(2)] == [204, 204]
    assert _ledger(stack, "oCERT") == [("purchase", 10)]
    other, other_prepay = _order(stack, http, "20")
    # signed by the public key: neither a notification nor an answer is admitted in certificate mode
    pay.set_signer("public_key")
    resp = http.post(stack.url + "/api/v1/orders", json={"kind": "credits", "package": "10"}, timeout=10)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "pay_prepay_failed"
    _refused(_post(stack, other_prepay, *pay.build_notification(other_prepay)), "pay_notify_unknown_serial")
    assert _ledger(stack, "oCERT") == [("purchase", 10)]
    assert pay.requests.count(CERTS) == 1      # no download on the request thread for it
    with stack.in_app():
        assert Order.get(Order.out_trade_no == order["out_trade_no"]).status == "paid"
        assert Order.get(Order.out_trade_no == other["out_trade_no"]).status == "created"


def test_public_key_mode_verifies_by_the_key_and_refuses_certificate_signatures(mysql_member_stack, tmp_path):
    stack, pay = mysql_member_stack, mysql_member_stack.sandbox.pay
    _mode(stack, tmp_path, "public_key", "public_key")
    http = stack.h5_login("oPUBKEY")
    order, prepay = _order(stack, http)
    headers, body = pay.build_notification(prepay)
    assert headers["Wechatpay-Serial"] == pay.public_key_id
    assert pay.deliver(prepay, headers, body) == 204
    other, other_prepay = _order(stack, http, "20")
    pay.set_signer("certificate")
    _refused(_post(stack, other_prepay, *pay.build_notification(other_prepay)), "pay_notify_unknown_serial")
    assert _ledger(stack, "oPUBKEY") == [("purchase", 10)]
    assert CERTS not in pay.requests and not (tmp_path / "certs").exists()


def test_both_modes_across_a_mid_run_switch_apply_each_payment_once(mysql_member_stack, tmp_path):
    stack, pay = mysql_member_stack, mysql_member_stack.sandbox.pay
    _mode(stack, tmp_path, "both", "public_key")
    http = stack.h5_login("oBOTH")
    first, first_prepay = _order(stack, http, "10")
    second, second_prepay = _order(stack, http, "20")
    assert pay.requests.count(CERTS) == 1      # "both" loads the certificates next to the public key
    before = pay.build_notification(first_prepay)
    assert before[0]["Wechatpay-Serial"] == pay.public_key_id
    assert pay.deliver(first_prepay, *before) == 204
    pay.set_signer("certificate")               # WeChat switches mid-run
    after = pay.build_notification(second_prepay)
    assert after[0]["Wechatpay-Serial"] == pay.certificate["serial_no"]
    assert pay.deliver(second_prepay, *after) == 204
    # re-sends of either, after the switch, are verified and change nothing
    assert [pay.deliver(first_prepay, *before), pay.deliver(second_prepay, *after)] == [204, 204]
    third, third_prepay = _order(stack, http, "50")   # answers signed by the certificate now
    pay.set_signer("public_key")                # and back
    assert pay.deliver(third_prepay, *pay.build_notification(third_prepay)) == 204
    assert _ledger(stack, "oBOTH") == [("purchase", 10), ("purchase", 20), ("purchase", 50)]
    assert pay.requests.count(CERTS) == 1
    with stack.in_app():
        assert {o.status for o in Order.select()} == {"paid"}


@pytest.mark.parametrize("mode", ["certificate", "both"])
def test_a_notification_signed_by_a_key_we_do_not_hold_is_refused(mysql_member_stack, tmp_path, mode):
    stack, pay = mysql_member_stack, mysql_member_stack.sandbox.pay
    _mode(stack, tmp_path, mode, "certificate")
    http = stack.h5_login("oFORGE")
    order, prepay = _order(stack, http)
    stranger_key, _, stranger_serial = platform_certificate()
    forged = {
        # a certificate of its own: a serial we never downloaded (no download for it either)
        "unknown_certificate": (pay.build_notification(prepay, sign_key=stranger_key,
                                                       serial=format(stranger_serial, "X")),
                                "pay_notify_unknown_serial"),
        # our certificate's serial, someone else's key
        "certificate_serial": (pay.build_notification(prepay, sign_key=stranger_key),
                               "pay_notify_bad_signature"),
    }
    if mode == "both":
        forged["public_key_id"] = (pay.build_notification(prepay, sign_key=stranger_key,
                                                          serial=pay.public_key_id), "pay_notify_bad_signature")
    for (headers, body), code in forged.values():
        _refused(_post(stack, prepay, headers, body), code)
    assert pay.requests.count(CERTS) == 1
    assert _ledger(stack, "oFORGE") == []
    assert pay.deliver(prepay, *pay.build_notification(prepay)) == 204
    assert _ledger(stack, "oFORGE") == [("purchase", 10)]


def test_a_rotated_certificate_is_learnt_from_the_gateway_not_from_a_notification(mysql_member_stack, tmp_path):
    stack, pay = mysql_member_stack, mysql_member_stack.sandbox.pay
    _mode(stack, tmp_path, "certificate", "certificate", WECHATPAY_CERT_REFRESH_SECONDS=3600)
    http = stack.h5_login("oROTATE")
    order, prepay = _order(stack, http)
    old_serial = pay.certificate["serial_no"]
    new_serial = pay.rotate_certificate()       # WeChat publishes a new certificate and signs with it
    headers, body = pay.build_notification(prepay)
    assert headers["Wechatpay-Serial"] == new_serial != old_serial
    # within the refresh interval an unknown serial is refused without a download
    _refused(_post(stack, prepay, headers, body), "pay_notify_unknown_serial")
    assert pay.requests.count(CERTS) == 1
    # an answer of the gateway signed by the new certificate: WeChat rotated, the list is downloaded again
    with stack.in_app():
        assert pay_client(stack.app.config).query(out_trade_no=order["out_trade_no"])[0] == 200
    assert pay.requests.count(CERTS) == 2
    assert pay.deliver(prepay, headers, body) == 204
    assert sorted(os.listdir(tmp_path / "certs")) == sorted([old_serial + ".pem", new_serial + ".pem"])
    assert _ledger(stack, "oROTATE") == [("purchase", 10)]


def test_a_new_certificate_serial_in_a_notification_refreshes_when_the_interval_allows(mysql_member_stack, tmp_path):
    stack, pay = mysql_member_stack, mysql_member_stack.sandbox.pay
    _mode(stack, tmp_path, "certificate", "certificate", WECHATPAY_CERT_REFRESH_SECONDS=0)
    http = stack.h5_login("oREFRESH")
    order, prepay = _order(stack, http)
    stranger_key, _, stranger_serial = platform_certificate()
    forged = pay.build_notification(prepay, sign_key=stranger_key, serial=format(stranger_serial, "X"))
    _refused(_post(stack, prepay, *forged), "pay_notify_unknown_serial")
    assert pay.requests.count(CERTS) == 2       # interval 0: the made-up serial cost one download
    new_serial = pay.rotate_certificate()
    assert pay.deliver(prepay, *pay.build_notification(prepay)) == 204   # learnt from the notification
    assert pay.requests.count(CERTS) == 3 and (tmp_path / "certs" / (new_serial + ".pem")).exists()
    assert _ledger(stack, "oREFRESH") == [("purchase", 10)]


def test_a_certificate_a_sibling_worker_downloaded_is_taken_from_the_cert_dir(mysql_member_stack, tmp_path):
    """gunicorn's workers share WECHATPAY_CERT_DIR: when one learnt the new certificate (from an answer of
    the gateway), a notification the other receives verifies from the folder, without waiting out the
    refresh interval and without a download of its own."""
    stack, pay = mysql_member_stack, mysql_member_stack.sandbox.pay
    _mode(stack, tmp_path, "certificate", "certificate", WECHATPAY_CERT_REFRESH_SECONDS=3600)
    http = stack.h5_login("oSIBLING")
    order, prepay = _order(stack, http)
    new_serial = pay.rotate_certificate()
    headers, body = pay.build_notification(prepay)
    _refused(_post(stack, prepay, headers, body), "pay_notify_unknown_serial")   # not yet anywhere
    downloads = pay.requests.count(CERTS)
    # the sibling's SDK writes what it downloaded here, as <serial>.pem
    (tmp_path / "certs" / (new_serial + ".pem")).write_text(pay.certificate["pem"], encoding="utf-8")
    assert pay.deliver(prepay, headers, body) == 204
    assert pay.requests.count(CERTS) == downloads
    assert _ledger(stack, "oSIBLING") == [("purchase", 10)]
