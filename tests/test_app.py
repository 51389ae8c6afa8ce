"""The app factory: probes, error JSON shape, request ids, OpenAPI document, device tokens."""

import os

import pytest

from xintu.app import _request_ids as request_ids
from xintu.errors import Conflict


def test_healthz_answers_without_touching_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"


def test_readyz_reports_primary_and_missing_replica(client):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready" and body["primary"]["ok"] is True
    assert body["replica"]["configured"] is False and body["replica"]["used_for_stale_reads"] is False


def test_landing_page_links_the_api_docs_and_the_embedded_sites(client):
    page = client.get("/").get_data(as_text=True)
    for href in ("/api/v1/docs", "/h5/", "/admin/"):
        assert f'href="{href}"' in page
    admin = client.get("/admin/")
    assert admin.status_code == 200 and "管理后台" in admin.get_data(as_text=True)
    assert client.get("/admin/../setup.py").status_code == 404


def test_production_does_not_serve_the_admin_site_from_the_app(app, client):
    app.config["ENV"] = "production"
    assert client.get("/admin/").status_code == 404
    assert 'href="/admin/"' not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("method,path,status,code", [
    ("get", "/no/such/page", 404, "not_found"),
    ("put", "/healthz", 405, "method_not_allowed"),
    ("post", "/api/v1/clients", 422, "validation_error"),
])
def test_framework_errors_have_the_json_error_shape(client, method, path, status, code):
    response = getattr(client, method)(path, json={})
    assert response.status_code == status
    body = response.get_json()
    assert body["error"]["code"] == code and isinstance(body["error"]["message"], str)


def test_oversized_body_is_413_json(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = client.post("/api/v1/clients", data=b"x" * 4096, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_service_errors_and_crashes_become_json(app):
    @app.get("/_raise/conflict")
    def _conflict():
        raise Conflict("订单状态已变化", code="order_state_changed")

    @app.get("/_raise/crash")
    def _crash():
        raise RuntimeError("boom")

    test_client = app.test_client()
    response = test_client.get("/_raise/conflict")
    assert response.status_code == 409
    assert response.get_json() == {"error": {"code": "order_state_changed", "message": "订单状态已变化"}}
    response = test_client.get("/_raise/crash")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "boom" not in response.get_data(as_text=True)


def test_request_id_is_echoed_when_sane_and_generated_otherwise(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc12345-nginx"}).headers["X-Request-ID"] \
        == "abc12345-nginx"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert len(generated) == 32 and generated.isalnum()


def test_generated_request_ids_are_unique_in_a_process_and_across_forked_workers(client):
    ids = [client.get("/healthz").headers["X-Request-ID"] for _ in range(3)]
    assert len(set(ids)) == 3 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()   # as gunicorn starts a worker from a master that imported the app (preload)
    if pid == 0:
        os.write(write, request_ids.next().encode())   # nothing that may take a lock a thread held
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert len(child) == 32 and child[:20] != ids[0][:20]   # the forked worker drew its own prefix


def test_openapi_document_and_offline_docs(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/clients" in spec["paths"]
    assert spec["paths"]["/api/v1/clients"]["post"]["requestBody"]["required"] is True
    assert "servers" not in spec or spec["servers"] == []
    page = client.get("/api/v1/docs").get_data(as_text=True)
    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/api/v1/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_device_registration_issues_a_token_that_authenticates(app, client):
    from xintu.auth import client_auth, current_user

    @app.get("/_whoami")
    @app.auth_required(client_auth)
    def _whoami():
        from flask import g
        return {"client_id": g.client.client_id, "user": current_user()}

    created = client.post("/api/v1/clients", json={"client_id": "install-0001", "platform": "mac"})
    assert created.status_code == 201
    token = created.get_json()["token"]
    response = client.get("/_whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.get_json() == {"client_id": "install-0001", "user": None}
    for bad in ("Bearer xt_forged", "Bearer ", token):
        response = client.get("/_whoami", headers={"Authorization": bad})
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"



def test_a_bound_client_reads_its_user_only_where_a_view_uses_it(app, client, caplog):
    """The user row carries balances, so it is read fresh, and only by views that use it: a bound client's
    cache check asks nothing of ``users``, its profile does."""
    import logging

    from tests.factories import make_bound_user

    user, headers = make_bound_user(balance=7, app=app)
    def users_queries(response):
        assert response.status_code == 200, response.get_data()
        found = [r for r in caplog.records if r.name == "peewee" and '"users"' in str(r.msg)]
        caplog.clear()
        return found
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        checked = client.post("/api/v1/classify/batch-check-cache", json={"hashes": ["ab" * 32]}, headers=headers)
        assert users_queries(checked) == []
        me = client.get("/api/v1/me", headers=headers)
        assert len(users_queries(me)) >= 1 and me.get_json()["credits_balance"] == 7


def test_only_the_token_hash_is_stored(app, client):
    from xintu.models import ClientSession

    token = client.post("/api/v1/clients", json={"client_id": "install-0002"}).get_json()["token"]
    with app.app_context():
        stored = [row.token_hash for row in ClientSession.select()]
    assert token not in stored and len(stored[0]) == 64


def test_registration_is_rate_limited_per_address(app, client):
    app.config["CLIENT_REGISTRATIONS_PER_HOUR"] = 3
    codes = [client.post("/api/v1/clients", json={"client_id": f"install-{i:04d}"}).status_code
             for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    other = client.post("/api/v1/clients", json={"client_id": "install-other"},
                        environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 201


def test_authenticated_requests_are_rate_limited_per_client_token(app, client):
    from xintu.auth import client_auth

    @app.get("/_ping")
    @app.auth_required(client_auth)
    def _ping():
        return {"ok": True}

    from xintu.auth import ClientRateLimiter

    now = [120.0]
    app.extensions["xintu_client_limiter"] = ClientRateLimiter(clock=lambda: now[0])
    app.config["CLIENT_REQUESTS_PER_MINUTE"] = 3
    first = client.post("/api/v1/clients", json={"client_id": "install-rl-1"}).get_json()["token"]
    second = client.post("/api/v1/clients", json={"client_id": "install-rl-2"}).get_json()["token"]
    codes = [client.get("/_ping", headers={"Authorization": f"Bearer {first}"}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    limited = client.get("/_ping", headers={"Authorization": f"Bearer {first}"})
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "client_rate_limited"
    assert client.get("/_ping", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    now[0] += 60  # next minute: allowed again
    assert client.get("/_ping", headers={"Authorization": f"Bearer {first}"}).status_code == 200


def test_registration_is_limited_per_ipv6_64_not_only_per_address(app, client):
    app.config.update(CLIENT_REGISTRATIONS_PER_HOUR=2, CLIENT_REGISTRATIONS_PER_NET_HOUR=3)
    codes = [client.post("/api/v1/clients", json={"client_id": f"install-v6-{i:02d}"},
                         environ_base={"REMOTE_ADDR": f"2001:db8:1:2::{i + 1:x}"}).get_json()
             for i in range(5)]
    assert [("token" in c) for c in codes] == [True, True, True, False, False]
    assert codes[3]["error"]["code"] == "registration_net_rate_limited"
    other_line = client.post("/api/v1/clients", json={"client_id": "install-v6-other"},
                             environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"})
    assert other_line.status_code == 201


def test_forwarded_headers_count_only_from_trusted_proxies(app, client):
    from xintu.models import ClientSession

    def register(peer, forwarded):
        resp = client.post("/api/v1/clients", json={"client_id": "install-" + peer.replace(".", "-")},
                           headers={"X-Forwarded-For": forwarded}, environ_base={"REMOTE_ADDR": peer})
        assert resp.status_code == 201
        with app.app_context():
            return ClientSession.get(ClientSession.client_id == resp.get_json()["client_id"]).created_ip

    assert register("127.0.0.1", "198.51.100.7") == "198.51.100.7"     # nginx on loopback
    assert register("203.0.113.9", "198.51.100.8") == "203.0.113.9"    # a host reaching gunicorn directly
    from xintu.app import create_app
    other = create_app({"INSTANCE_PATH": app.config["INSTANCE_PATH"], "SECRET_KEY": app.config["SECRET_KEY"],
                        "TRUSTED_PROXY_ADDRS": ["10.0.0.0/24"]})
    seen = other.test_client().get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"},
                                   environ_base={"REMOTE_ADDR": "10.0.0.3"})
    assert seen.status_code == 404          # forwarded through a proxy: never the monitoring address


def test_metrics_and_readyz_details_go_by_tcp_peer_only(client):
    assert client.get("/metrics").status_code == 200                   # Prometheus on loopback
    for peer, headers in [("203.0.113.9", {"X-Forwarded-For": "127.0.0.1"}),
                          ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"})]:
        assert client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code == 404
        public = client.get("/readyz", headers=headers, environ_base={"REMOTE_ADDR": peer})
        assert public.status_code == 200 and public.get_json() == {"status": "ready"}
    assert "replica" in client.get("/readyz").get_json()


def test_public_readyz_hides_the_database_error(tmp_path):
    from xintu.app import create_app

    down = create_app({"INSTANCE_PATH": str(tmp_path / "i"), "SECRET_KEY": "test-" + "k" * 40,
                       "DATABASE_URL": "mysql://xintu:secret@127.0.0.1:9/xintu"})
    public = down.test_client().get("/readyz", environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert public.status_code == 503 and public.get_json() == {"status": "not_ready"}
    internal = down.test_client().get("/readyz")
    assert internal.status_code == 503 and internal.get_json()["primary"]["ok"] is False


@pytest.mark.parametrize("key", ["TRUSTED_PROXY_ADDRS", "METRICS_ALLOWED_ADDRS", "ADMIN_ALLOWED_ADDRS"])
def test_an_unreadable_proxy_or_monitoring_address_fails_at_start(tmp_path, key):
    from xintu.app import create_app
    from xintu.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        create_app({"INSTANCE_PATH": str(tmp_path / "i"), "SECRET_KEY": "test-" + "k" * 40,
                    key: ["127.0.0.1", "10.0.0.0/33"]})
