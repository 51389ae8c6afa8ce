"""/metrics under real gunicorn with 2 workers in prometheus_client multiprocess mode."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from xintu.ops.procs import stop_process, wait_port

pytestmark = pytest.mark.slow

def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sample(text: str, name: str, **labels) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if match and match.group(1) == name and ",".join(sorted(match.group(2).split(","))) == want:
            return float(match.group(3))
    return None


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn with 2 workers on the config `xintu conf render` produces (its multiprocess hooks)."""
    from xintu.ops.loopback import loopback_settings
    from xintu.ops.render import render_gunicorn

    settings = loopback_settings(tmp_path / "deploy", gunicorn_workers=2)
    prom = Path(settings["paths"]["run"]) / "prometheus"
    prom.mkdir(parents=True, exist_ok=True)
    (prom / "stale_counter_1.db").write_bytes(b"left over from a previous run")
    env = {**os.environ, "XINTU_INSTANCE_PATH": str(tmp_path / "instance"), "XINTU_ENV": "testing",
           "XINTU_SANDBOX": "0", "XINTU_SECRET_KEY": "t" * 40}
    subprocess.run([sys.executable, "-m", "xintu_cli.main", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=120)
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(render_gunicorn(settings))
    port = settings["gunicorn"]["port"]
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(conf), "xintu:create_app()"],
                                env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(port, timeout=60)
        yield {"base": f"http://127.0.0.1:{port}", "pid": proc.pid, "prom": prom}
    finally:
        stop_process(proc)


def test_counts_from_all_workers_survive_worker_death(gunicorn):
    base = gunicorn["base"]
    assert not (gunicorn["prom"] / "stale_counter_1.db").exists()   # on_starting emptied the folder
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: _get(base + "/healthz")[0], range(30)))
        codes += list(pool.map(lambda _: _get(base + "/api/v1/releases/latest?platform=linux")[0], range(5)))
    assert codes == [200] * 30 + [422] * 5
    assert _get(base + "/no/such/page/123")[0] == 404

    # kill both workers: gunicorn starts new ones; the dead workers' counts must still be reported
    old = _workers(gunicorn["pid"])
    assert len(old) == 2
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _workers(gunicorn["pid"])
        if len(now) == 2 and not set(now) & set(old) and _get(base + "/healthz")[0] == 200:
            break
        time.sleep(0.2)
    else:
        pytest.fail("gunicorn did not replace its workers")

    for _ in range(3):   # whichever worker answers, the totals are the same
        status, text = _get(base + "/metrics")
        assert status == 200
        assert _sample(text, "xintu_http_requests_total", endpoint="/healthz", method="GET", status="200") == 31
        assert _sample(text, "xintu_http_requests_total", endpoint="/api/v1/releases/latest", method="GET",
                       status="422") == 5
        assert _sample(text, "xintu_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
        assert _sample(text, "xintu_http_request_duration_seconds_count", endpoint="/healthz") == 31
        # the scrape itself is not counted
        assert 'endpoint="/metrics"' not in text


def test_metrics_only_for_allowed_addresses(app):
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    outsider = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert outsider.status_code == 404 and outsider.get_json()["error"]["code"] == "not_found"


def test_helpers_feed_the_shared_metrics(app):
    from prometheus_client import REGISTRY

    from xintu import metrics

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0

    before = (value("xintu_llm_errors_total", kind="classify", reason="timeout"),
              value("xintu_credits_spent_total"), value("xintu_credits_refunded_total"),
              value("xintu_credits_granted_total", reason="signup_bonus"))
    metrics.observe_llm("classify", 2.5, error="timeout")
    metrics.count_credits(-4, "edit_spend")
    metrics.count_credits(1, "edit_refund")
    metrics.count_credits(10, "signup_bonus")
    after = (value("xintu_llm_errors_total", kind="classify", reason="timeout"),
             value("xintu_credits_spent_total"), value("xintu_credits_refunded_total"),
             value("xintu_credits_granted_total", reason="signup_bonus"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 4, 1, 10]


def test_credit_movements_feed_the_credit_metrics(app):
    from prometheus_client import REGISTRY

    from xintu.member.credits import CreditService
    from xintu.models import User

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0

    with app.app_context():
        user = User.create(openid="o-metrics")
        before = (value("xintu_credits_granted_total", reason="purchase"), value("xintu_credits_spent_total"),
                  value("xintu_credits_refunded_total"))
        CreditService().grant(user.id, 10, "purchase", "T-m1")
        CreditService().grant(user.id, 10, "purchase", "T-m1")   # replay: no movement, no count
        CreditService().spend(user.id, 3, "edit_spend", "task:1")
        CreditService().refund(user.id, 1, "edit_refund", "task:1")
    after = (value("xintu_credits_granted_total", reason="purchase"), value("xintu_credits_spent_total"),
             value("xintu_credits_refunded_total"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [10, 3, 1]
