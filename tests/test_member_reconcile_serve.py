"""`xintu orders reconcile` against a running `xintu serve` (gunicorn + its sandbox), from a second shell:
a day whose bill agrees exits 0; once the sandbox's bill is made to disagree it exits 1 and says how."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from xintu.ops.procs import free_port
from xintu.sandbox.wechat_pay import CST

XINTU = str(Path(sys.executable).parent / "xintu")


@pytest.fixture
def served(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XINTU_")}
    env.update(XINTU_INSTANCE_PATH=str(tmp_path / "instance"), XINTU_INTERNAL_SHARED_SECRET="s" * 40)
    port = free_port()
    server = subprocess.Popen([XINTU, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200 and \
                        (tmp_path / "instance" / "sandbox.json").exists():
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
                assert result.returncode == 0, result.stderr
            return result

        yield xintu
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def test_reconcile_today_agrees_then_reports_a_bill_made_to_disagree(served):
    today = datetime.now(CST).date().isoformat()
    order = json.loads(served("sandbox", "buy", "o_reconcile", "credits:10", "--format", "json").stdout)
    assert order["status"] == "paid" and order["amount_fen"] == 990

    agreed = served("orders", "reconcile", "--date", today, "--format", "json")
    report = json.loads(agreed.stdout)
    assert report["matched"] and report["bill"]["payments"] == 1 and report["ours"]["payment_fen"] == 990

    served("sandbox", "bill", "--amount", f"{order['out_trade_no']}=1")
    changed = served("orders", "reconcile", "--date", today, "--format", "json", check=False)
    assert changed.returncode == 1, changed.stderr
    found = [(p["problem"], p["out_trade_no"], p["bill_fen"], p["ours_fen"])
             for p in json.loads(changed.stdout)["problems"]]
    assert found == [("amount_mismatch", order["out_trade_no"], 1, 990)]

    served("sandbox", "bill", "--reset", "--drop", order["out_trade_no"], "--stranger", "1800")
    table = served("orders", "reconcile", "--date", today, check=False)
    assert table.returncode == 1
    assert "2 problems" in table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["problem", "kind", "out_trade_no", "out_refund_no", "transaction_id",
                               "bill_fen", "ours_fen", "detail"]
    assert sorted(r.split()[0] for r in rows[2:]) == ["here_not_there", "there_not_here"]

    served("sandbox", "bill", "--reset")
    assert served("orders", "reconcile", "--date", today, check=False).returncode == 0
