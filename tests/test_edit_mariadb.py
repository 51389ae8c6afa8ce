"""Image edit on the real MariaDB primary: money, concurrent pollers, crashed workers, SKIP LOCKED."""
import threading
import time

import pytest

from tests.edit_fixtures import check_results_migration, photo, sha256
from tests.factories import make_bound_user
from tests.test_edit_service import balance, drain, ledger, post_edit
from xintu import db
from xintu.edit.worker import EditWorker, LostClaim
from xintu.models import EditCache, EditImage, EditTask

pytestmark = pytest.mark.mariadb


def test_partial_failure_charges_two_refunds_one_on_mariadb(mysql_edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=mysql_edit_app, balance=3)
    images = [photo("red"), photo("green"), photo("blue")]
    dashscope_edit_fake.fail_sha256.add(sha256(images[2]))
    client = mysql_edit_app.test_client()
    task = post_edit(client, headers, images).get_json()
    assert balance(mysql_edit_app, user) == 0
    drain(mysql_edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["credits"] == {"reserved": 3, "charged": 2, "refunded": 1}
    assert ledger(mysql_edit_app, user) == [("edit_refund", 1, task["task_id"]),
                                            ("edit_spend", -3, task["task_id"])]
    assert balance(mysql_edit_app, user) == 1


def test_short_credits_on_mariadb_are_402_without_a_trace(mysql_edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=mysql_edit_app, balance=1)
    r = post_edit(mysql_edit_app.test_client(), headers, [photo("red"), photo("green")])
    assert r.status_code == 402 and r.get_json()["error"]["code"] == "insufficient_credits"
    assert dashscope_edit_fake.submissions == 0 and balance(mysql_edit_app, user) == 1
    with mysql_edit_app.app_context():
        assert EditTask.select().count() == 0


def test_concurrent_new_tasks_do_not_deadlock_on_their_uploads(mysql_edit_app):
    # Each new task stores its uploads at the end of edit_images' task index; a DELETE-then-INSERT there
    # gap-locked that end, and two requests at once deadlocked (503 database_unavailable).
    users = [make_bound_user(app=mysql_edit_app, balance=6) for _ in range(8)]
    barrier, statuses = threading.Barrier(len(users)), []

    def create(headers):
        with mysql_edit_app.test_client() as client:
            barrier.wait()
            for n in range(6):
                answer = post_edit(client, headers, [photo((n * 40, 0, 0))], prompt=f"p{n}")
                statuses.append(answer.status_code)

    threads = [threading.Thread(target=create, args=(headers,)) for _, headers in users]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert statuses == [202] * 48
    for user, _ in users:
        assert balance(mysql_edit_app, user) == 0


def test_concurrent_workers_and_polls_never_charge_twice(mysql_edit_app, dashscope_edit_fake):
    mysql_edit_app.config["EDIT_MODEL"] = "wan2.5-i2i-preview"  # submit + poll: many steps to race on
    dashscope_edit_fake.latency = 0.4
    user, headers = make_bound_user(app=mysql_edit_app, balance=9)
    images = [photo(c) for c in ("red", "green", "blue", "white", "black")]
    dashscope_edit_fake.fail_sha256.update({sha256(images[1]), sha256(images[3])})
    client = mysql_edit_app.test_client()
    task = post_edit(client, headers, images).get_json()

    stop, errors, polls = threading.Event(), [], []

    def work(n):
        try:
            with mysql_edit_app.app_context():
                EditWorker(mysql_edit_app.config, worker_id=f"w{n}").run(stop, idle_sleep=0.02)
        except Exception as exc:  # noqa: BLE001 — surfaced in the test thread
            errors.append(exc)

    def poll():
        with mysql_edit_app.test_client() as c:
            while not stop.is_set():
                polls.append(c.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=poll) for _ in range(2)]
    [t.start() for t in threads]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not polls or polls[-1]["status"] in ("queued", "running")):
        time.sleep(0.05)
    stop.set()
    [t.join(10) for t in threads]
    assert not errors
    final = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert final["status"] == "partial"
    assert final["credits"] == {"reserved": 5, "charged": 3, "refunded": 2}
    assert ledger(mysql_edit_app, user) == [("edit_refund", 2, task["task_id"]),
                                            ("edit_spend", -5, task["task_id"])]
    assert balance(mysql_edit_app, user) == 6
    assert dashscope_edit_fake.submissions == 5  # each image went upstream exactly once
    assert len(polls) > 5


def test_a_crashed_worker_cannot_settle_after_another_took_over(mysql_edit_app, dashscope_edit_fake):
    mysql_edit_app.config.update(EDIT_MODEL="wanx2.1-imageedit", EDIT_LEASE_SECONDS=1)
    dashscope_edit_fake.latency = 0.2
    user, headers = make_bound_user(app=mysql_edit_app, balance=2)
    task = post_edit(mysql_edit_app.test_client(), headers, [photo("red"), photo("green")]).get_json()
    with mysql_edit_app.app_context():
        crashed = EditWorker(mysql_edit_app.config, worker_id="crashed")
        stuck = crashed.claim()
        assert stuck.task_id == task["task_id"]
        # It dies right after claiming; its lease runs out (DATETIME has whole seconds).
        time.sleep(2.2)
        rescuer = EditWorker(mysql_edit_app.config, worker_id="rescuer")
        drain(mysql_edit_app, rescuer)
        row = EditTask.get(EditTask.task_id == task["task_id"])
        assert row.status == "succeeded" and row.credits_charged == 2
        with pytest.raises(LostClaim):  # the crashed worker wakes up and tries to carry on
            crashed.step(stuck)
    assert dashscope_edit_fake.submissions == 2
    assert ledger(mysql_edit_app, user) == [("edit_spend", -2, task["task_id"])]
    assert balance(mysql_edit_app, user) == 0


def test_claims_skip_rows_locked_by_another_worker(mysql_edit_app):
    _, headers = make_bound_user(app=mysql_edit_app, balance=2)
    client = mysql_edit_app.test_client()
    first = post_edit(client, headers, [photo("red")]).get_json()["task_id"]
    second = post_edit(client, headers, [photo("green")]).get_json()["task_id"]
    locked, release = threading.Event(), threading.Event()

    def hold_first():
        with mysql_edit_app.app_context(), db.primary.connection_context(), db.atomic():
            EditTask.select().where(EditTask.task_id == first).for_update().get()
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold_first)
    holder.start()
    try:
        assert locked.wait(5)
        with mysql_edit_app.app_context():
            started = time.monotonic()
            claimed = EditWorker(mysql_edit_app.config, worker_id="other").claim()
            assert time.monotonic() - started < 2  # did not wait for the lock
            assert claimed.task_id == second
    finally:
        release.set()
        holder.join()


def test_sweep_refunds_a_task_whose_worker_died_mid_way(mysql_edit_app, dashscope_edit_fake):
    mysql_edit_app.config.update(EDIT_MODEL="wanx2.1-imageedit")
    dashscope_edit_fake.latency = 60  # upstream never finishes in time
    user, headers = make_bound_user(app=mysql_edit_app, balance=2)
    task = post_edit(mysql_edit_app.test_client(), headers, [photo("red"), photo("green")]).get_json()
    with mysql_edit_app.app_context():
        EditWorker(mysql_edit_app.config, worker_id="gone").run_once()  # submits, then the host dies
        mysql_edit_app.config.update(EDIT_TASK_TIMEOUT=0, EDIT_LEASE_SECONDS=0)
        time.sleep(1.1)
        assert EditWorker(mysql_edit_app.config).sweep()["finished"] == 1
        row = EditTask.get(EditTask.task_id == task["task_id"])
    assert row.status == "failed" and row.credits_refunded == 2
    assert dashscope_edit_fake.submissions == 2
    assert ledger(mysql_edit_app, user) == [("edit_refund", 2, task["task_id"]), ("edit_spend", -2, task["task_id"])]
    assert balance(mysql_edit_app, user) == 2


def test_large_photos_fit_through_mariadb_packets(mysql_edit_app, dashscope_edit_fake):
    import io

    import numpy as np
    from PIL import Image

    # Two ~8.7 MB noise PNGs: together above MariaDB's default 16 MB max_allowed_packet.
    rng = np.random.default_rng(3)
    photos = []
    for _ in range(2):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (1700, 1700, 3), dtype=np.uint8)).save(out, "PNG", compress_level=0)
        photos.append(out.getvalue())
    assert all(8_000_000 < len(p) < 10 * 1024 * 1024 for p in photos)
    user, headers = make_bound_user(app=mysql_edit_app, balance=2)
    client = mysql_edit_app.test_client()
    r = post_edit(client, headers, photos)
    assert r.status_code == 202, r.get_json()
    drain(mysql_edit_app)
    assert balance(mysql_edit_app, user) == 0 and dashscope_edit_fake.submissions == 2
    # The results (inverted noise, as big) come back through the same ≤ 4 MB pieces.
    done = client.get(f"/api/v1/image-edit/{r.get_json()['task_id']}", headers=headers).get_json()
    served = [client.get(i["url"], headers=headers) for i in done["images"]]
    assert all(s.status_code == 200 and s.mimetype == "image/png" for s in served)
    assert sorted(s.data for s in served) == sorted(dashscope_edit_fake.results.values())
    assert all(len(s.data) > 8_000_000 for s in served)
    with mysql_edit_app.app_context():
        assert EditImage.select().where(EditImage.kind == "result").count() >= 6


def test_results_are_owned_stored_and_reused_by_the_cache_on_mariadb(mysql_edit_app, dashscope_edit_fake):
    alice, alice_headers = make_bound_user(app=mysql_edit_app, balance=2)
    _, bob_headers = make_bound_user(app=mysql_edit_app, balance=1)
    client = mysql_edit_app.test_client()
    task = post_edit(client, alice_headers, [photo("red")]).get_json()
    drain(mysql_edit_app)
    shown = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=alice_headers).get_json()
    url = shown["images"][0]["url"]
    mine = client.get(url, headers=alice_headers)
    assert mine.status_code == 200 and mine.data == next(iter(dashscope_edit_fake.results.values()))
    assert client.get(url, headers=bob_headers).status_code == 404
    dashscope_edit_fake.results.clear()

    again = post_edit(client, alice_headers, [photo("red")]).get_json()
    assert again["status"] == "succeeded" and again["credits"]["reserved"] == 0
    cached = client.get(again["images"][0]["url"], headers=alice_headers)
    assert cached.status_code == 200 and cached.data == mine.data
    assert client.get(again["images"][0]["url"], headers=bob_headers).status_code == 404
    assert dashscope_edit_fake.submissions == 1 and balance(mysql_edit_app, alice) == 1


def test_a_corrupt_result_is_refunded_on_mariadb(mysql_edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=mysql_edit_app, balance=2)
    dashscope_edit_fake.result_body = b"<html>NoSuchKey</html>"
    task = post_edit(mysql_edit_app.test_client(), headers, [photo("red"), photo("blue")]).get_json()
    drain(mysql_edit_app)
    assert ledger(mysql_edit_app, user) == [("edit_refund", 2, task["task_id"]),
                                            ("edit_spend", -2, task["task_id"])]
    assert balance(mysql_edit_app, user) == 2
    with mysql_edit_app.app_context():
        assert EditTask.get(EditTask.task_id == task["task_id"]).status == "failed"
        assert EditImage.select().count() == 0 and EditCache.select().count() == 0


def test_results_migration_upgrades_the_old_shape_and_reruns_cleanly(mysql_edit_app):
    from playhouse.migrate import MySQLMigrator

    with mysql_edit_app.app_context():
        check_results_migration(db.primary.obj, MySQLMigrator(db.primary.obj))
