"""Reconciliation on real MariaDB against the sandbox WeChat Pay's trade bills (real SDK, signed answers)."""
import gzip
import hashlib
import json
from datetime import datetime

import pytest

from tests.member_fixtures import wait_for_order
from xintu.member.reconcile import BillError, parse_bill, reconcile
from xintu.models import Order
from xintu.sandbox.wechat_pay import CST, render_bill

pytestmark = pytest.mark.mariadb


def today():
    return datetime.now(CST).date()


def paid_orders(stack, openid, *packages):
    http = stack.h5_login(openid)
    orders = []
    for package in packages:
        order = stack.buy(http, "credits", package)
        assert stack.sandbox.pay.simulate_payment(stack.prepay_id(order)) == [204]
        orders.append(order)
    return orders


def run(stack, day=None):
    with stack.in_app():
        return reconcile(stack.app.config, day or today())


def problems(report):
    return sorted((p["problem"], p["kind"], p["out_trade_no"], p["bill_fen"], p["ours_fen"])
                  for p in report["problems"])


def test_a_day_whose_bill_agrees_has_no_problems(mysql_member_stack):
    a, b = paid_orders(mysql_member_stack, "oREC1", "10", "20")
    unpaid = mysql_member_stack.buy(mysql_member_stack.h5_login("oREC2"), "credits", "50")
    report = run(mysql_member_stack)
    assert report["matched"] and report["problems"] == []
    assert report["bill"] == {"lines": 2, "found": True, "payments": 2, "payment_fen": 990 + 1800,
                              "refunds": 0, "refund_fen": 0}
    assert report["ours"] == {"payments": 2, "payment_fen": 2790}
    assert unpaid["out_trade_no"] not in {a["out_trade_no"], b["out_trade_no"]}


def test_every_kind_of_disagreement_is_reported(mysql_member_stack):
    stack = mysql_member_stack
    dropped, changed, fine = paid_orders(stack, "oREC3", "10", "20", "50")
    closed = stack.buy(stack.h5_login("oREC4"), "credits", "10")
    pay = stack.sandbox.pay
    pay.change_bill(drop=dropped["out_trade_no"])
    pay.change_bill(amount=(changed["out_trade_no"], 1))
    pay.change_bill(stranger=990)
    pay.change_bill(refund=(fine["out_trade_no"], 500))
    # paid there, but closed here (e.g. the notification never arrived and the sweep closed it)
    pay.pay(stack.prepay_id(closed))
    with stack.in_app():
        Order.update(status="closed").where(Order.out_trade_no == closed["out_trade_no"]).execute()
    stranger = pay.change_bill()["strangers"][0]
    report = run(stack)
    assert not report["matched"]
    assert problems(report) == sorted([
        ("here_not_there", "payment", dropped["out_trade_no"], None, 990),
        ("amount_mismatch", "payment", changed["out_trade_no"], 1, 1800),
        ("there_not_here", "payment", stranger, 990, None),
        ("there_not_here", "payment", closed["out_trade_no"], 990, 990),
        # a refund line for a refund we never made (nor heard of)
        ("there_not_here", "refund", fine["out_trade_no"], 500, None),
    ])
    refund = next(p for p in report["problems"] if p["kind"] == "refund")
    assert refund["out_refund_no"].startswith("RF") and refund["detail"] == "unknown here"
    assert next(p for p in report["problems"] if p["out_trade_no"] == closed["out_trade_no"])["detail"] == \
        "here: closed"


def test_a_day_without_a_bill_flags_what_we_paid(mysql_member_stack):
    (order,) = paid_orders(mysql_member_stack, "oREC5", "10")
    mysql_member_stack.sandbox.pay.change_bill(drop=order["out_trade_no"])   # WeChat: NO_STATEMENT_EXIST
    report = run(mysql_member_stack)
    assert report["bill"]["found"] is False
    assert problems(report) == [("here_not_there", "payment", order["out_trade_no"], None, 990)]


def _rewrite(pay, change):
    """Route the bill endpoints through ``change(resp)`` (a WeChat Pay that misbehaves one way)."""
    def wrap(handler):
        return lambda req: change(handler(req))
    pay.routes = [(m, p, wrap(h) if p.pattern.startswith("/v3/bill") else h) for m, p, h in pay.routes]


def test_a_bill_whose_sha1_does_not_match_is_refused(mysql_member_stack):
    paid_orders(mysql_member_stack, "oREC6", "10")
    pay = mysql_member_stack.sandbox.pay

    def lying(resp):          # WeChat's answer says one digest, the file has another
        if resp.headers.get("Content-Type") == "application/octet-stream":
            resp.body = gzip.compress(gzip.decompress(resp.body) + b"\r\n")
        return resp

    _rewrite(pay, lying)
    with pytest.raises(BillError) as exc:
        run(mysql_member_stack)
    assert exc.value.code == "bill_hash_mismatch"


def test_a_download_url_off_the_gateway_is_never_followed(mysql_member_stack):
    paid_orders(mysql_member_stack, "oREC8", "10")
    pay = mysql_member_stack.sandbox.pay

    def elsewhere(resp):
        info = json.loads(resp.body)
        info["download_url"] = "http://127.0.0.2:9/v3/billdownload/file?token=x"
        return pay._signed(200, info)

    _rewrite(pay, elsewhere)
    with pytest.raises(BillError) as exc:
        run(mysql_member_stack)
    assert exc.value.code == "bill_bad_url"


def test_a_bill_that_unzips_beyond_the_limit_is_refused(mysql_member_stack):
    paid_orders(mysql_member_stack, "oREC9", "10")
    pay = mysql_member_stack.sandbox.pay
    with mysql_member_stack.in_app():
        mysql_member_stack.app.config["RECONCILE_MAX_BILL_BYTES"] = 1000
        bomb = gzip.compress(b"0" * 10_000_000)

        def inflate(resp):
            if resp.headers.get("Content-Type") == "application/octet-stream":
                resp.body = bomb
            return resp

        _rewrite(pay, inflate)
        with pytest.raises(BillError) as exc:
            reconcile(mysql_member_stack.app.config, today())
    assert exc.value.code == "bill_too_large"


def test_cli_prints_json_csv_and_exits_1_on_a_difference(mysql_member_stack):
    stack = mysql_member_stack
    (order,) = paid_orders(stack, "oREC7", "20")
    ok = stack.cli("orders", "reconcile", "--date", today().isoformat(), "--format", "json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["matched"] is True
    stack.sandbox.pay.change_bill(amount=(order["out_trade_no"], 1799))
    bad = stack.cli("orders", "reconcile", "--date", today().isoformat(), "--format", "csv")
    assert bad.exit_code == 1
    lines = bad.stdout.strip().splitlines()
    assert lines[0] == "problem,kind,out_trade_no,out_refund_no,transaction_id,bill_fen,ours_fen,detail"
    assert lines[1].startswith(f"amount_mismatch,payment,{order['out_trade_no']},,4200")
    assert lines[1].endswith(",1799,1800,here: paid")


def test_a_future_day_is_refused_before_asking_wechat_pay(mysql_member_stack):
    from datetime import timedelta

    result = mysql_member_stack.cli("orders", "reconcile", "--date", (today() + timedelta(days=2)).isoformat())
    assert result.exit_code == 1 and "还没有账单" in result.output


# -- the parser on its own (no servers) -------------------------------------------------------------
def _row(no, fen, state="SUCCESS", refund=0):
    return {"交易时间": "2026-11-30 12:00:00", "微信订单号": "4200" + no, "商户订单号": no, "交易状态": state,
            "settled": fen, "refund": refund, "total": fen, "商户退款单号": "RF" + no if refund else "0"}


def test_parser_reads_wechat_format_and_checks_the_summary():
    text = render_bill([_row("XT1", 990), _row("XT2", 1800), _row("XT1", 0, "REFUND", 500)])
    assert text.splitlines()[1].startswith("`2026-11-30 12:00:00,`")
    bill = parse_bill("\ufeff" + text)
    assert [(ln.kind, ln.out_trade_no, ln.amount_fen, ln.out_refund_no) for ln in bill.lines] == [
        ("payment", "XT1", 990, ""), ("payment", "XT2", 1800, ""), ("refund", "XT1", 500, "RFXT1")]
    assert bill.summary == {"count": 3, "settled_fen": 2790, "refund_fen": 500}
    assert hashlib.sha1(text.encode()).hexdigest()   # what the sandbox publishes as hash_value


@pytest.mark.parametrize("mangle", [
    lambda t: t.replace("`9.90", "`9.901", 1),                       # more than fen
    lambda t: t.replace("`9.90", "`abc", 1),                         # not a number
    lambda t: t.replace("`2,`27.90", "`3,`27.90"),                   # summary count differs
    lambda t: t.replace("`2,`27.90", "`2,`28.90"),                   # summary total differs
    lambda t: "\r\n".join(t.splitlines()[:-2]),                      # no summary
    lambda t: t.replace("商户订单号", "订单号", 1),                    # a column we need is missing
    lambda t: "",
])
def test_parser_refuses_malformed_bills(mangle):
    text = render_bill([_row("XT1", 990), _row("XT2", 1800)])
    with pytest.raises(BillError) as exc:
        parse_bill(mangle(text))
    assert exc.value.code == "bill_malformed" and exc.value.status == 502


def test_a_refund_made_that_day_is_a_bill_line_and_agrees(mysql_member_stack):
    """WeChat's ALL bill carries a REFUND line for each refund that succeeded that day; the sandbox's does
    too, so a day with a refund reconciles clean, and loses the agreement when that line goes missing."""
    stack = mysql_member_stack
    (order,) = paid_orders(stack, "oREC9", "10")
    no = order["out_trade_no"]
    started = stack.cli("orders", "refund", no, "--reason", "用户申请", "--operator", "ops1", "--format", "json")
    assert started.exit_code == 0, started.output
    refund_no = json.loads(started.output)["out_refund_no"]
    wait_for_order(stack, no, "refunded")
    report = run(stack)
    assert report["matched"] and report["problems"] == [], report["problems"]
    assert report["bill"]["refunds"] == 1 and report["bill"]["refund_fen"] == 990
    stack.sandbox.pay.change_bill(drop=refund_no)
    missing = run(stack)
    assert [(p["problem"], p["kind"], p["out_refund_no"]) for p in missing["problems"]] == [
        ("here_not_there", "refund", refund_no)]
