"""Image edit on the embedded (SQLite) app, through the real dashscope SDK against the fake."""
import io
import time

import pytest
from PIL import Image

from tests.classify_images import zeros_png
from tests.edit_fixtures import check_results_migration, photo, sha256
from tests.factories import make_bound_user
from xintu.edit.worker import EditWorker
from xintu.models import CreditLedger, EditImage, EditTask, User


def post_edit(client, headers, images, prompt="把背景换成海边", options=None):
    data = {"prompt": prompt, "images": [(io.BytesIO(b), f"p{i}.jpg") for i, b in enumerate(images)]}
    if options is not None:
        data["options"] = options
    return client.post("/api/v1/image-edit", data=data, headers=headers, content_type="multipart/form-data")


def drain(app, worker=None, limit=50):
    worker = worker or EditWorker(app.config)
    with app.app_context():
        for _ in range(limit):
            if not worker.run_once():
                if not EditTask.select().where(EditTask.status.in_(("queued", "running"))).exists():
                    return
                time.sleep(0.05)
    raise AssertionError("tasks did not finish")


def ledger(app, user):
    with app.app_context():
        return sorted((r.reason, r.delta, r.ref) for r in CreditLedger.select().where(
            CreditLedger.user == user.id, CreditLedger.reason.startswith("edit")))


def balance(app, user):
    """The cached balance, after checking it equals the sum of the user's ledger (CreditService.audit)."""
    from xintu.member.credits import CreditService

    with app.app_context():
        assert CreditService().audit() == []
        return User.get_by_id(user.id).credits_balance


def test_three_images_one_fails_upstream_charges_two_and_refunds_one(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=5)
    images = [photo("red"), photo("green"), photo("blue")]
    dashscope_edit_fake.fail_sha256.add(sha256(images[1]))
    client = edit_app.test_client()
    r = post_edit(client, headers, images)
    assert r.status_code == 202, r.get_json()
    task = r.get_json()
    assert task["status"] == "queued" and task["credits"]["reserved"] == 3
    assert balance(edit_app, user) == 2  # reserved up front

    drain(edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["status"] == "partial"
    assert [i["status"] for i in done["images"]] == ["succeeded", "failed", "succeeded"]
    assert done["images"][1]["error"] == "content_moderated"  # a stable code, not upstream's text
    assert done["credits"] == {"reserved": 3, "charged": 2, "refunded": 1}
    assert ledger(edit_app, user) == [("edit_refund", 1, task["task_id"]), ("edit_spend", -3, task["task_id"])]
    assert balance(edit_app, user) == 3
    prefix = f"/api/v1/image-edit/{task['task_id']}/results/"
    assert [i["url"] for i in done["images"]] == [prefix + "0", None, prefix + "2"]
    assert dashscope_edit_fake.submissions == 3
    with edit_app.app_context():  # uploads are not kept after the task ends; results are
        assert EditImage.select().where(EditImage.kind == "upload").count() == 0
        assert EditImage.select().where(EditImage.kind == "result").count() == 2


def test_results_are_stored_and_served_only_to_the_owner(edit_app, dashscope_edit_fake):
    _, alice = make_bound_user(app=edit_app, balance=2)
    _, bob = make_bound_user(app=edit_app, balance=1)
    client = edit_app.test_client()
    task = post_edit(client, alice, [photo("red"), photo("blue", fmt="PNG")]).get_json()
    drain(edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=alice).get_json()
    assert done["status"] == "succeeded"
    assert not any(dashscope_edit_fake.base_url in (i["url"] or "") for i in done["images"])
    upstream = dict(dashscope_edit_fake.results)
    dashscope_edit_fake.results.clear()  # upstream forgot (its URLs expire): we still have them

    r = client.get(done["images"][1]["url"], headers=alice)
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.data in upstream.values()
    assert Image.open(io.BytesIO(r.data)).getpixel((0, 0)) == (255, 255, 0)  # the fake inverts: blue → yellow
    assert r.headers["Cache-Control"] == "private, max-age=86400" and r.headers["ETag"]
    again = client.get(done["images"][1]["url"], headers={**alice, "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    first = client.get(done["images"][0]["url"], headers=alice)
    assert first.status_code == 200 and first.data != r.data and first.data in upstream.values()

    stolen = client.get(done["images"][1]["url"], headers=bob)
    assert stolen.status_code == 404 and stolen.get_json()["error"]["code"] == "edit_task_not_found"
    missing = client.get(f"/api/v1/image-edit/{task['task_id']}/results/2", headers=alice)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "edit_result_not_found"
    assert client.get(done["images"][1]["url"]).status_code == 401


def _noisy_png():
    """A valid PNG of ~30 KB (noise does not compress)."""
    import os

    out = io.BytesIO()
    Image.frombytes("RGB", (100, 100), os.urandom(30000)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("body, config, error", [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 200, {}, "result_invalid"),
    (photo("red", size=(400, 300), fmt="PNG")[:600], {}, "result_invalid"),
    (photo("red", size=(40, 30), fmt="GIF"), {}, "result_invalid"),
    (_noisy_png(), {"EDIT_RESULT_MAX_BYTES": 4096}, "result_too_large"),
    (None, {"SANDBOX": False}, "result_url_refused"),
    (zeros_png(7071, 7071), {}, "result_invalid"),
], ids=["corrupt", "truncated", "gif", "oversized", "http-without-sandbox", "png-bomb"])
def test_a_bad_upstream_result_is_a_refunded_failure(edit_app, dashscope_edit_fake, body, config, error):
    user, headers = make_bound_user(app=edit_app, balance=2)
    edit_app.config.update(config)
    dashscope_edit_fake.result_body = body
    client = edit_app.test_client()
    task = post_edit(client, headers, [photo("red"), photo("green")]).get_json()
    drain(edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["status"] == "failed" and [i["url"] for i in done["images"]] == [None, None]
    assert [i["error"] for i in done["images"]] == [error, error]
    assert done["credits"] == {"reserved": 2, "charged": 0, "refunded": 2}
    assert balance(edit_app, user) == 2
    assert client.get(f"/api/v1/image-edit/{task['task_id']}/results/0", headers=headers).status_code == 404
    with edit_app.app_context():
        assert EditImage.select().count() == 0
    # Nothing was cached either: the same edit is paid for and tried again.
    dashscope_edit_fake.result_body = None
    assert post_edit(client, headers, [photo("red")]).get_json()["credits"]["reserved"] == 1


def test_short_credits_are_402_and_nothing_is_queued_or_submitted(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=2)
    r = post_edit(edit_app.test_client(), headers, [photo("red"), photo("green"), photo("blue")])
    assert r.status_code == 402
    assert r.get_json()["error"]["code"] == "insufficient_credits"
    drain(edit_app)
    assert dashscope_edit_fake.submissions == 0
    assert balance(edit_app, user) == 2 and ledger(edit_app, user) == []
    with edit_app.app_context():
        assert EditTask.select().count() == 0 and EditImage.select().count() == 0


def test_identical_image_and_prompt_is_served_from_cache_free(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=3)
    client = edit_app.test_client()
    first = post_edit(client, headers, [photo("red")]).get_json()
    drain(edit_app)
    url = client.get(f"/api/v1/image-edit/{first['task_id']}", headers=headers).get_json()["images"][0]["url"]
    original = client.get(url, headers=headers).data
    dashscope_edit_fake.results.clear()  # the cache must not lean on upstream's (expiring) URLs

    again = post_edit(client, headers, [photo("red"), photo("navy")])
    body = again.get_json()
    assert again.status_code == 202 and body["credits"]["reserved"] == 1
    assert body["images"][0] == {"index": 0, "status": "cached", "error": None, "error_code": None,
                                 "cached": True, "url": f"/api/v1/image-edit/{body['task_id']}/results/0"}
    served = client.get(body["images"][0]["url"], headers=headers)
    assert served.status_code == 200 and served.mimetype == "image/png" and served.data == original
    drain(edit_app)
    assert dashscope_edit_fake.submissions == 2
    assert balance(edit_app, user) == 1  # 1 for the first red, 1 for navy, nothing for the cached red

    other_prompt = post_edit(client, headers, [photo("red")], prompt="换成黑白照片").get_json()
    assert other_prompt["credits"]["reserved"] == 1  # the prompt is part of the key


def test_async_model_is_polled_until_done(edit_app, dashscope_edit_fake):
    edit_app.config["EDIT_MODEL"] = "wanx2.1-imageedit"
    dashscope_edit_fake.latency = 0.3
    user, headers = make_bound_user(app=edit_app, balance=2)
    client = edit_app.test_client()
    task = post_edit(client, headers, [photo("red"), photo("green")]).get_json()
    worker = EditWorker(edit_app.config)
    with edit_app.app_context():
        assert worker.run_once()
        row = EditTask.get(EditTask.task_id == task["task_id"])
        assert row.status == "running" and row.claimed_by is None
        assert [i["status"] for i in row.images] == ["pending", "pending"] and len(row.upstream_ids) == 2
    seen = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert [i["status"] for i in seen["images"]] == ["running", "running"]
    drain(edit_app, worker)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["status"] == "succeeded" and done["credits"]["charged"] == 2
    assert ledger(edit_app, user) == [("edit_spend", -2, task["task_id"])]


def test_throttling_is_retried_not_failed(edit_app, dashscope_edit_fake):
    _, headers = make_bound_user(app=edit_app, balance=1)
    dashscope_edit_fake.throttle_next = 2
    task = post_edit(edit_app.test_client(), headers, [photo("red")]).get_json()
    drain(edit_app)
    with edit_app.app_context():
        row = EditTask.get(EditTask.task_id == task["task_id"])
        assert row.status == "succeeded" and row.images[0]["attempts"] == 2


def test_overdue_task_is_swept_and_fully_refunded(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=3)
    task = post_edit(edit_app.test_client(), headers, [photo("red"), photo("green")]).get_json()
    edit_app.config["EDIT_TASK_TIMEOUT"] = 0  # no worker ever came
    with edit_app.app_context():
        assert EditWorker(edit_app.config).sweep()["finished"] == 1
        row = EditTask.get(EditTask.task_id == task["task_id"])
    assert row.status == "failed" and row.credits_refunded == 2 and row.error == "timeout"
    assert balance(edit_app, user) == 3 and dashscope_edit_fake.submissions == 0
    with edit_app.app_context():
        assert EditWorker(edit_app.config).sweep()["finished"] == 0  # nothing twice
    assert ledger(edit_app, user) == [("edit_refund", 2, task["task_id"]), ("edit_spend", -2, task["task_id"])]


def test_a_task_is_visible_only_to_its_owner(edit_app):
    _, alice = make_bound_user(app=edit_app, balance=1)
    _, bob = make_bound_user(app=edit_app, balance=1)
    client = edit_app.test_client()
    task = post_edit(client, alice, [photo("red")]).get_json()
    r = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=bob)
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "edit_task_not_found"
    assert client.get("/api/v1/image-edit/" + "x" * 200, headers=alice).status_code == 404
    longer = client.get(f"/api/v1/image-edit/{task['task_id']}0", headers=alice)
    assert longer.status_code == 404 and longer.get_json()["error"]["code"] == "edit_task_not_found"


def test_an_unbound_device_cannot_spend(edit_app, device_token):
    r = post_edit(edit_app.test_client(), {"Authorization": f"Bearer {device_token}"}, [photo("red")])
    assert r.status_code == 403


def _truncated():
    data = photo("red", size=(400, 300))
    return data[: len(data) // 2]


@pytest.mark.parametrize("images, prompt, options, status, code", [
    ([], "改成夜景", None, 400, "no_images"),
    ([photo("red")] * 10, "改成夜景", None, 400, "too_many_images"),
    ([photo("red")], "   ", None, 400, "prompt_required"),
    ([photo("red")], "长" * 801, None, 400, "prompt_too_long"),
    ([b"just some text, not a photo"], "改成夜景", None, 415, "image_unsupported"),
    ([_truncated()], "改成夜景", None, 400, "image_truncated"),
    ([b""], "改成夜景", None, 400, "image_empty"),
    ([photo("red")], "改成夜景", "{not json", 400, "invalid_options"),
    ([photo("red")], "改成夜景", '{"n": 4}', 400, "invalid_options"),
])
def test_bad_requests_get_a_stable_code_and_cost_nothing(edit_app, images, prompt, options, status, code):
    user, headers = make_bound_user(app=edit_app, balance=20)
    r = post_edit(edit_app.test_client(), headers, images, prompt, options)
    assert r.status_code == status, r.get_json()
    assert r.get_json()["error"]["code"] == code
    assert balance(edit_app, user) == 20


def test_oversized_photo_is_413(edit_app):
    import os

    _, headers = make_bound_user(app=edit_app, balance=1)
    too_big = photo("red") + os.urandom(10 * 1024 * 1024)
    r = post_edit(edit_app.test_client(), headers, [too_big])
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "image_too_large"


def test_results_migration_upgrades_the_old_shape_on_sqlite(edit_app):
    from playhouse.migrate import SqliteMigrator

    from xintu import db

    with edit_app.app_context():
        check_results_migration(db.primary.obj, SqliteMigrator(db.primary.obj))


def test_gif_and_oversized_photos_are_sent_as_jpeg_within_upstream_limits():
    from xintu.edit.images import UPSTREAM_MAX_SIDE, prepare_image

    big = prepare_image(photo("red", size=(4000, 1000), fmt="PNG"))
    assert big.mime == "image/jpeg" and max(big.width, big.height) == UPSTREAM_MAX_SIDE
    small = photo("red", size=(640, 480), fmt="WEBP")
    assert prepare_image(small).data == small  # accepted upstream as is: sent untouched
    gif = prepare_image(photo("red", fmt="GIF"))
    assert gif.mime == "image/jpeg" and Image.open(io.BytesIO(gif.data)).format == "JPEG"


def test_a_redirecting_result_url_is_not_followed(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=1)
    dashscope_edit_fake.result_redirect = "http://169.254.169.254/latest/meta-data/"
    client = edit_app.test_client()
    task = post_edit(client, headers, [photo("red")]).get_json()
    drain(edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["status"] == "failed" and done["images"][0]["error"] == "result_download_failed"
    assert done["credits"] == {"reserved": 1, "charged": 0, "refunded": 1}


@pytest.mark.parametrize("url, ok", [
    ("https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/1/a.png?Expires=1", True),
    ("http://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/1/a.png", False),   # not https
    ("https://evil.example.com/a.png", False),                                    # not listed
    ("https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com.evil.com/a.png", False),
    ("https://user:pw@dashscope-result-bj.oss-cn-beijing.aliyuncs.com/a.png", False),
    ("https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com:8443/a.png", False),
    ("file:///etc/passwd", False),
    ("http://127.0.0.1:1/results/a.png", False),   # loopback, but not the sandbox's origin
    ("http://127.0.0.1:9/results/a.png", True),    # the sandbox's own origin
    (None, False),
])
def test_result_urls_must_be_https_to_a_listed_host(url, ok):
    from xintu.config import DEFAULTS
    from xintu.edit.results import BadResult, ResultPolicy, check_url

    policy = ResultPolicy.from_config({**DEFAULTS, "SANDBOX": True,
                                       "EDIT_DASHSCOPE_BASE_URL": "http://127.0.0.1:9/api/v1"})
    if ok:
        check_url(url, policy)
    else:
        with pytest.raises(BadResult) as err:
            check_url(url, policy)
        assert err.value.code == "result_url_refused"
    production = ResultPolicy.from_config({**DEFAULTS, "ENV": "production", "SANDBOX": True,
                                           "EDIT_DASHSCOPE_BASE_URL": "http://127.0.0.1:9/api/v1"})
    assert production.sandbox_origin is None


def test_a_result_that_drips_is_cut_at_the_total_deadline():
    import socket
    import threading

    from xintu.edit.results import BadResult, ResultPolicy, fetch_result

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def drip():
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.1):  # a byte every 100 ms: each read is quick, the whole is not
                try:
                    conn.sendall(b"\0")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    policy = ResultPolicy(hosts=(), sandbox_origin=f"http://127.0.0.1:{port}", max_bytes=1 << 20,
                          deadline=1.0)
    start = time.monotonic()
    try:
        with pytest.raises(BadResult) as err:
            fetch_result(f"http://127.0.0.1:{port}/r.png", policy)
    finally:
        stop.set()
        server.close()
    assert err.value.code == "result_download_failed"
    assert 0.9 <= time.monotonic() - start < 3



def test_a_png_bomb_upload_is_a_json_413_and_reserves_nothing(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=9)
    r = post_edit(edit_app.test_client(), headers, [photo("red")] + [zeros_png(7071, 7071)] * 8)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "image_too_many_pixels"
    assert balance(edit_app, user) == 9 and dashscope_edit_fake.submissions == 0
