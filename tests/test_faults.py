"""Faults on the real loopback stack: nginx (TLS) → gunicorn (2 sync workers) → MariaDB primary + replica,
lighttpd in front of the WeChat Pay notify path, the WeChat Pay and DashScope fakes reached by the real
SDKs. Everything is on 127.0.0.1; every wait is bounded; the module starts a MariaDB pair of its own, so
stopping or locking its servers never disturbs the session's ``mariadb``.

Scenarios: a gunicorn worker killed with SIGKILL during 200 concurrent credit spends and pay
notifications; the primary stopped for ~5 s under load; the replica stopped and lagging (SQL thread
stopped, FLUSH TABLES WITH READ LOCK); Qwen-VL timing out, failing and answering garbage under load.
Each prints one ``FAULTS …`` line with its figures (answers by status, drift, recovery times).
"""
from __future__ import annotations

import io
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest
import requests
from PIL import Image

from tests.factories import make_bound_user
from tests.mariadb_pair import start_pair
from xintu.ops.stack import LoopbackStack
from xintu.sandbox import wechat
from xintu.sandbox.dashscope_vl import FakeDashScope

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

SECRET = "faults-shared-secret-" + secrets.token_hex(8)
RETRYABLE = {409, 429, 502, 503}
RESET = "connection reset"
CHECK_INTERVAL = 1.0


# --- the stack ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fault_db(tmp_path_factory):
    """A primary + replica of this module's own: the tests below stop and lock them."""
    with start_pair(tmp_path_factory.mktemp("fault-db")) as pair:
        yield pair


@pytest.fixture(scope="module")
def fault_stack(fault_db, tmp_path_factory, classify_model_dir):
    database = fault_db.create_database()
    base = tmp_path_factory.mktemp("fault-stack")
    stack = LoopbackStack(base, {}, secret=SECRET)
    # nginx's per-address request limit is not under test either: every client here is 127.0.0.1
    stack.settings["app"].update(api_rate_per_second=10000, api_burst=100000)
    llm = FakeDashScope().start()
    pay = wechat.start(stack.lighttpd_url)
    config = {
        "DATABASE_URL": fault_db.app_url(database), "REPLICA_URL": fault_db.ro_url(database),
        "CLASSIFY_MODEL_DIR": classify_model_dir, "DASHSCOPE_API_KEY": "sk-faults-" + secrets.token_hex(8),
        "DASHSCOPE_BASE_URL": llm.base_url, "CLASSIFY_LLM_TIMEOUT": 0.5, "CLASSIFY_LLM_RETRIES": 0,
        # a verdict on the replica lives 1 s per worker; lag beyond 2 s means "use the primary"
        "REPLICA_CHECK_INTERVAL": CHECK_INTERVAL, "REPLICA_MAX_LAG": 2,
        # the per-token limiter is not under test here: the load comes from few tokens
        "CLIENT_REQUESTS_PER_MINUTE": 0,
        "WECHATPAY_NOTIFY_URL": stack.lighttpd_url + "/wechat/pay/notify",
        **{k: v for k, v in pay.config.items() if k.startswith(("WECHAT_", "WECHATPAY_"))},
    }
    stack.app_env.update({"XINTU_" + k: str(v) for k, v in config.items() if v is not None})
    try:
        with stack:
            stack.database, stack.config, stack.llm, stack.pay = database, config, llm, pay.pay
            yield stack
    finally:
        pay.stop()
        llm.stop()


@pytest.fixture
def checker(fault_stack, tmp_path):
    """The app in this process on the stack's database, primary only: to set up data and check it."""
    from xintu import db
    from xintu.app import create_app

    config = {k: v for k, v in fault_stack.config.items() if k != "REPLICA_URL"}
    app = create_app({**config, "ENV": "testing", "SANDBOX": False, "INSTANCE_PATH": str(tmp_path / "i"),
                      "SECRET_KEY": "faults-" + "k" * 40})
    yield app
    db.close_all()
    if hasattr(db.primary.obj, "close_all"):
        db.primary.obj.close_all()


class _InApp:
    def __init__(self, app):
        self.ctx = app.app_context()

    def __enter__(self):
        self.ctx.push()

    def __exit__(self, *exc):
        from xintu import db
        db.close_all()
        self.ctx.pop()


def bound_users(app, n: int, credits: int) -> list[tuple[int, dict]]:
    """``n`` WeChat users holding ``credits`` (through a ledger row) with a bound client token each."""
    from xintu import db

    with _InApp(app), db.atomic():
        return [(user.id, headers) for user, headers in (make_bound_user(balance=credits) for _ in range(n))]


def photo(seed: int, size=(64, 48)) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([tuple(rng.randrange(256) for _ in "rgb") for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def call(method: str, url: str, **kw) -> tuple[object, dict | None]:
    """(status or RESET, JSON body or None): a connection dropped under the client is an answer too."""
    try:
        resp = requests.request(method, url, timeout=30, **kw)
    except requests.ConnectionError:
        return RESET, None
    try:
        body = resp.json()
    except ValueError:
        body = None
    return resp.status_code, body


def ok(status) -> bool:
    return status != RESET and 200 <= status < 300


def retryable(kind: str, status, body) -> bool:
    """An answer a client may retry (or a success): what every request under a fault must get."""
    if status == RESET or ok(status) or status in RETRYABLE:
        return True
    # lighttpd 1.4 answers a request whose backend died mid-way with its own 500 page (not
    # configurable); WeChat Pay re-sends on any non-2xx. The app's own 500 is JSON: never allowed.
    return kind == "notify" and status == 500 and body is None


def spend(stack, headers, n: int):
    return call("POST", stack.nginx_url + "/api/v1/image-edit", verify=stack.cert, headers=headers,
                data={"prompt": f"故障测试 {n}"}, files={"images": ("p.jpg", photo(n), "image/jpeg")})


def notify(stack, headers, body):
    """A WeChat Pay notification through the web tier, as WeChat Pay reaches it."""
    return call("POST", stack.lighttpd_url + "/wechat/pay/notify", data=body.encode("utf-8"),
                headers={**headers, "Host": stack.host("official")}, verify=stack.cert)


def readyz(stack) -> tuple[int, dict]:
    """The operator's detailed view: straight to gunicorn from an allowed address (the public one, through
    nginx, says only ready / not ready)."""
    resp = requests.get(stack.gunicorn_url + "/readyz", timeout=10)
    return resp.status_code, resp.json()


def credits_audit(stack) -> subprocess.CompletedProcess:
    """`xintu credits audit` against the stack's database, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "xintu_cli.main", "credits", "audit", "--format", "json"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **stack.app_env})


def ledger_rows(app, reason: str, refs) -> Counter:
    from xintu.models import CreditLedger

    refs = list(refs)
    with _InApp(app):
        found = Counter()
        for start in range(0, len(refs), 200):
            found.update(e.ref for e in CreditLedger.select(CreditLedger.ref).where(
                CreditLedger.reason == reason, CreditLedger.ref.in_(refs[start:start + 200])))
    return found


def check_money(stack, app, user_ids, accepted_tasks) -> dict:
    """Zero drift, one ledger row per accepted spend, and no charge without its task (or task without one)."""
    from xintu.models import CreditLedger, EditTask

    audit = credits_audit(stack)
    drift = json.loads(audit.stdout or "null")
    assert audit.returncode == 0 and drift == [], audit.stdout + audit.stderr
    rows = ledger_rows(app, "edit_spend", accepted_tasks)
    assert all(rows[t] == 1 for t in accepted_tasks), {t: rows[t] for t in accepted_tasks if rows[t] != 1}
    with _InApp(app):
        charged = {e.ref: -e.delta for e in CreditLedger.select().where(
            CreditLedger.reason == "edit_spend", CreditLedger.user.in_(user_ids))}
        tasks = {t.task_id: t.credits_reserved for t in EditTask.select().where(EditTask.user.in_(user_ids))}
    assert charged == tasks   # a charge commits with its task or not at all
    return {"drift_users": len(drift), "spends_charged": len(charged), "accepted": len(accepted_tasks)}


def paid_orders(app, pay, user_ids) -> list[tuple[str, dict, str]]:
    """A credit-package order per user, created by OrderService (the real SDK against the fake) and paid
    at the fake: (out_trade_no, headers, body) of its TRANSACTION.SUCCESS notification."""
    from xintu.member.orders import OrderService
    from xintu.models import User

    notes = []
    with _InApp(app):
        for user_id in user_ids:
            order = OrderService(app.config).create(User.get_by_id(user_id), "credits", "10")
            prepay = order["pay"]["params"]["package"].removeprefix("prepay_id=")
            pay.pay(prepay)
            notes.append((order["out_trade_no"], *pay.build_notification(prepay)))
    return notes


def settle_orders(stack, app, notes) -> dict:
    """WeChat Pay re-sends until it sees a 2xx: after that, every order is paid and credited once."""
    from xintu.models import Order

    redelivered = Counter()
    for _, headers, body in notes:
        for _ in range(20):
            status, _ = notify(stack, headers, body)
            redelivered[status] += 1
            if ok(status):
                break
            time.sleep(0.25)
    numbers = [no for no, _, _ in notes]
    with _InApp(app):
        paid = {o.out_trade_no for o in Order.select().where(Order.out_trade_no.in_(numbers),
                                                             Order.status == "paid")}
    assert paid == set(numbers)
    purchases = ledger_rows(app, "purchase", numbers)
    assert all(purchases[no] == 1 for no in numbers), purchases
    return dict(redelivered)


def _wait(predicate, timeout: float, step: float = 0.1):
    """Seconds until ``predicate()`` held (polled every ``step``), or None after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(step)
    return round(time.monotonic() - started, 2)


def report(name: str, **figures) -> None:
    print(f"\nFAULTS {name}: " + json.dumps(figures, ensure_ascii=False, sort_keys=True, default=str))


# --- 1. a worker killed with SIGKILL mid-load ----------------------------------------------------

def test_sigkill_of_the_workers_during_spends_and_pay_notifies_loses_no_credit(fault_stack, checker):
    stack, pay = fault_stack, fault_stack.pay
    t0 = time.monotonic()
    users = bound_users(checker, 25, credits=8)
    notes = paid_orders(checker, pay, [u for u, _ in users])
    jobs = [("spend", headers, n) for n, (_, headers) in enumerate(users * 8)]
    jobs += [("notify", headers, body) for _, headers, body in notes for _ in range(2)]   # WeChat re-sends
    random.Random(13).shuffle(jobs)
    assert len([j for j in jobs if j[0] == "spend"]) == 200

    gunicorn = stack.server("gunicorn")
    workers_before = gunicorn.children()
    assert len(workers_before) == 2
    answered, go = Counter(), threading.Event()
    lock = threading.Lock()

    def run(job):
        kind, headers, arg = job
        go.wait(10)
        if kind == "spend":
            status, body = spend(stack, headers, arg)
        else:
            status, body = notify(stack, headers, arg)
        with lock:
            answered[kind] += 1
        return kind, status, body

    t1 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        go.set()
        killed_at = []
        for victim, after in zip(workers_before, (40, 140), strict=False):   # both original workers, one at a time
            deadline = time.monotonic() + 30
            while sum(answered.values()) < after and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(victim, signal.SIGKILL)
            killed_at.append(sum(answered.values()))
        results = [f.result(timeout=120) for f in futures]
    t2 = time.monotonic()

    by_kind = {kind: Counter(status for k, status, _ in results if k == kind) for kind in ("spend", "notify")}
    assert all(retryable(*r) for r in results), by_kind
    accepted = [body["task_id"] for kind, status, body in results if kind == "spend" and status == 202]
    assert len(accepted) >= 150, by_kind   # the killed workers' requests in flight are lost, not the load

    def replaced():   # gunicorn's master has started two new workers in place of the killed ones
        workers = gunicorn.children()
        return len(workers) == 2 and not set(workers) & set(workers_before)
    assert _wait(replaced, 20) is not None, gunicorn.children()

    redelivered = settle_orders(stack, checker, notes)
    money = check_money(stack, checker, [u for u, _ in users], accepted)
    report("sigkill", setup_s=round(t1 - t0, 2), load_s=round(t2 - t1, 2),
           checks_s=round(time.monotonic() - t2, 2), answers=by_kind, redelivered=redelivered,
           killed_after_answers=killed_at, orders_paid=len(notes), **money)


# --- 2. the primary stopped for ~5 s under load ----------------------------------------------------

KINDS = {"spend", "me", "notify"}


def test_primary_down_answers_503_json_then_recovers_without_restarting_the_app(fault_stack, fault_db,
                                                                                 checker):
    stack = fault_stack
    users = bound_users(checker, 4, credits=1000)
    notes = paid_orders(checker, stack.pay, [u for u, _ in users for _ in range(2)])
    log, stop = [], threading.Event()   # (monotonic time, kind, status, error code, body)
    counter = iter(range(10**6))

    def load(kind, headers):
        while not stop.is_set():
            n = next(counter)
            if kind == "spend":
                status, body = spend(stack, headers, 1000 + n)
            elif kind == "notify":   # every order's notification in turn, over and over (duplicates)
                status, body = notify(stack, *notes[n % len(notes)][1:])
            else:
                status, body = call("GET", stack.nginx_url + "/api/v1/me", verify=stack.cert, headers=headers)
            code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
            log.append((time.monotonic(), kind, status, code, body))
            time.sleep(0.02)

    threads = [threading.Thread(target=load, args=(kind, headers), daemon=True)
               for kind, (_, headers) in zip(["spend", "spend", "me", "notify"], users, strict=False)]
    [t.start() for t in threads]
    try:
        time.sleep(1.0)
        down_at = time.monotonic()
        fault_db.primary.stop()
        stopped_at = time.monotonic()
        time.sleep(1.0)
        ready_down = readyz(stack)
        time.sleep(max(0.0, down_at + 5.0 - time.monotonic()))
        fault_db.primary.start()
        up_at = time.monotonic()
        # recovered = every answer after that moment is a success, for each kind, for one second
        deadline, recovered_at = up_at + 30, None
        while time.monotonic() < deadline and recovered_at is None:
            time.sleep(0.2)
            for t0 in sorted({t for t, *_ in log if t >= up_at}):
                after = [e for e in log if e[0] >= t0]
                if after[-1][0] - t0 >= 1.0 and {k for _, k, *_ in after} == KINDS \
                        and all(ok(e[2]) for e in after):
                    recovered_at = t0
                    break
    finally:
        stop.set()
        [t.join(30) for t in threads]
        if fault_db.primary.proc is None:
            fault_db.primary.start()

    before = [e for e in log if e[0] < down_at]
    outage = [e for e in log if stopped_at <= e[0] < up_at]
    statuses = {kind: Counter(e[2] for e in log if e[1] == kind) for kind in KINDS}
    assert before and all(ok(e[2]) for e in before), Counter(e[2] for e in before)
    # while the primary is gone: our JSON 503, for both kinds of request, and nothing else but successes
    assert {(e[2], e[3]) for e in log if not ok(e[2])} == {(503, "database_unavailable")}, statuses
    assert {e[1] for e in outage if e[2] == 503} == KINDS, statuses
    assert ready_down[0] == 503 and ready_down[1]["primary"]["ok"] is False
    assert recovered_at is not None, f"no recovery within 30 s: {statuses}"
    recovery = round(recovered_at - up_at, 2)
    assert recovery <= 10
    assert readyz(stack)[0] == 200
    accepted = [e[4]["task_id"] for e in log if e[1] == "spend" and e[2] == 202]
    redelivered = settle_orders(stack, checker, notes)
    money = check_money(stack, checker, [u for u, _ in users], accepted)
    report("primary_down", answers=statuses, outage_seconds=round(up_at - down_at, 2),
           recovery_seconds=recovery, redelivered=redelivered, orders_paid=len(notes), **money)


# --- 3. the replica stopped, and lagging -------------------------------------------------------------

def _fallbacks(stack) -> float:
    """xintu_replica_fallback_total summed over the gunicorn workers."""
    text = requests.get(stack.gunicorn_url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("xintu_replica_fallback_total"))


def _replica_verdicts(stack, n: int = 4) -> list[dict]:
    return [readyz(stack)[1]["replica"] for _ in range(n)]


def test_replica_down_or_lagging_sends_stale_reads_to_the_primary_then_back(fault_stack, fault_db, checker):
    from xintu import db
    from xintu.admin import auth as admin
    from xintu.models import Release, User
    from xintu.timeutil import day_bounds_utc, local_today

    stack = fault_stack
    with _InApp(checker):
        admin.create_admin("faults-" + secrets.token_hex(3), "faults-password-123", role="viewer")
        name = admin.Admin.select().order_by(admin.Admin.id.desc()).first().username
        token, _ = admin.login(name, "faults-password-123", "127.0.0.1")
    admin_headers = {"Authorization": f"Bearer {token}"}
    versions = iter(["1.0.0", "1.1.0", "1.2.0", "1.3.0"])

    def publish():
        """A release and a user that exist on the primary; the replica has them only once it applies them."""
        version = next(versions)
        with _InApp(checker), db.atomic():
            Release.create(platform="windows", version=version, filename=f"xintu-{version}.exe",
                           sha256="0" * 64, size=1)
            User.create(openid="oR" + secrets.token_hex(10))
        start, end = day_bounds_utc(local_today())   # the dashboard's "today" (Asia/Shanghai)
        with _InApp(checker):
            return version, User.select().where(User.created_at >= start, User.created_at < end).count()

    def reads(version, users, n=6):
        """Stale reads as clients and the dashboard make them: all answered, all current."""
        seen = Counter()
        for i in range(n):
            latest = call("GET", stack.nginx_url + "/api/v1/releases/latest", params={"platform": "windows"},
                          verify=stack.cert)
            seen["latest", latest[0]] += 1
            assert latest[0] == 200 and latest[1]["version"] == version, latest
            if i < 2:   # the dashboard's figures (heavier: charts of a week)
                overview = call("GET", stack.nginx_url + "/api/v1/admin/overview", verify=stack.cert,
                                headers=admin_headers)
                seen["overview", overview[0]] += 1
                assert overview[0] == 200 and overview[1]["today"]["new_users"] == users, overview
        return {f"{k}:{s}": v for (k, s), v in seen.items()}

    admin_conn = {}

    def stop_sql_thread():
        with closing(fault_db.admin(fault_db.replica)) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE SQL_THREAD")

    def start_sql_thread():
        with closing(fault_db.admin(fault_db.replica)) as conn, conn.cursor() as cur:
            cur.execute("START SLAVE SQL_THREAD")

    def read_lock():
        admin_conn["lock"] = fault_db.admin(fault_db.replica)
        with admin_conn["lock"].cursor() as cur:
            cur.execute("FLUSH TABLES WITH READ LOCK")

    def crash_replica():
        fault_db.replica.proc.kill()
        fault_db.replica.proc.wait(10)

    def unlock():
        with closing(admin_conn.pop("lock")) as conn, conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")

    faults = [   # name, break, heal, how /readyz words it
        ("sql_thread_stopped", stop_sql_thread, start_sql_thread, "replication stopped"),
        ("replica_down", crash_replica, fault_db.replica.start, "unreachable"),
        ("read_lock_lag", read_lock, unlock, "lag"),
    ]
    version, users = publish()
    fault_db.wait_replica()
    assert _wait(lambda: all(r["used_for_stale_reads"] for r in _replica_verdicts(stack)), 10) is not None
    time.sleep(CHECK_INTERVAL + 0.1)   # each worker's cached verdict
    figures = {"baseline": reads(version, users)}
    for name, break_it, heal, wording in faults:
        time.sleep(CHECK_INTERVAL + 0.1)
        reads(version, users, n=3)   # both workers now hold a fresh "healthy" verdict for CHECK_INTERVAL
        break_it()
        try:
            version, users = publish()
            if name == "replica_down":   # at once, while the workers' cached verdict still says healthy:
                # the replica fails under stale_call, which must run the read again on the primary
                figures[name + "_at_once"] = reads(version, users, n=3)
            detected = _wait(lambda wording=wording: all(
                wording in (r["reason"] or "") and not r["used_for_stale_reads"] for r in _replica_verdicts(stack)), 15)
            assert detected is not None, _replica_verdicts(stack, 1)
            time.sleep(CHECK_INTERVAL + 0.1)
            before = _fallbacks(stack)
            figures[name] = reads(version, users)
            assert _fallbacks(stack) > before   # counted as fallbacks, answered by the primary
            assert readyz(stack)[0] == 200      # the primary is fine: still ready
        finally:
            heal()
        recovered = _wait(lambda: all(r["used_for_stale_reads"] for r in _replica_verdicts(stack)), 30)
        assert recovered is not None, _replica_verdicts(stack, 1)
        figures[name + "_detected_s"], figures[name + "_recovered_s"] = detected, recovered
        time.sleep(CHECK_INTERVAL + 0.1)
        before = _fallbacks(stack)
        reads(version, users)                     # the replica caught up: current again, from the replica
        assert _fallbacks(stack) == before
    report("replica", **figures)


# --- 4. Qwen-VL timing out, failing, answering garbage under load ------------------------------------

def test_llm_faults_under_load_get_local_answers_and_nothing_cached(fault_stack):
    stack, llm = fault_stack, fault_stack.llm
    registered = requests.post(stack.nginx_url + "/api/v1/clients", verify=stack.cert, timeout=10,
                               json={"client_id": "faults-" + secrets.token_hex(4), "platform": "windows"})
    headers = {"Authorization": "Bearer " + registered.json()["token"]}
    faults = {   # the fake's behaviour → what the SDK sees
        "timeout": {"mode": "ok", "latency": 1.5},        # CLASSIFY_LLM_TIMEOUT is 0.5 s
        "error500": {"mode": "error500", "latency": 0},   # InternalError
        "error429": {"mode": "error429", "latency": 0},   # Throttling.RateQuota
        "garbage": {"mode": "garbage", "latency": 0},     # prose instead of JSON
        "not_json": {"mode": "not_json", "latency": 0},   # an HTML gateway page
    }
    images = {name: [photo(5000 + 10 * i + k, size=(96, 96)) for k in range(4)]
              for i, name in enumerate(faults)}

    def classify(image):
        return call("POST", stack.nginx_url + "/api/v1/classify", verify=stack.cert, headers=headers,
                    files={"image": ("x.jpg", image, "image/jpeg")})

    figures = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name, behaviour in faults.items():
            llm.state.configure(**behaviour, reset_calls=True)
            answers = list(pool.map(classify, images[name]))
            figures[name] = dict(Counter(f"{s}:{(b or {}).get('method')}" for s, b in answers))
            # the local model answered each one, after the LLM was really asked (once: no retries here)
            assert all(s == 200 and b["method"] == "llm_fallback" for s, b in answers), answers
            assert llm.state.calls == len(images[name])
        healthy = {"category": "foods", "confidence": 0.91, "description": "一盘菜"}
        llm.state.configure(mode="ok", latency=0, answer=healthy, reset_calls=True)
        every = [image for batch in images.values() for image in batch]
        again = list(pool.map(classify, every))
        # nothing was cached from the failures: each image reaches the LLM now, and its answer is kept
        assert all(s == 200 and b["method"] == "llm" and b["category"] == "foods" for s, b in again), again
        assert llm.state.calls == len(every)
        cached = list(pool.map(classify, every))
        assert all(s == 200 and b["method"] == "cache" for s, b in cached)
        assert llm.state.calls == len(every)
    figures["healed"] = dict(Counter(b["method"] for _, b in again + cached))
    report("llm", **figures)
