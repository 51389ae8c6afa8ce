"""The whole deployment on loopback: MariaDB primary + replica, gunicorn running the app, nginx (TLS) in
front of it, lighttpd (TLS) serving the three vhosts and proxying the WeChat paths — all from rendered
configs. The WeChat callback and pay notify use kept paths of an older system, the callback on plain
HTTP too (``wechat_callback_on_http``)."""

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
CALLBACK, PAY_NOTIFY = "/api/v1/auth/wechat/verify", "/api/v1/payment/notify"
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
    }, secret=SECRET, wechat_paths={"callback": CALLBACK, "pay_notify": PAY_NOTIFY},
        wechat_callback_on_http=True)
    with stack:
        stack.database = database
        yield stack
    mariadb.drop_database(database)


def test_client_requests_reach_the_app_through_nginx_over_tls(nginx_stack):
    health = requests.get(f"{nginx_stack.nginx_url}/healthz", verify=nginx_stack.cert, timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.headers["Strict-Transport-Security"].startswith("max-age=63072000")
    assert len(health.headers["X-Request-ID"]) == 32 and "," not in health.headers["X-Request-ID"]
    public = requests.get(f"{nginx_stack.nginx_url}/readyz", verify=nginx_stack.cert, timeout=10)
    assert public.status_code == 200 and public.json() == {"status": "ready"}     # nothing else to the public
    ready = requests.get(f"{nginx_stack.gunicorn_url}/readyz", timeout=10).json()  # monitoring, direct
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
                            timeout=10, verify=nginx_stack.cert)
        if vhost not in built:   # the admin SPA's sources land with the admin area
            assert page.status_code == 404
            continue
        assert page.status_code == 200 and needle in page.text, vhost
        assert page.headers["Cache-Control"] == "public, max-age=300"
    css = requests.get(f"{nginx_stack.lighttpd_url}/", headers={"Host": nginx_stack.host("official")},
                       timeout=10, verify=nginx_stack.cert)
    href = css.text.split('rel="stylesheet" href="')[1].split('"')[0]
    asset = requests.get(f"{nginx_stack.lighttpd_url}{href}", headers={"Host": nginx_stack.host("official")},
                         timeout=10, verify=nginx_stack.cert)
    assert asset.status_code == 200 and asset.headers["Content-Type"].startswith("text/css")
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize("host_key, path", [
    ("official", "/api/v1/clients"), ("official", "/healthz"), ("official", "/wechat/callback/../../healthz"),
    ("admin", "/wechat/callback"), (None, "/wechat/callback"), (None, "/"), ("admin", CALLBACK),
    ("official", "/wechat/callback"), ("official", "/wechat/pay/notify"),   # only the kept public paths
])
def test_web_tier_answers_404_for_everything_it_does_not_serve_or_proxy(nginx_stack, host_key, path):
    host = nginx_stack.host(host_key) if host_key else "unknown.example"
    answer = requests.get(f"{nginx_stack.lighttpd_url}{path}", headers={"Host": host}, timeout=10,
                          verify=nginx_stack.cert)
    assert answer.status_code == 404


def test_web_tier_config_holds_no_database_credentials(nginx_stack, mariadb):
    text = (nginx_stack.conf / "lighttpd/lighttpd.conf").read_text()
    for secret_value in (mariadb.app_password, mariadb.ro_password, str(mariadb.primary.port),
                         str(mariadb.replica.port), "xintu_app", "mysql"):
        assert secret_value not in text
    assert SECRET in text


def test_internal_routes_need_the_header_lighttpd_adds(nginx_stack):
    direct = requests.post(f"{nginx_stack.gunicorn_url}/wechat/callback", data=b"<xml/>", timeout=10)
    assert direct.status_code == 404
    direct = requests.post(f"{nginx_stack.gunicorn_url}{CALLBACK}", data=b"<xml/>", timeout=10)
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
    query = _signed_query(WECHAT_TOKEN)
    answer = requests.post(f"{nginx_stack.lighttpd_url}{CALLBACK}", params={**query, "openid": openid},
                           data=event.encode(), headers={"Host": nginx_stack.host("official"),
                                                         "Content-Type": "text/xml"}, timeout=10,
                           verify=nginx_stack.cert)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    bad = requests.post(f"{nginx_stack.lighttpd_url}{CALLBACK}", params=_signed_query("wrong-token"),
                        data=event.encode(), headers={"Host": nginx_stack.host("official")}, timeout=10,
                        verify=nginx_stack.cert)
    assert bad.status_code == 403
    other = event.replace(openid, "o" + secrets.token_hex(13))      # the same URL signature, another body
    replayed = requests.post(f"{nginx_stack.lighttpd_url}{CALLBACK}", params=query, data=other.encode(),
                             headers={"Host": nginx_stack.host("official")}, timeout=10,
                             verify=nginx_stack.cert)
    assert replayed.status_code == 403 and replayed.json()["error"]["code"] == "wechat_signature_reused"
    # WeChat's own callback may stay on plain HTTP (a setting); it reaches the app there too
    plain = requests.get(f"{nginx_stack.lighttpd_http_url}{CALLBACK}", allow_redirects=False, timeout=10,
                         params={**_signed_query(WECHAT_TOKEN), "echostr": "hello"},
                         headers={"Host": nginx_stack.host("official")})
    assert plain.status_code == 200 and plain.text == "hello"
    # neither access log keeps the query string (openid, signature, nonce)
    logs = Path(nginx_stack.settings["paths"]["logs"])
    for name in ("lighttpd-access.log", "gunicorn-access.log"):
        deadline = time.monotonic() + 5       # lighttpd writes its buffered log about once a second
        while CALLBACK not in (text := (logs / name).read_text()) and "/wechat/callback" not in text:
            assert time.monotonic() < deadline, f"{name}: no callback line"
            time.sleep(0.2)
        assert openid not in text and query["signature"] not in text and "echostr" not in text, name
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


def test_web_tier_is_tls_with_redirect_hsts_nosniff_and_no_framing_of_the_admin(nginx_stack):
    official, admin = nginx_stack.host("official"), nginx_stack.host("admin")
    plain = requests.get(f"{nginx_stack.lighttpd_http_url}/about?x=1", headers={"Host": official},
                         allow_redirects=False, timeout=10)
    port = nginx_stack.settings["web"]["https_port"]
    assert plain.status_code == 301 and plain.headers["Location"] == f"https://{official}:{port}/about?x=1"
    notify = requests.post(f"{nginx_stack.lighttpd_http_url}{PAY_NOTIFY}", headers={"Host": official},
                           data=b"{}", allow_redirects=False, timeout=10)
    assert notify.status_code == 301                       # only the callback is kept on plain HTTP
    page = requests.get(f"{nginx_stack.lighttpd_url}/", headers={"Host": official}, timeout=10,
                        verify=nginx_stack.cert)
    assert page.headers["Strict-Transport-Security"].startswith("max-age=63072000")
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in page.headers
    login = requests.get(f"{nginx_stack.lighttpd_url}/", headers={"Host": admin}, timeout=10,
                         verify=nginx_stack.cert)
    assert login.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert login.headers["Strict-Transport-Security"].startswith("max-age=")

    def tls12(ciphers):
        context = ssl.create_default_context(cafile=nginx_stack.cert)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=official) as conn:
            return conn.cipher()[0]

    assert tls12("ECDHE-ECDSA-AES128-GCM-SHA256") == "ECDHE-ECDSA-AES128-GCM-SHA256"   # nginx's list
    with pytest.raises(ssl.SSLError):
        tls12("ECDHE-ECDSA-AES128-SHA")           # a CBC suite the client offers alone: refused


def test_kept_wechat_paths_map_onto_the_app_and_the_notify_url_follows(nginx_stack):
    import runpy

    from xintu.config import load_config
    from xintu.member.pay import notify_url
    from xintu.wechat.oauth import landing_url

    official = nginx_stack.host("official")
    notify = requests.post(f"{nginx_stack.lighttpd_url}{PAY_NOTIFY}", data=b"{}", timeout=10,
                           headers={"Host": official, "Content-Type": "application/json"},
                           verify=nginx_stack.cert)
    # the app's own answers: the kept path reached /wechat/pay/notify
    assert notify.status_code == 401 and notify.json()["error"]["code"] == "pay_notify_stale"
    oauth = requests.get(f"{nginx_stack.lighttpd_url}/wechat/oauth", params={"code": "c", "state": "s"},
                         headers={"Host": official}, timeout=10, verify=nginx_stack.cert,
                         allow_redirects=False)
    assert oauth.status_code == 400
    assert oauth.json()["error"]["code"] in ("bad_redirect", "oauth_state_invalid")
    # gunicorn's rendered config hands the app the public URLs: what it sends WeChat Pay follows the paths
    conf = runpy.run_path(str(nginx_stack.conf / "gunicorn/gunicorn.conf.py"))
    env = dict(item.split("=", 1) for item in conf["raw_env"])
    config = load_config(environ={**nginx_stack.app_env, **env})
    port = nginx_stack.settings["web"]["https_port"]
    assert notify_url(config) == f"https://{official}:{port}{PAY_NOTIFY}"
    assert landing_url(config) == f"https://{official}:{port}/wechat/oauth"


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
