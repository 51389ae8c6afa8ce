"""The per-worker filter of stored hashes that lets check-cache skip the database for hashes it does not hold
(xintu/classify/known.py): never a wrong "missing" for what this process stored, other processes' rows
found within the refresh interval, the upload path never consulting it, and fewer SELECTs on MariaDB."""
import hashlib
import io
import secrets
import time
from contextlib import closing

from tests.classify_fixtures import register
from tests.classify_images import package_photo
from xintu.classify.known import LOOKBACK, KnownHashes, _Filter
from xintu.classify.model_client import prompt_version
from xintu.classify.service import get_service
from xintu.config import DEFAULTS
from xintu.models import ClassifyCache, ClassifyClaim

COFFEE = package_photo("skimage:coffee.png")
MODEL = DEFAULTS["CLASSIFY_LLM_MODEL"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_elsewhere(digest: str, row_id: int | None = None) -> None:
    """A row as another worker or host writes it: straight into the table, unseen by this process."""
    extra = {"id": row_id} if row_id else {}
    ClassifyCache.insert(image_sha256=digest, model_version=MODEL, prompt_version=prompt_version(MODEL),
                         category="foods", confidence=0.9, description="一杯咖啡", source="llm", **extra).execute()


def wait_ready(app, timeout=10.0) -> KnownHashes:
    known = get_service(app).cache.known
    deadline = time.monotonic() + timeout
    client = app.test_client()
    headers = register(client)
    while not known.ready:   # the first check-cache starts the full read, in a thread
        client.post("/api/v1/classify/batch-check-cache", headers=headers, json={"hashes": ["0" * 64]})
        assert time.monotonic() < deadline, "the filter of stored hashes never loaded"
        time.sleep(0.05)
    return known


def check(client, headers, hashes) -> dict:
    r = client.post("/api/v1/classify/batch-check-cache", headers=headers, json={"hashes": hashes})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert sorted([*body["hits"], *body["missing"]]) == sorted(set(hashes))
    return body["hits"]


def test_the_filter_never_says_absent_for_what_it_holds_and_rarely_present_for_what_it_does_not():
    f = _Filter(1, min_bits=1 << 16)
    held = [secrets.token_hex(32) for _ in range(f.capacity)]
    f.add(held)
    assert f.maybe(held).all()
    others = [secrets.token_hex(32) for _ in range(20_000)]
    false_present = f.maybe(others).mean()
    assert false_present < 0.003, false_present     # ≈ 1 in 1 800 when full to its sizing


def test_check_cache_answers_what_this_process_stored_at_once(classify_app, dashscope_vl):
    dashscope_vl.state.answer = {"category": "foods", "confidence": 0.93, "description": "一杯咖啡"}
    known = wait_ready(classify_app)
    known.refresh = 3600.0   # no poll during the test: only this process's own additions count
    client = classify_app.test_client()
    device = register(client)
    original = secrets.token_hex(32)
    r = client.post("/api/v1/classify", headers=device,
                    data={"image": (io.BytesIO(COFFEE), "c.png"), "original_sha256": original})
    assert r.get_json()["method"] == "llm", r.get_json()
    hits = check(client, device, [sha(COFFEE), original, secrets.token_hex(32)])
    assert set(hits) == {sha(COFFEE), original}   # the answer and the claim, both stored a moment ago


def test_rows_other_processes_store_are_found_within_the_refresh_interval(local_app):
    known = wait_ready(local_app)
    client = local_app.test_client()
    device = register(client)
    digest = secrets.token_hex(32)
    with local_app.app_context():
        store_elsewhere(digest)
    deadline = time.monotonic() + 2 * known.refresh + 1.0
    while digest not in check(client, device, [digest]):
        assert time.monotonic() < deadline, "another process's row was never found"
        time.sleep(0.05)
    # A row that committed out of order (an id below the highest seen, within LOOKBACK) is read too.
    with local_app.app_context():
        top = ClassifyCache.select(ClassifyCache.id).order_by(ClassifyCache.id.desc()).scalar()
        store_elsewhere(secrets.token_hex(32), row_id=top + LOOKBACK)
        late = secrets.token_hex(32)
        store_elsewhere(late, row_id=top + LOOKBACK // 2)
    deadline = time.monotonic() + 2 * known.refresh + 1.0
    while late not in check(client, device, [late]):
        assert time.monotonic() < deadline, "a row that committed late was never found"
        time.sleep(0.05)


def test_claims_of_other_processes_are_found_too(classify_app, dashscope_vl):
    known = wait_ready(classify_app)
    client = classify_app.test_client()
    device = register(client)
    r = client.post("/api/v1/classify", headers=device, data={"image": (io.BytesIO(COFFEE), "c.png")})
    assert r.get_json()["method"] == "llm"
    original = secrets.token_hex(32)
    with classify_app.app_context():
        from xintu.models import ClientSession
        session = ClientSession.select().order_by(ClientSession.id.desc()).get()
        ClassifyClaim.insert(original_sha256=original, image_sha256=sha(COFFEE), session=session.id).execute()
    deadline = time.monotonic() + 2 * known.refresh + 1.0
    while original not in check(client, device, [original]):
        assert time.monotonic() < deadline, "another process's claim was never found"
        time.sleep(0.05)


def test_an_upload_never_consults_the_filter(classify_app, dashscope_vl):
    wait_ready(classify_app)
    client = classify_app.test_client()
    device = register(client)
    with classify_app.app_context():
        store_elsewhere(sha(COFFEE))   # stored elsewhere a moment ago: the filter may not know it yet
    calls = dashscope_vl.state.calls
    r = client.post("/api/v1/classify", headers=device, data={"image": (io.BytesIO(COFFEE), "c.png")})
    assert r.get_json()["method"] == "cache"
    assert dashscope_vl.state.calls == calls   # no model call for an answer the database has


def _selects(mariadb) -> int:
    with closing(mariadb.admin(mariadb.primary)) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        row = cur.fetchone()
        return int(row["Value"] if isinstance(row, dict) else row[1])


def test_on_mariadb_unknown_hashes_cost_no_select(mysql_app, mariadb, rounds=40):
    known = wait_ready(mysql_app)
    client = mysql_app.test_client()
    device = register(client)
    with mysql_app.app_context():
        stored = [secrets.token_hex(32) for _ in range(20)]
        for digest in stored:
            store_elsewhere(digest)
    time.sleep(known.refresh + 0.1)
    assert set(check(client, device, stored)) == set(stored)   # found, and now remembered by this worker

    def run() -> int:
        before = _selects(mariadb)
        for _ in range(rounds):
            unknown = [secrets.token_hex(32) for _ in range(50)]
            assert set(check(client, device, stored + unknown)) == set(stored)
        return _selects(mariadb) - before

    with_filter = run()
    refresh, known.refresh = known.refresh, 0   # CLASSIFY_CHECK_FILTER_SECONDS = 0: every lookup asks
    try:
        without = run()
    finally:
        known.refresh = refresh
    print(f"SELECTs in {rounds} batch-check-cache requests: {with_filter} with the filter, {without} without")
    assert without >= rounds, without                   # one SELECT per request for the unknown hashes
    assert with_filter <= without - rounds * 3 // 4, (with_filter, without)   # only the polls remain


def test_a_full_filter_is_rebuilt_larger_and_keeps_every_hash(app):
    from xintu import db

    known = KnownHashes([(ClassifyCache, ClassifyCache.id, ClassifyCache.image_sha256),
                         (ClassifyClaim, ClassifyClaim.id, ClassifyClaim.original_sha256)],
                        refresh=0.05, min_bits=1 << 12)
    with app.app_context():
        database = db.primary.obj
        stored = [secrets.token_hex(32) for _ in range(5)]
        for digest in stored:
            store_elsewhere(digest)
        deadline = time.monotonic() + 10
        while len(known.maybe_stored(stored, database)) < len(stored) or not known.ready:
            assert time.monotonic() < deadline, "the filter never loaded"
            time.sleep(0.02)
        small = known._filter.capacity
        more = [secrets.token_hex(32) for _ in range(small + 50)]   # past its sizing
        for digest in more:
            store_elsewhere(digest)
        deadline = time.monotonic() + 10
        while (len(known.maybe_stored(stored + more, database)) < len(stored + more)   # it polls
               or known._filter.capacity == small):
            assert time.monotonic() < deadline, "the full filter was never rebuilt"
            time.sleep(0.06)
        assert known._filter.count == len(stored) + len(more)
        unknown = [secrets.token_hex(32) for _ in range(200)]
        assert len(known.maybe_stored(unknown, database)) <= 5   # at least 195 of 200 certainly absent


def test_workers_of_one_host_see_each_others_stores_at_once(tmp_path, classify_model_dir, dashscope_vl):
    """Two apps on one database and instance folder are two gunicorn workers of one host: B's filter is
    loaded and its timed poll far off, yet B answers a check right after A stored the answer."""
    from tests.classify_fixtures import _classify_app

    config = {"CLASSIFY_MODEL_DIR": classify_model_dir, "DASHSCOPE_API_KEY": "sk-test-key-0001",
              "DASHSCOPE_BASE_URL": dashscope_vl.base_url, "CLASSIFY_LLM_TIMEOUT": 2.0}
    worker_a = _classify_app(tmp_path, config)
    worker_b = _classify_app(tmp_path, config)
    known_b = wait_ready(worker_b)
    known_b.refresh = 3600.0
    time.sleep(0.05)
    original = secrets.token_hex(32)
    device_a, device_b = register(worker_a.test_client()), register(worker_b.test_client())
    r = worker_a.test_client().post("/api/v1/classify", headers=device_a,
                                    data={"image": (io.BytesIO(COFFEE), "c.png"), "original_sha256": original})
    assert r.get_json()["method"] == "llm", r.get_json()
    assert sha(COFFEE) in check(worker_b.test_client(), device_b, [sha(COFFEE)])   # at once, on the other
    claims = check(worker_b.test_client(), device_a, [original])
    assert original in claims                                                   # and the claim, for A's device
    assert known_b.signal.read() == known_b._signalled
