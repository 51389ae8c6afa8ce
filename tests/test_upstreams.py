"""DashScope error classes, the breaker, and the current models — through the real SDK against the fakes."""
import io
import threading
import time

import pytest
from prometheus_client import REGISTRY

from tests.classify_images import package_photo
from tests.edit_fixtures import photo
from tests.factories import make_bound_user
from tests.test_edit_service import balance, drain, post_edit
from xintu.settings_store import clear_cache
from xintu.upstreams import (
    BAD_REQUEST,
    MODERATION,
    STOP,
    TRANSIENT,
    Breaker,
    breaker_states,
    check_model,
    classify_error,
)

COFFEE = package_photo("skimage:coffee.png")
CAT = package_photo("skimage:chelsea.png")


@pytest.fixture(autouse=True)
def _fresh_breakers():
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize("status, code, expected", [
    (429, "Throttling.RateQuota", (TRANSIENT, "http_429")),
    (429, "Throttling.AllocationQuota", (STOP, "quota")),
    (401, "InvalidApiKey", (STOP, "auth")),
    (403, "Arrearage", (STOP, "billing")),
    (403, "AccessDenied", (STOP, "auth")),
    (404, "ModelNotFound", (STOP, "model")),
    (400, "DataInspectionFailed", (MODERATION, "moderation")),
    (400, "InvalidParameter", (BAD_REQUEST, "http_400")),
    (500, "InternalError", (TRANSIENT, "http_500")),
    (None, "", (TRANSIENT, "transport")),
])
def test_one_mapping_of_dashscope_codes(status, code, expected):
    assert classify_error(status, code) == expected


def test_model_names_current_legacy_retired():
    assert check_model("qwen3-vl-flash", "vision")[0] == "ok"
    assert check_model("qwen-image-edit", "edit") == ("warn", "qwen-image-edit is a legacy model on Model "
                                                              "Studio; move to qwen-image-2.0")
    level, message = check_model("qwen-vl-max", "vision")
    assert level == "fail" and "use qwen3-vl-plus" in message


def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_quota_gone_opens_the_breaker_and_classification_answers_locally(classify_app, auth, dashscope_vl):
    dashscope_vl.state.configure(mode="quota")
    opened = _sample("xintu_upstream_breaker_opened_total", upstream="dashscope.classify", reason="quota")
    client = classify_app.test_client()
    first = client.post("/api/v1/classify", headers=auth, data={"image": (io.BytesIO(COFFEE), "c.png")})
    assert first.status_code == 200 and first.get_json()["method"] == "llm_fallback"
    assert dashscope_vl.state.calls == 1  # not retried: the quota will not come back in 0.3 s
    dashscope_vl.state.configure(mode="ok")
    again = client.post("/api/v1/classify", headers=auth, data={"image": (io.BytesIO(CAT), "cat.png")})
    assert again.get_json()["method"] == "llm_fallback" and dashscope_vl.state.calls == 1  # not called
    assert _sample("xintu_upstream_breaker_opened_total", upstream="dashscope.classify",
                   reason="quota") == opened + 1
    with classify_app.app_context():
        state = {s["name"]: s for s in breaker_states()}["dashscope.classify"]
        assert state["open"] and state["code"] == "Throttling.AllocationQuota" and state["seconds_left"] > 500
        Breaker("dashscope.classify").close()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'xintu_upstream_breaker_short_circuits_total{upstream="dashscope.classify"}' in metrics



def test_rate_limit_is_retried_and_does_not_open_the_breaker(classify_app, auth, dashscope_vl):
    dashscope_vl.state.configure(mode="error429")
    r = classify_app.test_client().post("/api/v1/classify", headers=auth, data={"image": (io.BytesIO(COFFEE),
                                                                                          "c.png")})
    assert r.get_json()["method"] == "llm_fallback" and dashscope_vl.state.calls == 2
    with classify_app.app_context():
        assert not any(s["open"] for s in breaker_states())


def test_a_retired_model_is_model_not_found_upstream(classify_app, auth, dashscope_vl):
    from xintu.classify.model_client import LlmFailure, ModelClient
    with pytest.raises(LlmFailure) as err:
        ModelClient("sk-test-key-0001", model="qwen-vl-plus", base_url=dashscope_vl.base_url).classify(COFFEE)
    assert (err.value.reason, err.value.code, err.value.kind) == ("http_404", "ModelNotFound", STOP)


def test_new_model_does_not_reuse_old_answers_unless_told(classify_app, auth, dashscope_vl):
    from xintu.classify.model_client import prompt_version
    from xintu.classify.service import ClassifierService
    assert prompt_version("qwen3-vl-plus") != prompt_version("qwen3-vl-flash")
    assert len(prompt_version("qwen3-vl-plus")) <= 16
    with classify_app.app_context():
        svc = ClassifierService(classify_app.config)
        assert svc.classify(COFFEE, method="llm")["method"] == "llm"
        flash = ClassifierService({**classify_app.config, "CLASSIFY_LLM_MODEL": "qwen3-vl-flash"})
        assert flash.classify(COFFEE, method="llm")["method"] == "llm"  # asked again, not the plus answer
        accepting = ClassifierService({**classify_app.config, "CLASSIFY_LLM_MODEL": "qwen3-vl-flash",
                                       "CLASSIFY_CACHE_ACCEPT_MODELS": ["qwen3-vl-plus"]})
        assert accepting.classify(CAT, method="llm")["method"] == "llm"
        assert accepting.classify(COFFEE, method="llm")["method"] == "cache"
    assert dashscope_vl.state.calls == 3


# -- image edit ----------------------------------------------------------------------------------
def test_arrears_stop_the_edit_worker_keep_images_queued_and_refuse_new_tasks(edit_app, dashscope_edit_fake):
    from xintu.edit.worker import EditWorker
    from xintu.models import EditTask
    user, headers = make_bound_user(app=edit_app, balance=3)
    dashscope_edit_fake.refuse_next = [(403, "Arrearage", "Access denied, please make sure your account is "
                                        "in good standing.")]
    client = edit_app.test_client()
    task = post_edit(client, headers, [photo("red"), photo("green")]).get_json()
    with edit_app.app_context():
        worker = EditWorker(edit_app.config)
        assert worker.run_once()
        row = EditTask.get(EditTask.task_id == task["task_id"])
        assert [i["status"] for i in row.images] == ["queued", "queued"]
        assert [i["attempts"] for i in row.images] == [0, 0]  # nothing counted against the images
        assert not worker.run_once() and dashscope_edit_fake.submissions == 0  # idle while open
    refused = post_edit(client, headers, [photo("blue")])
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "edit_upstream_unavailable"
    assert balance(edit_app, user) == 1  # the first task holds two; the refused one took nothing
    with edit_app.app_context():
        Breaker("dashscope.edit").close()
    drain(edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["status"] == "succeeded" and dashscope_edit_fake.submissions == 2


def test_moderation_fails_the_image_with_a_stable_code(edit_app, dashscope_edit_fake):
    from tests.edit_fixtures import sha256
    user, headers = make_bound_user(app=edit_app, balance=1)
    image = photo("red")
    dashscope_edit_fake.fail_sha256.add(sha256(image))
    client = edit_app.test_client()
    task = post_edit(client, headers, [image]).get_json()
    drain(edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["images"][0]["error_code"] == "content_moderated" and done["credits"]["refunded"] == 1
    assert balance(edit_app, user) == 1


@pytest.mark.parametrize("model", ["wan2.6-image", "wan2.7-image-pro", "qwen-image-2.0-pro"])
def test_current_edit_models_run_through_their_own_wire_shape(edit_app, dashscope_edit_fake, model):
    edit_app.config["EDIT_MODEL"] = model
    _, headers = make_bound_user(app=edit_app, balance=1)
    client = edit_app.test_client()
    task = post_edit(client, headers, [photo("red")]).get_json()
    drain(edit_app)
    done = client.get(f"/api/v1/image-edit/{task['task_id']}", headers=headers).get_json()
    assert done["status"] == "succeeded" and dashscope_edit_fake.models_seen == [model]
    assert client.get(done["images"][0]["url"], headers=headers).status_code == 200


def test_a_retired_edit_model_stops_calls_instead_of_failing_every_image(edit_app, dashscope_edit_fake):
    from xintu.models import EditTask
    edit_app.config["EDIT_MODEL"] = "qwen-vl-plus"  # set behind config validation's back
    _, headers = make_bound_user(app=edit_app, balance=1)
    task = post_edit(edit_app.test_client(), headers, [photo("red")]).get_json()
    from xintu.edit.worker import EditWorker
    with edit_app.app_context():
        EditWorker(edit_app.config).run_once()
        assert EditTask.get(EditTask.task_id == task["task_id"]).images[0]["status"] == "queued"
        assert Breaker("dashscope.edit").state()["reason"] == "model"


@pytest.mark.mariadb
def test_the_lease_is_renewed_during_a_slow_call_so_nobody_submits_twice(mysql_edit_app, dashscope_edit_fake):
    from xintu.edit.worker import EditWorker
    mysql_edit_app.config.update(EDIT_LEASE_SECONDS=2, EDIT_CALL_TIMEOUT=10)  # a call longer than the lease
    dashscope_edit_fake.latency = 3.5
    _, headers = make_bound_user(app=mysql_edit_app, balance=1)
    post_edit(mysql_edit_app.test_client(), headers, [photo("red")])
    stolen, done = [], threading.Event()

    def slow():
        with mysql_edit_app.app_context():
            EditWorker(mysql_edit_app.config, worker_id="slow").run_once()
        done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    with mysql_edit_app.app_context():
        other = EditWorker(mysql_edit_app.config, worker_id="other")
        while not done.wait(0.3):
            if other.claim() is not None:
                stolen.append(time.monotonic())
    thread.join()
    assert stolen == [] and dashscope_edit_fake.submissions == 1


def test_the_breaker_logs_once_per_opening(app, caplog):
    with app.app_context():
        breaker = Breaker("dashscope.classify", seconds=60)
        for _ in range(5):  # a batch of 20 fails together: one log line
            breaker.open("quota", "Throttling.AllocationQuota", "quota gone")
        assert [r.levelname for r in caplog.records if r.name == "xintu.upstreams"] == ["ERROR"]
        assert breaker.is_open()
        breaker.close()
        assert not breaker.is_open()
        breaker.open("billing", "Arrearage", "arrears")  # a new opening is logged again
    assert len([r for r in caplog.records if r.name == "xintu.upstreams"]) == 2
