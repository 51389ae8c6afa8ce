"""`xintu orders reconcile` against a running `xintu serve` (gunicorn + its sandbox), from a second shell:
a day whose bill agrees exits 0; once the sandbox's bill is made to disagree it exits 1 and says how."""
from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from xintu.sandbox.wechat_pay import CST

XINTU = str(Path(sys.executable).parent / "xintu")


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
