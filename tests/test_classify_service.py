"""ClassifierService through the API: cache, Qwen-VL via the real SDK against the fake, fallback, batch, log."""
import base64
import hashlib
import io
import threading

import pytest

from tests.classify_fixtures import register
from tests.classify_images import package_photo, phone_screenshot
from xintu.classify.request_log import buffer

COFFEE = package_photo("skimage:coffee.png")
CAT = package_photo("skimage:chelsea.png")
FOOD_ANSWER = {"category": "foods", "confidence": 0.93, "description": "一杯意式浓缩咖啡"}


def _post(client, headers, data, path="/api/v1/classify", **form):
    return client.post(path, headers=headers, data={"image": (io.BytesIO(data), "x.png"), **form})


def _cache_rows():
    from xintu.models import ClassifyCache
    return list(ClassifyCache.select())


def test_llm_answer_is_cached_and_then_served_from_cache(classify_app, auth, dashscope_vl):
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    first = _post(client, auth, COFFEE).get_json()
    assert first["method"] == "llm" and first["category"] == "foods"
    assert first["description"] == "一杯意式浓缩咖啡" and first["sha256"] == hashlib.sha256(COFFEE).hexdigest()
    second = _post(client, auth, COFFEE).get_json()
    assert second["method"] == "cache" and second["category"] == "foods"
    assert dashscope_vl.state.calls == 1
    with classify_app.app_context():
        buffer.flush()
        (row,) = _cache_rows()
        assert row.source == "llm" and row.hits == 1 and row.model_version == "qwen3-vl-plus"


def test_lying_client_hash_cannot_poison_the_cache(classify_app, auth, dashscope_vl):
    client = classify_app.test_client()
    coffee_sha = hashlib.sha256(COFFEE).hexdigest()
    dashscope_vl.state.answer = {"category": "pets", "confidence": 0.9, "description": "一只猫"}
    # Upload the cat while claiming to be the coffee photo, in every field a client could use.
    r = _post(client, auth, CAT, sha256=coffee_sha, image_sha256=coffee_sha, hash=coffee_sha)
    assert r.get_json()["sha256"] == hashlib.sha256(CAT).hexdigest() != coffee_sha
    miss = client.post("/api/v1/classify/check-cache", headers=auth, json={"sha256": coffee_sha}).get_json()
    assert miss["hit"] is None
    dashscope_vl.state.answer = FOOD_ANSWER
    coffee = _post(client, auth, COFFEE).get_json()
    assert (coffee["method"], coffee["category"]) == ("llm", "foods")
    hit = client.post("/api/v1/classify/check-cache", headers=auth, json={"sha256": coffee_sha.upper()}).get_json()
    assert hit["hit"]["category"] == "foods" and hit["hit"]["method"] == "cache"


@pytest.mark.parametrize("mode", ["garbage", "bad_category", "not_json", "error500", "error429", "hang"])
def test_llm_failure_falls_back_to_local_and_caches_nothing(classify_app, auth, dashscope_vl, mode):
    dashscope_vl.state.configure(mode=mode)
    classify_app.extensions.clear()
    classify_app.config["CLASSIFY_LLM_TIMEOUT"] = 0.5
    client = classify_app.test_client()
    r = _post(client, auth, CAT)
    assert r.status_code == 200
    body = r.get_json()
    assert (body["method"], body["category"]) == ("llm_fallback", "pets")
    with classify_app.app_context():
        assert _cache_rows() == []
    calls = dashscope_vl.state.calls
    assert _post(client, auth, CAT).get_json()["method"] == "llm_fallback"
    assert dashscope_vl.state.calls > calls  # nothing was cached, so the LLM is asked again


def test_ten_concurrent_identical_requests_make_one_upstream_call(classify_app, dashscope_vl):
    dashscope_vl.state.configure(latency=0.5)
    dashscope_vl.state.answer = FOOD_ANSWER
    headers = [register(classify_app.test_client()) for _ in range(10)]
    results, start = [], threading.Barrier(10)

    def worker(h):
        client = classify_app.test_client()
        start.wait()
        results.append(_post(client, h, COFFEE))

    threads = [threading.Thread(target=worker, args=(h,)) for h in headers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in results] == [200] * 10
    assert {r.get_json()["category"] for r in results} == {"foods"}
    assert dashscope_vl.state.calls == 1


def test_operator_switch_local_never_calls_the_llm(classify_app, auth, dashscope_vl, monkeypatch):
    from click.testing import CliRunner

    from xintu_cli.main import cli
    env = {"XINTU_INSTANCE_PATH": classify_app.config["INSTANCE_PATH"]}
    result = CliRunner().invoke(cli, ["config", "set", "inference.mode", "local"], env=env)
    assert result.exit_code == 0, result.output
    from xintu.settings_store import clear_cache
    clear_cache()
    body = _post(classify_app.test_client(), auth, COFFEE).get_json()
    assert (body["method"], body["category"]) == ("local", "foods")
    assert dashscope_vl.state.calls == 0
    bad = CliRunner().invoke(cli, ["config", "set", "inference.mode", "fastest"], env=env)
    assert bad.exit_code == 1 and "inference.mode must be one of" in bad.output


def test_no_api_key_means_local_answers_offline(local_app):
    client = local_app.test_client()
    headers = register(client)
    body = _post(client, headers, CAT).get_json()
    assert (body["method"], body["category"]) == ("local", "pets")
    with local_app.app_context():
        assert _cache_rows() == []  # local answers are not cached unless configured


def test_local_endpoint_explains_its_answer(classify_app, auth, dashscope_vl):
    body = _post(classify_app.test_client(), auth, phone_screenshot(), path="/api/v1/classify/local").get_json()
    assert (body["method"], body["category"]) == ("local", "screenshot")
    assert body["details"]["flat"] > 0.45 and body["details"]["top"][0][0] == "web site"
    assert dashscope_vl.state.calls == 0


def test_base64_json_upload(classify_app, auth, dashscope_vl):
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    b64 = base64.b64encode(COFFEE).decode()
    assert client.post("/api/v1/classify", headers=auth, json={"image_base64": b64}).get_json()["category"] == "foods"
    bad = client.post("/api/v1/classify", headers=auth, json={"image_base64": "@@not base64@@"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "image_base64_invalid"
    none = client.post("/api/v1/classify", headers=auth, json={})
    assert none.status_code == 400 and none.get_json()["error"]["code"] == "image_missing"


def test_classify_needs_a_device_token(classify_app):
    r = _post(classify_app.test_client(), {"Authorization": "Bearer xt_forged"}, COFFEE)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


def test_batch_runs_items_concurrently_with_per_item_errors(classify_app, auth, dashscope_vl):
    dashscope_vl.state.configure(latency=0.3)
    dashscope_vl.state.answer = FOOD_ANSWER
    photos = [package_photo(r) for r in ("skimage:coffee.png", "skimage:chelsea.png", "skimage:astronaut.png",
                                         "skimage:rocket.jpg", "sklearn:china.jpg")]
    files = [(io.BytesIO(p), f"p{i}.img") for i, p in enumerate(photos)] + [(io.BytesIO(b"nope"), "bad.txt")]
    r = classify_app.test_client().post("/api/v1/classify/batch", headers=auth, data={"images": files})
    body = r.get_json()
    assert r.status_code == 200 and body["count"] == 6
    assert [x["filename"] for x in body["results"]] == [f"p{i}.img" for i in range(5)] + ["bad.txt"]
    assert all(x["method"] == "llm" for x in body["results"][:5])
    assert body["results"][5]["error"]["code"] == "image_unsupported"
    assert dashscope_vl.state.max_inflight >= 4  # not one after another
    with classify_app.app_context():
        buffer.flush()
        from xintu.models import RequestLog
        rows = list(RequestLog.select().where(RequestLog.endpoint == "classify/batch"))
        assert len(rows) == 6 and {r.batch_size for r in rows} == {6}
        assert sorted(r.ok for r in rows) == [False] + [True] * 5


def test_batch_limits(classify_app, auth):
    client = classify_app.test_client()
    files = [(io.BytesIO(COFFEE), f"{i}.png") for i in range(21)]
    r = client.post("/api/v1/classify/batch", headers=auth, data={"images": files})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "batch_too_large"
    r = client.post("/api/v1/classify/batch", headers=auth, json={"images": []})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "image_missing"


def test_batch_check_cache(classify_app, auth, dashscope_vl):
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    _post(client, auth, COFFEE)
    known, unknown = hashlib.sha256(COFFEE).hexdigest(), "0" * 64
    body = client.post("/api/v1/classify/batch-check-cache", headers=auth,
                       json={"hashes": [known, unknown, known]}).get_json()
    assert list(body["hits"]) == [known] and body["hits"][known]["category"] == "foods"
    assert body["missing"] == [unknown]
    too_many = client.post("/api/v1/classify/batch-check-cache", headers=auth, json={"hashes": [unknown] * 101})
    assert too_many.status_code == 422
    not_hex = client.post("/api/v1/classify/check-cache", headers=auth, json={"sha256": "zz" * 32})
    assert not_hex.status_code == 422
    with classify_app.app_context():
        buffer.flush()
        from xintu.models import RequestLog
        (row,) = RequestLog.select().where(RequestLog.endpoint == "classify/batch-check-cache")
        assert row.batch_size == 2 and row.client.startswith("pc-")
    # The body is assembled by hand; it is byte for byte what the app's JSON provider writes, whatever its shape.
    for hashes in ([known, unknown, known], [known], [unknown, "1" * 64]):
        answer = client.post("/api/v1/classify/batch-check-cache", headers=auth, json={"hashes": hashes})
        with classify_app.app_context():
            assert answer.get_data() == classify_app.json.response(answer.get_json()).get_data()


def test_every_request_writes_a_log_row(classify_app, auth, dashscope_vl):
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    _post(client, auth, COFFEE)
    _post(client, auth, COFFEE)
    _post(client, auth, b"")
    with classify_app.app_context():
        buffer.flush()
        from xintu.models import RequestLog
        rows = [(r.endpoint, r.method, r.category, r.ok, r.status) for r in RequestLog.select().order_by(RequestLog.id)]
    assert rows == [("classify", "llm", "foods", True, 200), ("classify", "cache", "foods", True, 200),
                    ("classify", None, None, False, 400)]


@pytest.mark.mariadb
def test_cache_and_log_on_mariadb(mariadb, mysql_database, tmp_path, classify_model_dir, dashscope_vl):
    from tests.classify_fixtures import _classify_app
    app = _classify_app(tmp_path, {"DATABASE_URL": mariadb.app_url(mysql_database),
                                   "CLASSIFY_MODEL_DIR": classify_model_dir, "DASHSCOPE_API_KEY": "sk-test-key-0001",
                                   "DASHSCOPE_BASE_URL": dashscope_vl.base_url, "CLASSIFY_CACHE_LOCAL": True})
    dashscope_vl.state.answer = FOOD_ANSWER
    client = app.test_client()
    headers = register(client)
    assert _post(client, headers, COFFEE).get_json()["method"] == "llm"
    with app.app_context():
        from xintu.classify.cache import Version
        from xintu.classify.service import get_service
        svc = get_service(app)
        # A second writer of the same key (another host) is ignored, not an error.
        svc.cache.put(hashlib.sha256(COFFEE).hexdigest(), svc.llm_version, "pets", 0.5, "x")
        svc.cache.put("a" * 64, Version("local-x", "r0", "local"), "other", 0.4, "其他")
    assert _post(client, headers, COFFEE).get_json()["category"] == "foods"
    with app.app_context():
        buffer.flush()
        from xintu.models import RequestLog
        assert [r.method for r in RequestLog.select().order_by(RequestLog.id)] == ["llm", "cache"]
        (row,) = [r for r in _cache_rows() if r.image_sha256 == hashlib.sha256(COFFEE).hexdigest()]
        assert row.hits == 1
    from xintu import db
    db.close_all()


def test_embedded_sandbox_is_local_only_unless_asked(classify_model_dir, tmp_path):
    from xintu.classify.model_client import ModelClient
    from xintu.sandbox import start_embedded
    assert start_embedded({"SANDBOX_LLM": False}) == {}
    overrides = start_embedded({"SANDBOX_LLM": True, "CLASSIFY_MODEL_DIR": classify_model_dir,
                                "INSTANCE_PATH": str(tmp_path)})
    client = ModelClient(overrides["DASHSCOPE_API_KEY"], base_url=overrides["DASHSCOPE_BASE_URL"])
    assert client.classify(CAT, "image/png").category == "pets"  # the demo 'LLM' answers like the local model


def test_llm_mode_without_a_key_says_llm_fallback(local_app):
    from xintu.settings_store import set_setting
    with local_app.app_context():
        set_setting("inference.mode", "llm")
    client = local_app.test_client()
    body = _post(client, register(client), COFFEE).get_json()
    assert (body["method"], body["category"]) == ("llm_fallback", "foods")


def test_local_answers_are_cached_only_when_configured(tmp_path, classify_model_dir):
    from tests.classify_fixtures import _classify_app
    app = _classify_app(tmp_path, {"CLASSIFY_MODEL_DIR": classify_model_dir, "CLASSIFY_CACHE_LOCAL": True})
    client = app.test_client()
    headers = register(client)
    assert _post(client, headers, CAT).get_json()["method"] == "local"
    again = _post(client, headers, CAT).get_json()
    assert (again["method"], again["category"]) == ("cache", "pets")
    local_only = _post(client, headers, CAT, path="/api/v1/classify/local").get_json()
    assert local_only["method"] == "local" and "details" in local_only  # diagnostic: always runs the model
    with app.app_context():
        (row,) = _cache_rows()
        assert row.source == "local" and row.model_version.startswith("local-")
    from xintu import db
    buffer.flush()
    db.close_all()


def test_llm_budgets_per_device_and_global_fall_back_to_the_local_model(classify_app, dashscope_vl):
    from prometheus_client import REGISTRY

    from xintu import budgets

    def spent(scope):
        return REGISTRY.get_sample_value("xintu_classify_llm_budget_total", {"scope": scope}) or 0

    dashscope_vl.state.answer = FOOD_ANSWER
    classify_app.config.update(LLM_BUDGET_PER_DEVICE_DAY=2, LLM_BUDGET_GLOBAL_DAY=3)
    client = classify_app.test_client()
    first, second = register(client), register(client)
    photos = [package_photo(r) for r in ("skimage:coffee.png", "skimage:chelsea.png", "skimage:astronaut.png",
                                         "skimage:rocket.jpg")]
    before = spent("device"), spent("global")
    methods = [_post(client, first, p).get_json() for p in photos[:3]]
    assert [m["method"] for m in methods] == ["llm", "llm", "local"]
    assert methods[2]["details"]["llm_skipped"] == "budget_device"
    # another device still has its own budget, until the service-wide one is spent
    assert _post(client, second, photos[2]).get_json()["method"] == "llm"
    batch = client.post("/api/v1/classify/batch", headers=second,
                        data={"images": [(io.BytesIO(photos[3]), "p.jpg")]}).get_json()["results"][0]
    assert batch["method"] == "local" and batch["details"]["llm_skipped"] == "budget_global"
    assert dashscope_vl.state.calls == 3
    assert (spent("device"), spent("global")) == (before[0] + 1, before[1] + 1)
    with classify_app.app_context():
        assert budgets.used("llm:all") == 3            # the refused calls gave their device unit back
        buffer.flush()
        from xintu.models import RequestLog
        logged = [r.method for r in RequestLog.select().order_by(RequestLog.id)]
    assert logged == ["llm", "llm", "llm_budget", "llm", "llm_budget"]


def _strip() -> bytes:
    """A valid 3000×2 PNG: its working image is 960×1, which the local model refuses to read."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (3000, 2), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def _local_first(app, **config):
    app.config.update({"CLASSIFY_AUTO_FIRST": "local", **config})
    app.extensions.clear()
    return app.test_client()


def test_auto_local_first_answers_locally_without_calling_out(classify_app, auth, dashscope_vl):
    body = _post(_local_first(classify_app), auth, CAT).get_json()
    assert (body["method"], body["category"]) == ("local", "pets") and dashscope_vl.state.calls == 0


def test_unreadable_working_image_falls_back_to_the_llm_in_auto_mode(classify_app, auth, dashscope_vl):
    dashscope_vl.state.answer = {"category": "other", "confidence": 0.7, "description": "一条色带"}
    client = _local_first(classify_app)
    body = _post(client, auth, _strip()).get_json()
    assert (body["method"], body["category"], body["description"]) == ("local_fallback", "other", "一条色带")
    assert dashscope_vl.state.calls == 1
    with classify_app.app_context():
        (row,) = _cache_rows()
        assert row.source == "llm"  # a validated LLM answer: cached as such
    assert _post(client, auth, _strip()).get_json()["method"] == "cache" and dashscope_vl.state.calls == 1


def test_broken_local_model_falls_back_to_the_llm_in_auto_mode(classify_app, auth, dashscope_vl, tmp_path):
    broken = tmp_path / "broken-models"
    broken.mkdir()
    (broken / "efficientnet-lite0.onnx").write_bytes(b"not an onnx file")  # e.g. a disk that filled up
    dashscope_vl.state.answer = {"category": "pets", "confidence": 0.9, "description": "一只猫"}
    client = _local_first(classify_app, CLASSIFY_MODEL_DIR=str(broken))
    body = _post(client, auth, CAT).get_json()
    assert (body["method"], body["category"]) == ("local_fallback", "pets") and dashscope_vl.state.calls == 1


@pytest.mark.parametrize("auto_first", ["local", "llm"])
def test_when_both_ways_fail_the_client_gets_a_stable_4xx(classify_app, auth, dashscope_vl, auto_first):
    dashscope_vl.state.configure(mode="error500")
    client = _local_first(classify_app, CLASSIFY_AUTO_FIRST=auto_first)
    r = _post(client, auth, _strip())
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "image_unreadable"
    assert dashscope_vl.state.calls >= 1


def test_local_mode_never_falls_back_to_the_llm(classify_app, auth, dashscope_vl):
    r = _post(_local_first(classify_app), auth, _strip(), path="/api/v1/classify/local")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "image_unreadable"
    assert dashscope_vl.state.calls == 0


def test_auto_first_must_name_a_path(tmp_path):
    from xintu.config import load_config
    from xintu.errors import ConfigError
    with pytest.raises(ConfigError, match="CLASSIFY_AUTO_FIRST"):
        load_config({"CLASSIFY_AUTO_FIRST": "fastest"}, environ={}, instance=str(tmp_path))


def test_batch_check_cache_bad_bodies_get_the_schemas_errors(classify_app, auth):
    """Well-formed bodies take a fast path; everything else is validated by BatchCheckIn as before."""
    client = classify_app.test_client()
    good = "a" * 64
    for body, field in [({"hashes": [good], "extra": 1}, "extra"), ({"hashes": good}, "hashes"),
                        ({"hashes": [good, 7]}, "hashes"), ({"hashes": [good, good + "\x00"]}, "hashes"),
                        ({"hashes": []}, "hashes"), ({"hashes": [good] * 101}, "hashes"), ([good], None),
                        ({}, "hashes"), ({"hashes": [good, "a" * 62 + " a"]}, "hashes"),   # whitespace
                        ({"hashes": ["g" * 64]}, "hashes"), ({"hashes": [good, "a" * 63 + "é"]}, "hashes")]:
        r = client.post("/api/v1/classify/batch-check-cache", headers=auth, json=body)
        assert r.status_code == 422, (body, r.get_json())
        error = r.get_json()["error"]
        assert error["code"] == "validation_error" and (field is None or field in str(error["details"])), error
    upper = client.post("/api/v1/classify/batch-check-cache", headers=auth, json={"hashes": [good.upper(), good]})
    assert upper.status_code == 200 and upper.get_json() == {"hits": {}, "missing": [good]}


def test_found_answers_are_remembered_misses_never(classify_app, auth, dashscope_vl):
    """CLASSIFY_CACHE_MEMORY_ENTRIES: a found answer is served from the worker's memory (here: even after
    its row is gone behind the app's back), a miss asks the database again, so a new answer is seen at once."""
    from xintu.models import ClassifyCache

    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    known, later = hashlib.sha256(COFFEE).hexdigest(), hashlib.sha256(CAT).hexdigest()
    check = lambda: client.post("/api/v1/classify/batch-check-cache", headers=auth,  # noqa: E731
                                json={"hashes": [known, later]}).get_json()
    assert check()["missing"] == [known, later]
    _post(client, auth, COFFEE)
    _post(client, auth, CAT)
    first = check()
    assert set(first["hits"]) == {known, later} and first["missing"] == []
    with classify_app.app_context():
        assert ClassifyCache.delete().where(ClassifyCache.image_sha256 == known).execute() == 1
    again = check()
    assert again["hits"][known] == first["hits"][known] and again["missing"] == []
    classify_app.config["CLASSIFY_CACHE_MEMORY_ENTRIES"] = 0
    classify_app.extensions.pop("xintu.classify")     # the service is rebuilt from the config
    assert check()["missing"] == [known]
