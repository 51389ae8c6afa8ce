"""The whole deployment on loopback: MariaDB primary + replica, gunicorn running the app, nginx (TLS) in
front of it, lighttpd serving the three vhosts and proxying the WeChat paths — all from rendered configs."""

from __future__ import annotations

import hashlib
import secrets
import socket
import ssl
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests

from xintu.ops import replication, sites
from xintu.ops.stack import LoopbackStack

SECRET = "topology-shared-secret-" + secrets.token_hex(8)
WECHAT_TOKEN = "topologytoken" + secrets.token_hex(4)
CATEGORIES = {"social_activities", "pets", "single_person", "foods", "travel_scenery", "screenshot", "idcard",
              "other"}


@pytest.fixture(scope="module")
def nginx_stack(mariadb, tmp_path_factory, classify_model_dir):
    database = mariadb.create_database()
    stack = LoopbackStack(tmp_path_factory.mktemp("stack"), {
        "XINTU_CLASSIFY_MODEL_DIR": classify_model_dir,
        "XINTU_DATABASE_URL": mariadb.app_url(database),
        "XINTU_REPLICA_URL": mariadb.ro_url(database),
        "XINTU_WECHAT_TOKEN": WECHAT_TOKEN,
        "XINTU_WECHAT_APP_ID": "wx0000000000000000",
        "XINTU_WECHAT_APP_SECRET": "topology-app-secret",
    }, secret=SECRET)
    with stack:
        stack.database = database
        yield stack
    mariadb.drop_database(database)


def test_client_requests_reach_the_app_through_nginx_over_tls(nginx_stack):
    health = requests.get(f"{nginx_stack.nginx_url}/healthz", verify=nginx_stack.cert, timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.headers["Strict-Transport-Security"].startswith("max-age=63072000")
    assert len(health.headers["X-Request-ID"]) == 32 and "," not in health.headers["X-Request-ID"]
    ready = requests.get(f"{nginx_stack.nginx_url}/readyz", verify=nginx_stack.cert, timeout=10).json()
    assert ready["primary"]["ok"] is True and ready["replica"]["used_for_stale_reads"] is True
    registered = requests.post(f"{nginx_stack.nginx_url}/api/v1/clients", verify=nginx_stack.cert, timeout=10,
                               json={"client_id": "topology-" + secrets.token_hex(4), "platform": "windows"})
    assert registered.status_code == 201 and registered.json()["token"]


def test_a_photo_is_classified_through_nginx(nginx_stack):
    from io import BytesIO

    from PIL import Image
    from skimage import data

    photo = BytesIO()
    Image.fromarray(data.coffee()).save(photo, "JPEG", quality=85)
    base = nginx_stack.nginx_url
    device = {"client_id": "topology-" + secrets.token_hex(4), "platform": "mac"}
    token = requests.post(f"{base}/api/v1/clients", verify=nginx_stack.cert, timeout=10,
                          json=device).json()["token"]
    answer = requests.post(f"{base}/api/v1/classify", verify=nginx_stack.cert, timeout=60,
                           headers={"Authorization": f"Bearer {token}"},
                           files={"image": ("coffee.jpg", photo.getvalue(), "image/jpeg")})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["method"] == "local" and result["category"] in CATEGORIES
    assert 0 <= result["confidence"] <= 1
    anonymous = requests.post(f"{base}/api/v1/classify", verify=nginx_stack.cert, timeout=10,
                              files={"image": ("coffee.jpg", photo.getvalue(), "image/jpeg")})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"]


def test_nginx_redirects_plain_http_and_keeps_wechat_paths_to_the_web_tier(nginx_stack):
    plain = requests.get(f"{nginx_stack.nginx_http_url}/healthz", allow_redirects=False, timeout=10,
                         headers={"Host": "api.xintu.test"})
    assert plain.status_code == 301 and plain.headers["Location"] == "https://api.xintu.test/healthz"
    refused = requests.post(f"{nginx_stack.nginx_url}/wechat/callback", data=b"<xml/>",
                            verify=nginx_stack.cert, timeout=10)
    assert refused.status_code == 404


def test_nginx_refuses_a_body_over_the_limit_before_reading_it(nginx_stack):
    limit = nginx_stack.settings["app"]["body_limit_mb"] << 20
    context = ssl.create_default_context(cafile=nginx_stack.cert)
    address = ("127.0.0.1", nginx_stack.settings["app"]["https_port"])
    with socket.create_connection(address, timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="api.xintu.test") as conn:
        conn.sendall(f"POST /api/v1/classify/batch HTTP/1.1\r\nHost: api.xintu.test\r\n"
                     f"Content-Length: {limit + 1}\r\nContent-Type: multipart/form-data\r\n\r\n".encode())
        status_line = conn.recv(4096).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"


def test_web_tier_serves_three_vhosts_with_cdn_cache_headers(nginx_stack):
    built = set(sites.discover())
    assert {"official", "aifuture"} <= built
    for vhost, needle in (("official", "芯图相册"), ("admin", "管理后台"), ("aifuture", "Aifuture")):
        page = requests.get(f"{nginx_stack.lighttpd_url}/", headers={"Host": nginx_stack.host(vhost)},
                            timeout=10)
        if vhost not in built:   # the admin SPA's sources land with the admin area
            assert page.status_code == 404
            continue
        assert page.status_code == 200 and needle in page.text, vhost
        assert page.headers["Cache-Control"] == "public, max-age=300"
    css = requests.get(f"{nginx_stack.lighttpd_url}/", headers={"Host": nginx_stack.host("official")},
                       timeout=10)
    href = css.text.split('rel="stylesheet" href="')[1].split('"')[0]
    asset = requests.get(f"{nginx_stack.lighttpd_url}{href}", headers={"Host": nginx_stack.host("official")},
                         timeout=10)
    assert asset.status_code == 200 and asset.headers["Content-Type"].startswith("text/css")
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize("host_key, path", [
    ("official", "/api/v1/clients"), ("official", "/healthz"), ("official", "/wechat/callback/../../healthz"),
    ("admin", "/wechat/callback"), (None, "/wechat/callback"), (None, "/"),
])
def test_web_tier_answers_404_for_everything_it_does_not_serve_or_proxy(nginx_stack, host_key, path):
    host = nginx_stack.host(host_key) if host_key else "unknown.example"
    answer = requests.get(f"{nginx_stack.lighttpd_url}{path}", headers={"Host": host}, timeout=10)
    assert answer.status_code == 404


def test_web_tier_config_holds_no_database_credentials(nginx_stack, mariadb):
    text = (nginx_stack.conf / "lighttpd/lighttpd.conf").read_text()
    for secret_value in (mariadb.app_password, mariadb.ro_password, str(mariadb.primary.port),
                         str(mariadb.replica.port), "xintu_app", "mysql"):
        assert secret_value not in text
    assert SECRET in text


def test_internal_routes_need_the_header_lighttpd_adds(nginx_stack):
    direct = requests.post(f"{nginx_stack.gunicorn_url}/wechat/callback", data=b"<xml/>", timeout=10)
    assert direct.status_code == 404       # straight to gunicorn without the shared secret: not there
    forged = requests.post(f"{nginx_stack.gunicorn_url}/wechat/callback", data=b"<xml/>", timeout=10,
                           headers={"X-Xintu-Internal": "guess"})
    assert forged.status_code == 404


def _signed_query(token: str) -> dict:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(6)
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def test_signed_wechat_event_via_lighttpd_creates_a_user_that_reaches_the_replica(nginx_stack, mariadb):
    openid = "o" + secrets.token_hex(13)
    event = (f"<xml><ToUserName><![CDATA[gh_topology]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
             f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             f"<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>")
    answer = requests.post(f"{nginx_stack.lighttpd_url}/wechat/callback", params=_signed_query(WECHAT_TOKEN),
                           data=event.encode(), headers={"Host": nginx_stack.host("official"),
                                                         "Content-Type": "text/xml"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    bad = requests.post(f"{nginx_stack.lighttpd_url}/wechat/callback", params=_signed_query("wrong-token"),
                        data=event.encode(), headers={"Host": nginx_stack.host("official")}, timeout=10)
    assert bad.status_code == 403
    mariadb.wait_replica()
    with closing(replication.admin_connect(mariadb.replica.admin_url)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT openid, credits_balance FROM {nginx_stack.database}.users WHERE openid=%s",
                    (openid,))
        row = cur.fetchone()
    assert row is not None and row["openid"] == openid


def test_metrics_sum_both_gunicorn_workers_and_stay_off_the_public_host(nginx_stack):
    for _ in range(20):
        requests.get(f"{nginx_stack.nginx_url}/healthz", verify=nginx_stack.cert, timeout=10)
    scrape = requests.get(f"{nginx_stack.gunicorn_url}/metrics", timeout=10)
    assert scrape.status_code == 200
    counted = [line for line in scrape.text.splitlines()
               if line.startswith("xintu_http_requests_total{") and 'endpoint="/healthz"' in line]
    assert counted and sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 20
    pids = {p.name for p in (Path(nginx_stack.settings["paths"]["run"]) / "prometheus").glob("*.db")}
    assert pids, "workers wrote no multiprocess samples"
    public = requests.get(f"{nginx_stack.nginx_url}/metrics", verify=nginx_stack.cert, timeout=10)
    assert public.status_code == 404


def test_a_body_over_the_limit_is_a_json_413_from_nginx(nginx_stack):
    limit = nginx_stack.settings["app"]["body_limit_mb"] * 1024 * 1024
    answer = requests.post(f"{nginx_stack.nginx_url}/api/v1/classify/batch", verify=nginx_stack.cert,
                           timeout=60, data=b"\0" * (limit + 1),
                           headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 413
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert len(answer.headers["X-Request-ID"]) == 32
    # at the limit, nginx passes the body on and the app answers (here: no token → 401 JSON)
    at_limit = requests.post(f"{nginx_stack.nginx_url}/api/v1/classify/batch", verify=nginx_stack.cert,
                             timeout=60, data=b"\0" * (limit - 1024),
                             headers={"Content-Type": "application/octet-stream"})
    assert at_limit.status_code == 401 and at_limit.json()["error"]["code"]


def test_a_registration_burst_gets_json_429_from_nginx(nginx_stack):
    # Last in this module: it uses up the registration allowance of 127.0.0.1 for a while.
    app = nginx_stack.settings["app"]
    statuses, last = [], None
    with requests.Session() as http:
        for _ in range(app["register_burst"] + 3):
            last = http.post(f"{nginx_stack.nginx_url}/api/v1/clients", verify=nginx_stack.cert, timeout=10,
                             json={"client_id": "burst-" + secrets.token_hex(4), "platform": "windows"})
            statuses.append(last.status_code)
    assert 429 in statuses and statuses[0] == 201, statuses
    assert statuses.index(429) <= app["register_burst"] + 1  # burst + the one the rate allows
    assert last.status_code == 429 and last.headers["Content-Type"] == "application/json"
    assert last.json() == {"error": {"code": "rate_limited", "message": "请求过于频繁，请稍后再试"}}
    # the stricter zone is for POST /api/v1/clients only, and health probes are never limited
    with requests.Session() as http:
        probes = {http.get(f"{nginx_stack.nginx_url}/healthz", verify=nginx_stack.cert,
                           timeout=10).status_code for _ in range(app["api_burst"] + 100)}
    assert probes == {200}
