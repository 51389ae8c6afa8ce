"""A refund end to end against `xintu serve` (gunicorn + its sandbox), only through the CLI and the API:
a user buys credits in the sandbox, an operator refunds the order, WeChat's notification reaches the
server, the balance is back where it was, the audit is clean and a second refund is refused in one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from xintu.ops.procs import free_port

XINTU = str(Path(sys.executable).with_name("xintu"))


@pytest.fixture
def served(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XINTU_")}
    env.update(XINTU_INSTANCE_PATH=str(tmp_path / "instance"), XINTU_INTERNAL_SHARED_SECRET="s" * 40)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([XINTU, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if (requests.get(base + "/healthz", timeout=2).status_code == 200
                        and (tmp_path / "instance" / "sandbox.json").exists()):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("xintu serve did not come up")

        def xintu(*args, check=True):
            result = subprocess.run([XINTU, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=120)
            if check:
                assert result.returncode == 0, f"xintu {' '.join(args)}: {result.stderr[-1500:]}"
            return result
        yield xintu
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


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
