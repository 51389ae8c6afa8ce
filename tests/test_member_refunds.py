"""Refunds on real MariaDB through wechatpayv3 and the sandbox WeChat Pay: what a refund takes back, once;
refund notifications (ours and the merchant portal's); payments that arrive after an order closed."""
import json
import threading
import time
from datetime import timedelta

import pytest
import requests

from tests.member_fixtures import wait_for_order
from xintu import metrics
from xintu.member.credits import CreditService
from xintu.models import CreditLedger, Order, Refund, User
from xintu.timeutil import utcnow

pytestmark = pytest.mark.mariadb


def _paid(stack, openid, kind="credits", package="10"):
    http = stack.h5_login(openid)
    order = stack.buy(http, kind, package)
    assert stack.sandbox.pay.simulate_payment(stack.prepay_id(order)) == [204]
    return order["out_trade_no"]


def _state(stack, no):
    with stack.in_app():
        order = Order.get(Order.out_trade_no == no)
        user = User.get_by_id(order.user_id)
        ledger = [(e.reason, e.delta) for e in CreditLedger.select().where(CreditLedger.user == user.id)
                  .order_by(CreditLedger.id)]
        refunds = list(Refund.select().where(Refund.order == order.id).order_by(Refund.id))
        return order, user, ledger, refunds, CreditService().audit()





def _refund(stack, no, *args):
    return stack.cli("orders", "refund", no, "--reason", "用户申请", "--operator", "ops1", "--format", "json",
                     *args)


def test_full_refund_takes_the_credits_back_and_a_second_is_refused(mysql_member_stack):
    stack = mysql_member_stack
    no = _paid(stack, "oFULL")
    result = _refund(stack, no)
    assert result.exit_code == 0, result.output
    started = json.loads(result.output)
    assert started["amount_fen"] == 990 and started["operator"] == "ops1" and started["refund_id"]
    wait_for_order(stack, no, "refunded")
    order, user, ledger, refunds, drift = _state(stack, no)
    assert ledger == [("purchase", 10), ("refund", -10)] and user.credits_balance == 0 and drift == []
    assert [(r.status, r.credits_taken, r.credits_shortfall, r.source) for r in refunds] == [
        ("success", 10, 0, "cli")]
    assert order.refunded_fen == 990
    again = _refund(stack, no)
    assert again.exit_code == 1 and again.output.strip().splitlines() == [f"Error: 订单 {no} 已全额退款"]


def test_partial_refunds_of_a_membership_take_back_their_share_and_never_exceed_the_order(mysql_member_stack):
    stack = mysql_member_stack
    no = _paid(stack, "oHALF", "member")
    before = _state(stack, no)[1].member_expires_at
    assert _refund(stack, no, "--amount-fen", "1495").exit_code == 0
    order = wait_for_order(stack, no, "partially_refunded")
    _, user, ledger, refunds, _ = _state(stack, no)
    assert ledger == [("membership_bonus", 10), ("refund", -5)]
    assert before - user.member_expires_at == timedelta(days=15)
    too_much = _refund(stack, no, "--amount-fen", "1496")
    assert too_much.exit_code == 1 and "超过可退的 1495 分" in too_much.output
    assert _refund(stack, no).exit_code == 0          # the rest
    wait_for_order(stack, no, "refunded")
    _, user, ledger, refunds, drift = _state(stack, no)
    assert ledger == [("membership_bonus", 10), ("refund", -5), ("refund", -5)] and drift == []
    assert before - user.member_expires_at == timedelta(days=30)
    assert [r.amount_fen for r in refunds] == [1495, 1495] and order.refunded_fen == 1495


def test_spent_credits_are_a_recorded_shortfall_shown_by_the_audit(mysql_member_stack):
    stack = mysql_member_stack
    no = _paid(stack, "oSPENT")
    with stack.in_app():
        CreditService().spend(_state(stack, no)[1].id, 8, "edit_spend", "task:spent")
    shortfall_before = metrics.REFUND_SHORTFALL._value.get()
    assert _refund(stack, no).exit_code == 0
    wait_for_order(stack, no, "refunded")
    _, user, ledger, refunds, drift = _state(stack, no)
    assert user.credits_balance == 0 and ledger[-1] == ("refund", -2) and drift == []
    assert (refunds[0].credits_taken, refunds[0].credits_shortfall) == (2, 8)
    assert metrics.REFUND_SHORTFALL._value.get() - shortfall_before == 8
    audit = stack.cli("credits", "audit")
    assert audit.exit_code == 0
    line = f"refund shortfall: user {user.id} order {no} refund {no}R1: 8 credits already spent"
    assert line in audit.output


def test_concurrent_duplicate_refund_notifications_apply_once(mysql_member_stack):
    stack = mysql_member_stack
    pay = stack.sandbox.pay
    pay.refund_outcome = None                     # we deliver the notification ourselves
    no = _paid(stack, "oDUPREF", "member")
    assert _refund(stack, no).exit_code == 0
    pay.settle_refund(no + "R1", "SUCCESS")
    headers, body = pay.build_refund_notification(no + "R1")
    barrier, codes = threading.Barrier(10), []

    def send():
        barrier.wait()
        codes.append(pay.deliver_refund(no + "R1", headers, body))

    threads = [threading.Thread(target=send) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(codes) == [204] * 10
    order, user, ledger, refunds, drift = _state(stack, no)
    assert ledger == [("membership_bonus", 10), ("refund", -10)] and drift == []
    assert order.status == "refunded" and order.refunded_fen == 2990
    assert abs(user.member_expires_at - utcnow()) < timedelta(minutes=1)   # the 30 days taken once


def test_a_refund_racing_spends_never_goes_negative_nor_loses_a_ledger_row(mysql_member_stack):
    stack = mysql_member_stack
    pay = stack.sandbox.pay
    pay.refund_outcome = None
    no = _paid(stack, "oRACEREF", "credits", "20")
    user_id = _state(stack, no)[1].id
    assert _refund(stack, no).exit_code == 0
    pay.settle_refund(no + "R1", "SUCCESS")
    headers, body = pay.build_refund_notification(no + "R1")
    barrier, spent, codes = threading.Barrier(16), [], []

    def spend(i):
        barrier.wait()
        with stack.in_app():
            try:
                CreditService().spend(user_id, 2, "edit_spend", f"task:race{i}")
                spent.append(2)
            except Exception as exc:  # noqa: BLE001  402 when the refund got there first
                assert getattr(exc, "code", "") == "insufficient_credits"

    def notify():
        barrier.wait()
        codes.append(pay.deliver_refund(no + "R1", headers, body))

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(15)]
    threads.append(threading.Thread(target=notify))
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert codes == [204]
    order, user, ledger, refunds, drift = _state(stack, no)
    assert drift == [] and user.credits_balance >= 0
    assert len([r for r, _ in ledger if r == "edit_spend"]) == len(spent)
    taken, short = refunds[0].credits_taken, refunds[0].credits_shortfall
    assert taken + short == 20
    assert sum(spent) + taken + user.credits_balance == 20


def test_a_merchant_portal_refund_is_created_from_its_notification(mysql_member_stack):
    stack = mysql_member_stack
    no = _paid(stack, "oPORTAL", "credits", "50")
    portal = stack.sandbox.pay.portal_refund(no, 1950)
    assert stack.sandbox.pay.notified[-1] == (portal["out_refund_no"], 204)
    order, user, ledger, refunds, drift = _state(stack, no)
    assert order.status == "partially_refunded" and ledger == [("purchase", 50), ("refund", -25)]
    assert [(r.out_refund_no, r.source, r.operator, r.status, r.refund_id) for r in refunds] == [
        (portal["out_refund_no"], "merchant", None, "success", portal["refund_id"])]
    # repeated by WeChat: nothing more
    headers, body = stack.sandbox.pay.build_refund_notification(portal["out_refund_no"])
    assert stack.sandbox.pay.deliver_refund(portal["out_refund_no"], headers, body) == 204
    assert _state(stack, no)[2] == ledger


def test_abnormal_refund_is_surfaced_then_settles_and_a_closed_one_keeps_the_order_paid(mysql_member_stack):
    stack = mysql_member_stack
    pay = stack.sandbox.pay
    pay.refund_outcome = "ABNORMAL"
    abnormal_before = metrics.REFUNDS.labels("abnormal")._value.get()
    no = _paid(stack, "oABNORMAL")
    assert _refund(stack, no).exit_code == 0
    deadline = time.monotonic() + 10
    while not pay.notified and time.monotonic() < deadline:
        time.sleep(0.1)
    listed = stack.cli("orders", "list", "--status", "refunding", "--format", "json")
    assert [o["out_trade_no"] for o in json.loads(listed.output)] == [no]
    with stack.in_app():
        from xintu.admin.auth import create_admin
        create_admin("watcher", "w" * 12, "viewer")
    token = requests.post(stack.url + "/api/v1/admin/login", timeout=10,
                          json={"username": "watcher", "password": "w" * 12}).json()["token"]
    overview = requests.get(stack.url + "/api/v1/admin/overview", timeout=30,
                            headers={"Authorization": "Bearer " + token}).json()
    assert [r["out_refund_no"] for r in overview["refunds"]["abnormal"]] == [no + "R1"]
    assert metrics.REFUNDS.labels("abnormal")._value.get() - abnormal_before == 1
    assert _state(stack, no)[2] == [("purchase", 10)]         # nothing taken back yet
    assert pay.notify_refund(no + "R1", "SUCCESS") == [204]   # the operator fixed it in the portal
    assert _state(stack, no)[0].status == "refunded" and _state(stack, no)[2][-1] == ("refund", -10)

    pay.refund_outcome = "CLOSED"
    other = _paid(stack, "oCLOSEDREF")
    assert _refund(stack, other).exit_code == 0
    wait_for_order(stack, other, "paid")
    order, _, ledger, refunds, _ = _state(stack, other)
    assert ledger == [("purchase", 10)] and refunds[0].status == "closed" and order.refunded_fen == 0


@pytest.mark.parametrize("setup,code", [
    ("merchant_broke", "refund_not_enough"),
    ("order_unknown_at_wechat", "refund_resource_not_exists"),
])
def test_wechat_refusals_are_one_line_and_leave_the_order_paid(mysql_member_stack, setup, code):
    stack = mysql_member_stack
    pay = stack.sandbox.pay
    no = _paid(stack, "oREFUSED")
    if setup == "merchant_broke":
        pay.merchant_balance_fen = 100
    else:
        pay.orders.pop(no)
    result = _refund(stack, no)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert ("NOT_ENOUGH" if setup == "merchant_broke" else "RESOURCE_NOT_EXISTS") in result.output
    order, _, ledger, refunds, _ = _state(stack, no)
    assert order.status == "paid" and ledger == [("purchase", 10)]
    assert [r.status for r in refunds] == ["failed"]
    if setup == "merchant_broke":
        pay.merchant_balance_fen = 10**6
        assert _refund(stack, no).exit_code == 0               # a new out_refund_no once topped up
        wait_for_order(stack, no, "refunded")
        assert [r.out_refund_no for r in _state(stack, no)[3]] == [no + "R1", no + "R2"]


def test_a_refund_that_never_reached_wechat_is_sent_again_with_the_same_number(mysql_member_stack):
    stack = mysql_member_stack
    no = _paid(stack, "oRETRY")
    gateway = stack.app.config["WECHATPAY_BASE_URL"]
    stack.app.config["WECHATPAY_BASE_URL"] = "http://127.0.0.1:9"
    failed = _refund(stack, no)
    assert failed.exit_code == 1 and "可重试" in failed.output
    assert _state(stack, no)[0].status == "refunding"
    stack.app.config["WECHATPAY_BASE_URL"] = gateway
    assert json.loads(_refund(stack, no).output)["out_refund_no"] == no + "R1"
    wait_for_order(stack, no, "refunded")
    assert list(stack.sandbox.pay.refunds) == [no + "R1"]


def test_admin_refund_needs_an_operator_and_a_reason_and_records_the_name(mysql_member_stack):
    stack = mysql_member_stack
    no = _paid(stack, "oADMINREF")
    with stack.in_app():
        from xintu.admin.auth import create_admin
        create_admin("viewer1", "v" * 12, "viewer")
        create_admin("ops-li", "o" * 12, "operator")

    def login(name, password):
        resp = requests.post(stack.url + "/api/v1/admin/login", json={"username": name, "password": password},
                             timeout=10)
        return {"Authorization": "Bearer " + resp.json()["token"]}

    url = stack.url + f"/api/v1/admin/orders/{no}/refund"
    viewer, ops = login("viewer1", "v" * 12), login("ops-li", "o" * 12)
    denied = requests.post(url, json={"reason": "x"}, headers=viewer, timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "operator_required"
    no_reason = requests.post(url, json={"amount_fen": 100}, headers=ops, timeout=10)
    assert no_reason.status_code == 422 and no_reason.json()["error"]["code"] == "validation_error"
    done = requests.post(url, json={"reason": "客服同意退款"}, headers=ops, timeout=10)
    assert done.status_code == 201, done.text
    assert done.json()["operator"] == "ops-li" and done.json()["reason"] == "客服同意退款"
    wait_for_order(stack, no, "refunded")
    again = requests.post(url, json={"reason": "again"}, headers=ops, timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "order_refunded"
    missing = requests.post(stack.url + "/api/v1/admin/orders/XT0/refund", json={"reason": "r"}, headers=ops,
                            timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "order_not_found"
    listed = requests.get(stack.url + "/api/v1/admin/orders?status=refunded", headers=ops, timeout=10).json()
    assert [(o["out_trade_no"], o["refunded_fen"]) for o in listed["items"]] == [(no, 990)]


def test_paid_after_close_is_granted_within_grace_else_refunded_never_409(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oLATE")
    honoured, late = stack.buy(http, "credits", "10"), stack.buy(http, "credits", "20")
    with stack.in_app():   # our sweep closed both locally while the payers were paying
        Order.update(status="closed", closed_at=utcnow()).execute()
    assert stack.sandbox.pay.simulate_payment(stack.prepay_id(honoured)) == [204]
    assert _state(stack, honoured["out_trade_no"])[0].status == "paid"
    assert _state(stack, honoured["out_trade_no"])[2] == [("purchase", 10)]

    with stack.in_app():   # this one expired long ago (beyond time_expire + grace)
        Order.update(time_expire=utcnow() - timedelta(hours=2)).where(
            Order.out_trade_no == late["out_trade_no"]).execute()
    stack.sandbox.pay.orders[late["out_trade_no"]]["time_expire"] = None   # WeChat let it through anyway
    assert stack.sandbox.pay.simulate_payment(stack.prepay_id(late), repeat=2) == [204, 204]
    order = wait_for_order(stack, late["out_trade_no"], "refunded")
    _, _, ledger, refunds, drift = _state(stack, late["out_trade_no"])
    assert ledger == [("purchase", 10)] and drift == []          # nothing granted for the late one
    assert [(r.source, r.amount_fen, r.status) for r in refunds] == [("auto", 1800, "success")]
    assert order.transaction_id and stack.sandbox.pay.refunds[late["out_trade_no"] + "R1"]["refund"] == 1800


def test_orders_store_their_grants_and_send_time_expire(mysql_member_stack):
    stack = mysql_member_stack
    http = stack.h5_login("oPRICE")
    order = stack.buy(http, "member")
    sent = stack.sandbox.pay.orders[order["out_trade_no"]]["time_expire"]
    assert sent.endswith("+08:00")
    with stack.in_app():
        row = Order.get(Order.out_trade_no == order["out_trade_no"])
        assert (row.grant_days, row.grant_credits) == (30, 10)
        assert row.time_expire - row.created_at == timedelta(minutes=30)
    stack.app.config.update(PRICE_MEMBER_DAYS=1, PRICE_MEMBER_BONUS=99)   # the price table changes meanwhile
    stack.sandbox.pay.simulate_payment(stack.prepay_id(order))
    _, user, ledger, _, _ = _state(stack, order["out_trade_no"])
    assert ledger == [("membership_bonus", 10)]
    assert abs((user.member_expires_at - utcnow()) - timedelta(days=30)) < timedelta(minutes=1)


def test_a_failed_prepay_is_closed_at_wechat_too(mysql_member_stack):
    stack = mysql_member_stack
    stack.sandbox.pay.fail_prepay = True
    http = stack.h5_login("oFAILPREPAY")
    resp = http.post(stack.url + "/api/v1/orders", json={"kind": "member"}, timeout=30)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "pay_prepay_failed"
    with stack.in_app():
        [order] = Order.select()
    assert order.status == "closed"
    assert stack.sandbox.pay.orders[order.out_trade_no]["state"] == "CLOSED"


def test_concurrent_refund_requests_for_one_order_start_one_refund(mysql_member_stack):
    from xintu.member.refunds import RefundService

    stack = mysql_member_stack
    stack.sandbox.pay.refund_outcome = None
    no = _paid(stack, "oTWOOPS", "credits", "20")
    barrier, outcomes = threading.Barrier(6), []

    def start():
        barrier.wait()
        with stack.in_app():
            try:
                outcomes.append(RefundService(stack.app.config).start(no, "并发", operator="x").out_refund_no)
            except Exception as exc:  # noqa: BLE001
                outcomes.append(getattr(exc, "code", repr(exc)))

    threads = [threading.Thread(target=start) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    # A request that finds R1 not yet acknowledged asks again for R1 itself: WeChat sees one refund.
    assert set(outcomes) <= {no + "R1", "refund_in_progress"} and no + "R1" in outcomes
    assert list(stack.sandbox.pay.refunds) == [no + "R1"]
    assert stack.sandbox.pay.notify_refund(no + "R1") == [204]
    order, _, ledger, refunds, _ = _state(stack, no)
    assert order.refunded_fen == 1800 and ledger == [("purchase", 20), ("refund", -20)] and len(refunds) == 1


def test_m0010_upgrades_an_older_orders_table_and_keeps_what_orders_granted(mysql_app):
    from xintu import db, migrations

    with mysql_app.app_context():
        user = User.create(openid="o-old")
        member = Order.create(out_trade_no="XTOLDMEMBER", user=user.id, kind="member", package="member",
                              quantity=30, amount_fen=2990, status="paid")
        Order.create(out_trade_no="XTOLDCREDITS", user=user.id, kind="credits", package="20", quantity=20,
                     amount_fen=1800, status="paid")
        CreditLedger.create(user=user.id, delta=7, reason="membership_bonus", ref=member.out_trade_no,
                            balance_after=7)
        sql = db.primary.execute_sql
        sql("DROP TABLE refunds")
        for column in ("time_expire", "grant_days", "grant_credits", "refunded_fen"):
            sql(f"ALTER TABLE orders DROP COLUMN {column}")
        sql("ALTER TABLE orders MODIFY status VARCHAR(16) NOT NULL")
        sql("DELETE FROM schema_migrations WHERE version = 10")
        assert migrations.migrate(db.primary.obj) == [(10, "order_refunds")]
        grants = {o.out_trade_no: (o.grant_days, o.grant_credits, o.refunded_fen) for o in Order.select()}
        assert grants == {"XTOLDMEMBER": (30, 7, 0), "XTOLDCREDITS": (0, 20, 0)}
        Order.update(status="partially_refunded").where(Order.id == member.id).execute()
        assert Order.get_by_id(member.id).status == "partially_refunded"
        assert Refund.select().count() == 0


def test_the_sweep_resends_an_unsent_refund_and_queries_an_unsettled_one(mysql_member_stack):
    stack = mysql_member_stack
    pay = stack.sandbox.pay
    unsent, quiet = _paid(stack, "oSWEEPREF"), _paid(stack, "oQUIET")
    gateway = stack.app.config["WECHATPAY_BASE_URL"]
    stack.app.config["WECHATPAY_BASE_URL"] = "http://127.0.0.1:9"
    assert _refund(stack, unsent).exit_code == 1                   # never reached WeChat
    stack.app.config["WECHATPAY_BASE_URL"] = gateway
    pay.refund_outcome = None                                      # reached it; the notification gets lost
    assert _refund(stack, quiet).exit_code == 0
    pay.settle_refund(quiet + "R1", "SUCCESS")
    pay.refund_outcome = "SUCCESS"
    with stack.in_app():
        Refund.update(updated_at=utcnow() - timedelta(minutes=5)).execute()
    swept = stack.cli("orders", "sweep", "--format", "json")
    assert swept.exit_code == 0, swept.output
    counts = json.loads(swept.output)
    assert (counts["refunds_sent"], counts["refunds_settled"], counts["refunds_failed"]) == (1, 1, 0)
    wait_for_order(stack, unsent, "refunded")
    assert _state(stack, quiet)[0].status == "refunded" and _state(stack, quiet)[2][-1] == ("refund", -10)
