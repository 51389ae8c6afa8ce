"""A refund end to end against `xintu serve` (gunicorn + its sandbox), only through the CLI and the API:
a user buys credits in the sandbox, an operator refunds the order, WeChat's notification reaches the
server, the balance is back where it was, the audit is clean and a second refund is refused in one line."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

XINTU = str(Path(sys.executable).with_name("xintu"))


def test_refund_through_the_cli_against_xintu_serve(served):
    xintu = served
    before = json.loads(xintu("sandbox", "buy", "o_refund_demo", "credits:10", "--format", "json").stdout)
    no = before["out_trade_no"]
    assert before["status"] == "paid"

    def balance():
        return json.loads(xintu("credits", "show", "o_refund_demo", "--format", "json").stdout)["balance"]

    paid_balance = balance()
    assert paid_balance == 10

    refund = json.loads(xintu("orders", "refund", no, "--reason", "用户申请退款", "--format", "json").stdout)
    assert refund["out_refund_no"] == no + "R1" and refund["amount_fen"] == 990
    deadline, status = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        rows = json.loads(xintu("orders", "list", "--format", "json").stdout)
        status = next(o["status"] for o in rows if o["out_trade_no"] == no)
        if status == "refunded":
            break
        time.sleep(0.3)
    assert status == "refunded"
    assert balance() == paid_balance - 10 == 0          # back where it was before the purchase
    assert xintu("credits", "audit").returncode == 0
    again = xintu("orders", "refund", no, "--reason", "再退一次", check=False)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [f"Error: 订单 {no} 已全额退款"]
