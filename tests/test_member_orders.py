"""Flows 4–5 on real MariaDB: H5 OAuth session → order at the server's price → WeChat Pay v3 → notify."""
import json
import threading
import time
from datetime import timedelta

import pytest
import requests

from xintu.models import CreditLedger, Order, User
from xintu.sandbox.keys import rsa_keypair
from xintu.timeutil import utcnow

pytestmark = pytest.mark.mariadb


def _user(stack, openid):
    with stack.in_app():
        return User.get(User.openid == openid)


def _ledger(stack, openid):
    with stack.in_app():
        user = User.get(User.openid == openid)
        return [(e.reason, e.delta) for e in CreditLedger.select().where(CreditLedger.user == user.id)
                .order_by(CreditLedger.id)]


def test_membership_purchase_and_renewal_stack(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oMEMBER")
    prices = http.get(stack.url + "/api/v1/prices", timeout=10).json()
    assert prices["member"] == {"package": "member", "amount_fen": 2990, "days": 30, "bonus_credits": 10}
    assert [(p["credits"], p["amount_fen"]) for p in prices["credits"]] == [(10, 990), (20, 1800), (50, 3900)]

    order = stack.buy(http, "member")
    assert order["amount_fen"] == 2990 and order["status"] == "created"
    assert order["pay"]["params"]["signType"] == "RSA" and order["pay"]["mode"] == "sandbox"
    assert stack.sandbox.pay.orders[order["out_trade_no"]]["amount"] == 2990
    assert stack.sandbox.pay.simulate_payment(stack.prepay_id(order)) == [204]

    me = http.get(stack.url + "/api/v1/h5/me", timeout=10).json()
    assert me["is_member"] and me["credits_balance"] == 10
    first_expiry = _user(stack, "oMEMBER").member_expires_at
    assert abs((first_expiry - utcnow()) - timedelta(days=30)) < timedelta(minutes=1)
    assert http.get(stack.url + f"/api/v1/orders/{order['out_trade_no']}", timeout=10).json()["status"] == "paid"

    renewal = stack.buy(http, "member")
    stack.sandbox.pay.simulate_payment(stack.prepay_id(renewal))
    assert _user(stack, "oMEMBER").member_expires_at - first_expiry == timedelta(days=30)   # extends, not resets
    assert _ledger(stack, "oMEMBER") == [("membership_bonus", 10), ("membership_bonus", 10)]


def test_credit_package_purchase_goes_to_the_order_user(mysql_member_stack):
    stack = mysql_member_stack
    buyer, bystander = stack.h5_login("oBUYER"), stack.h5_login("oBYSTANDER")
    order = stack.buy(buyer, "credits", "20")
    assert order["amount_fen"] == 1800 and order["quantity"] == 20
    stack.sandbox.pay.simulate_payment(stack.prepay_id(order))
    assert buyer.get(stack.url + "/api/v1/h5/me", timeout=10).json()["credits_balance"] == 20
    assert bystander.get(stack.url + "/api/v1/h5/me", timeout=10).json()["credits_balance"] == 0
    # Another user cannot even see the order.
    assert bystander.get(stack.url + f"/api/v1/orders/{order['out_trade_no']}", timeout=10).status_code == 404


@pytest.mark.parametrize("body,status,code", [
    ({"kind": "credits", "package": "7"}, 400, "unknown_package"),
    ({"kind": "gold"}, 422, "validation_error"),
    ({"kind": "credits", "package": "10", "amount_fen": 1}, 422, "validation_error"),
])
def test_the_client_cannot_choose_a_price(mysql_member_stack, body, status, code):
    stack = mysql_member_stack
    http = stack.h5_login("oHAGGLER")
    resp = http.post(stack.url + "/api/v1/orders", json=body, timeout=10)
    assert resp.status_code == status and resp.json()["error"]["code"] == code
    with stack.in_app():
        assert Order.select().count() == 0


def test_duplicate_pay_notify_grants_once(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oDUP")
    order = stack.buy(http, "credits", "10")
    assert stack.sandbox.pay.simulate_payment(stack.prepay_id(order), repeat=3) == [204, 204, 204]
    assert _ledger(stack, "oDUP") == [("purchase", 10)]


def test_ten_concurrent_duplicate_notifies_grant_exactly_once(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oRACE")
    order = stack.buy(http, "member")
    prepay = stack.prepay_id(order)
    stack.sandbox.pay.pay(prepay)
    headers, body = stack.sandbox.pay.build_notification(prepay)
    barrier, codes = threading.Barrier(10), []

    def send():
        barrier.wait()
        codes.append(stack.sandbox.pay.deliver(prepay, headers, body))

    threads = [threading.Thread(target=send) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(codes) == [204] * 10
    assert _ledger(stack, "oRACE") == [("membership_bonus", 10)]
    user = _user(stack, "oRACE")
    assert abs((user.member_expires_at - utcnow()) - timedelta(days=30)) < timedelta(minutes=1)


def _forge(stack, prepay, kind):
    pay = stack.sandbox.pay
    tx = pay.transaction(pay.orders[pay.by_prepay[prepay]])
    if kind == "bad_signature":
        return pay.build_notification(prepay, sign_key=rsa_keypair()[0])
    if kind == "stale_timestamp":
        return pay.build_notification(prepay, timestamp=int(time.time()) - 600)
    if kind == "wrong_amount":
        return pay.build_notification(prepay, resource={**tx, "amount": {**tx["amount"], "total": 1}})
    if kind == "unknown_order":
        return pay.build_notification(prepay, resource={**tx, "out_trade_no": "XT0000UNKNOWN"})
    if kind == "other_merchant":
        return pay.build_notification(prepay, resource={**tx, "mchid": "1234567890"})
    if kind == "tampered_body":
        headers, body = pay.build_notification(prepay)
        envelope = json.loads(body)
        envelope["event_type"] = "TRANSACTION.SUCCESS "
        return headers, json.dumps(envelope, ensure_ascii=False)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,status", [("bad_signature", 401), ("stale_timestamp", 401), ("wrong_amount", 401),
                                         ("unknown_order", 404), ("other_merchant", 401), ("tampered_body", 401)])
def test_forged_or_tampered_notify_is_rejected_and_grants_nothing(mysql_member_stack, kind, status):
    stack = mysql_member_stack
    http = stack.h5_login("oVICTIM")
    order = stack.buy(http, "credits", "50")
    prepay = stack.prepay_id(order)
    stack.sandbox.pay.pay(prepay)
    headers, body = _forge(stack, prepay, kind)
    assert stack.sandbox.pay.deliver(prepay, headers, body) == status
    assert _ledger(stack, "oVICTIM") == []
    assert http.get(stack.url + f"/api/v1/orders/{order['out_trade_no']}", timeout=10).json()["status"] == "created"


def test_sweep_applies_paid_orders_and_closes_stale_ones(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oSWEEP")
    paid, unpaid, fresh = (stack.buy(http, "credits", "10") for _ in range(3))
    stack.sandbox.pay.pay(stack.prepay_id(paid))          # paid, but the notification never arrived
    with stack.in_app():
        Order.update(created_at=utcnow() - timedelta(minutes=31)).where(
            Order.out_trade_no.in_([paid["out_trade_no"], unpaid["out_trade_no"]])).execute()
    result = stack.cli("orders", "sweep", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"paid": 1, "closed": 1, "failed": 0, "refunds_sent": 0,
                                         "refunds_settled": 0, "refunds_failed": 0}
    with stack.in_app():
        status = {o.out_trade_no: o.status for o in Order.select()}
    assert status == {paid["out_trade_no"]: "paid", unpaid["out_trade_no"]: "closed", fresh["out_trade_no"]: "created"}
    assert stack.sandbox.pay.orders[unpaid["out_trade_no"]]["state"] == "CLOSED"
    assert _ledger(stack, "oSWEEP") == [("purchase", 10)]


def test_prepay_failure_is_a_502_with_a_code_and_leaves_no_open_order(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oDOWN")
    stack.app.config["WECHATPAY_BASE_URL"] = "http://127.0.0.1:9"   # nothing listens there
    resp = http.post(stack.url + "/api/v1/orders", json={"kind": "member"}, timeout=30)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "pay_prepay_failed"
    with stack.in_app():
        assert [o.status for o in Order.select()] == ["closed"]


def test_outside_the_sandbox_the_page_gets_a_signed_jsapi_package(mysql_member_stack):
    from xintu.sandbox.wechat_pay import rsa_verify

    stack = mysql_member_stack
    stack.app.config["SANDBOX"] = False
    order = stack.buy(stack.h5_login("oJSAPI"), "credits", "10")
    params = order["pay"]["params"]
    assert order["pay"]["mode"] == "jsapi" and "cashier_url" not in order["pay"]
    message = "".join(params[k] + "\n" for k in ("appId", "timeStamp", "nonceStr", "package"))
    assert rsa_verify(stack.sandbox.pay.merchant_public_key, message, params["paySign"])
    assert params["appId"] == stack.app.config["WECHAT_APP_ID"] and params["signType"] == "RSA"


def test_notify_with_a_serial_we_do_not_hold_is_refused_without_calling_wechat_pay(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oSERIAL")
    order = stack.buy(http, "credits", "10")
    prepay = stack.prepay_id(order)
    stack.sandbox.pay.pay(prepay)
    headers, body = stack.sandbox.pay.build_notification(prepay)
    before = list(stack.sandbox.pay.requests)
    for serial in ("5157F09EFDC096DE15EBE81A47057A7232F1B8E1", "", "not-hex"):
        resp = requests.post(order_notify_url(stack, prepay), data=body.encode(), timeout=10,
                             headers={**headers, "Wechatpay-Serial": serial})
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "pay_notify_unknown_serial"
    # the SDK would have downloaded /v3/certificates on this thread: nothing reached the fake
    assert stack.sandbox.pay.requests == before
    assert ("GET", "/v3/certificates") not in stack.sandbox.pay.requests
    assert _ledger(stack, "oSERIAL") == []
    # the genuine notification still goes through
    assert stack.sandbox.pay.deliver(prepay, headers, body) == 204
    assert _ledger(stack, "oSERIAL") == [("purchase", 10)]


def test_the_sdk_verifies_only_the_canonical_headers(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oSMUGGLE")
    order = stack.buy(http, "credits", "10")
    prepay = stack.prepay_id(order)
    stack.sandbox.pay.pay(prepay)
    # A notification captured long ago (validly signed, stale) re-sent under Http-Wechatpay-* names (the
    # SDK's Django spelling), with a fresh canonical timestamp for our own checks and no canonical signature.
    old, body = stack.sandbox.pay.build_notification(prepay, timestamp=int(time.time()) - 3600)
    smuggled = {"Http-" + k: v for k, v in old.items() if k.startswith("Wechatpay-")}
    smuggled.update({k: v for k, v in old.items() if k != "Wechatpay-Signature"},
                    **{"Wechatpay-Timestamp": str(int(time.time()))})
    resp = requests.post(order_notify_url(stack, prepay), data=body.encode(), headers=smuggled, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "pay_notify_bad_signature"
    assert _ledger(stack, "oSMUGGLE") == []


def order_notify_url(stack, prepay):
    pay = stack.sandbox.pay
    return pay.orders[pay.by_prepay[prepay]]["notify_url"]
