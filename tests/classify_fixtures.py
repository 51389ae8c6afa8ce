"""Fixtures of the classification tests: the ONNX model built once, the fake Qwen-VL server, apps wired to it."""
from __future__ import annotations

import pytest

from xintu.sandbox.dashscope_vl import FakeDashScope


@pytest.fixture(scope="session")
def classify_model_dir(tmp_path_factory):
    """The EfficientNet-Lite0 ONNX file, converted from the weights package once per test session."""
    from xintu.classify.imagenet import ensure_model
    path = tmp_path_factory.mktemp("models")
    ensure_model(str(path))
    return str(path)


@pytest.fixture(scope="session")
def local_classifier(classify_model_dir):
    from xintu.classify.local import get_local
    return get_local(classify_model_dir)


@pytest.fixture
def dashscope_vl():
    """The fake DashScope MultiModalConversation endpoint on a free loopback port."""
    with FakeDashScope() as fake:
        yield fake


def _classify_app(tmp_path, extra: dict):
    from xintu import db, migrations
    from xintu.app import create_app
    from xintu.settings_store import clear_cache
    clear_cache()
    app = create_app({"ENV": "testing", "SANDBOX": False, "REPLICA_CHECK_INTERVAL": 0,
                      "INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test-" + "k" * 40, **extra})
    migrations.migrate(db.primary.obj)
    return app


@pytest.fixture
def classify_app(tmp_path, classify_model_dir, dashscope_vl):
    """SQLite app whose classifier talks to the fake Qwen-VL through the real dashscope SDK."""
    app = _classify_app(tmp_path, {"CLASSIFY_MODEL_DIR": classify_model_dir, "DASHSCOPE_API_KEY": "sk-test-key-0001",
                                   "DASHSCOPE_BASE_URL": dashscope_vl.base_url, "CLASSIFY_LLM_TIMEOUT": 2.0,
                                   "CLASSIFY_LLM_RETRIES": 1})
    yield app
    from xintu import db
    from xintu.classify.request_log import buffer
    buffer.flush()
    db.close_all()


@pytest.fixture
def local_app(tmp_path, classify_model_dir):
    """SQLite app with no DashScope key at all: the offline, key-free configuration."""
    app = _classify_app(tmp_path, {"CLASSIFY_MODEL_DIR": classify_model_dir})
    yield app
    from xintu import db
    from xintu.classify.request_log import buffer
    buffer.flush()
    db.close_all()


def register(test_client) -> dict:
    import secrets
    r = test_client.post("/api/v1/clients", json={"client_id": "pc-" + secrets.token_hex(6), "platform": "windows"})
    assert r.status_code == 201, r.get_json()
    return {"Authorization": f"Bearer {r.get_json()['token']}"}


@pytest.fixture
def auth(classify_app):
    return register(classify_app.test_client())
