"""管理后台 authentication and roles on the real MariaDB primary: hashed passwords, one answer for wrong
user or password, progressive delays per account and address, the address allow-list, session expiry,
viewer vs operator, and the operator's view of a user's client sessions."""
from datetime import timedelta

import pytest

from xintu.admin.auth import create_admin
from xintu.models import Admin, AdminSession, CreditLedger, User
from xintu.timeutil import utcnow

pytestmark = pytest.mark.mariadb
PASSWORD = "correct horse battery"


@pytest.fixture
def admins(mysql_app):
    with mysql_app.app_context():
        create_admin("viewer1", PASSWORD, "viewer")
        create_admin("op1", PASSWORD, "operator")
        user = User.create(openid="o-user", nickname="小红", credits_balance=5)
        CreditLedger.create(user=user, delta=5, reason="signup_bonus", ref="o-user", balance_after=5)
    return {"user_id": user.id}


def login(client, username, password=PASSWORD, ip="10.0.0.1"):
    return client.post("/api/v1/admin/login", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def bearer(client, username):
    response = login(client, username)
    assert response.status_code == 200, response.get_json()
    return {"Authorization": "Bearer " + response.get_json()["token"]}


def test_password_is_stored_hashed_and_login_works(mysql_app, mysql_client, admins):
    with mysql_app.app_context():
        stored = Admin.get(Admin.username == "op1").password_hash
    assert PASSWORD not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    body = login(mysql_client, "op1").get_json()
    assert body["role"] == "operator" and len(body["token"]) >= 40
    me = mysql_client.get("/api/v1/admin/me", headers={"Authorization": "Bearer " + body["token"]})
    assert me.status_code == 200 and me.get_json()["username"] == "op1"
    with mysql_app.app_context():   # only a digest of the token is kept
        assert AdminSession.select().where(AdminSession.token_hash == body["token"]).count() == 0


def test_wrong_password_and_unknown_user_look_the_same(mysql_client, admins):
    wrong = login(mysql_client, "op1", "not the password")
    unknown = login(mysql_client, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {
        "error": {"code": "bad_credentials", "message": "用户名或密码错误"}}


def _rewind_attempts(app, seconds):
    from xintu.models import AdminLoginAttempt

    with app.app_context():
        for attempt in AdminLoginAttempt.select():
            AdminLoginAttempt.update(created_at=attempt.created_at - timedelta(seconds=seconds)).where(
                AdminLoginAttempt.id == attempt.id).execute()


def test_failures_slow_the_next_try_down_without_locking_the_account(mysql_app, mysql_client, admins):
    for i in range(3):
        assert login(mysql_client, "op1", f"guess {i}", ip="10.0.1.1").status_code == 401
    waiting = login(mysql_client, "op1", ip="10.0.1.1")   # even the right password waits its turn
    assert waiting.status_code == 429 and waiting.get_json()["error"]["code"] == "login_throttled"
    assert waiting.get_json()["error"]["details"]["retry_after"] in (1, 2)   # 2 s after the last failure
    # an unknown username gets exactly the same treatment: the answer says nothing about accounts
    for i in range(3):
        assert login(mysql_client, "nobody", f"guess {i}", ip="10.0.1.1").status_code == 401
    ghost = login(mysql_client, "nobody", ip="10.0.1.1")
    assert ghost.status_code == 429 and ghost.get_json()["error"]["code"] == "login_throttled"
    # the operator at another address is not locked out by the stranger's guesses
    assert login(mysql_client, "op1", ip="10.0.2.1").status_code == 200
    _rewind_attempts(mysql_app, 3)
    assert login(mysql_client, "op1", ip="10.0.1.1").status_code == 200       # the delay ran out


def test_delays_grow_per_address_and_cap(mysql_app, mysql_client, admins):
    mysql_app.config.update(ADMIN_LOGIN_MAX_DELAY_SECONDS=8)
    for i in range(6):   # one address trying many usernames: 2 × the free failures
        _rewind_attempts(mysql_app, 10)   # each after the previous delay ran out
        assert login(mysql_client, f"guess{i}", "x", ip="10.9.9.9").status_code == 401
    waits = []
    for i in range(4):
        probe = login(mysql_client, "op1", ip="10.9.9.9")
        assert probe.status_code == 429
        waits.append(probe.get_json()["error"]["details"]["retry_after"])
        _rewind_attempts(mysql_app, 10)
        assert login(mysql_client, f"more{i}", "x", ip="10.9.9.9").status_code == 401
    # 2, 4, 8, 8 s (MariaDB keeps whole seconds, so each may read one less)
    assert waits[0] in (1, 2) and waits[1] in (3, 4) and waits[2] in (7, 8) and waits[3] in (7, 8)
    assert login(mysql_client, "op1", ip="10.9.9.10").status_code == 200   # other addresses unaffected


def test_admin_api_answers_only_allowed_addresses(mysql_app, mysql_client, admins):
    mysql_app.config.update(ADMIN_ALLOWED_ADDRS=["10.1.0.0/16", "192.168.5.5"])
    outside = login(mysql_client, "op1", ip="10.2.0.1")
    assert outside.status_code == 404 and outside.get_json()["error"]["code"] == "not_found"
    assert login(mysql_client, "op1", ip="10.1.3.4").status_code == 200
    assert login(mysql_client, "op1", ip="192.168.5.5").status_code == 200


def test_operator_sees_and_revokes_user_sessions(mysql_app, mysql_client, admins):
    from xintu.auth import issue_token, lookup

    with mysql_app.app_context():
        token, _ = issue_token(client_id="pc-admin-view", kind="bound", platform="mac", ip="10.3.3.3",
                               user=User.get_by_id(admins["user_id"]))
    viewer, operator = bearer(mysql_client, "viewer1"), bearer(mysql_client, "op1")
    detail = mysql_client.get(f"/api/v1/admin/users/{admins['user_id']}", headers=viewer).get_json()
    shown = [(s["platform"], s["client_id"], s["place"]) for s in detail["sessions"]]
    assert shown == [("mac", "pc-admin-view", "局域网")]
    url = f"/api/v1/admin/users/{admins['user_id']}/sessions/revoke"
    assert mysql_client.post(url, json={}, headers=viewer).status_code == 403
    done = mysql_client.post(url, json={"session_id": detail["sessions"][0]["id"]}, headers=operator)
    assert done.status_code == 200 and done.get_json()["revoked"] == 1 and done.get_json()["sessions"] == []
    with mysql_app.test_request_context():
        with pytest.raises(Exception) as dead:
            lookup(token)
    assert getattr(dead.value, "code", None) == "token_revoked"


def test_idle_and_absolute_session_expiry(mysql_app, mysql_client, admins):
    headers = bearer(mysql_client, "viewer1")
    with mysql_app.app_context():
        AdminSession.update(last_seen_at=utcnow() - timedelta(minutes=31)).execute()
    idle = mysql_client.get("/api/v1/admin/me", headers=headers)
    assert idle.status_code == 401 and idle.get_json()["error"]["code"] == "admin_session_expired"
    # the expired session is gone for good
    assert mysql_client.get("/api/v1/admin/me", headers=headers).get_json()["error"]["code"] == \
        "admin_login_required"

    headers = bearer(mysql_client, "viewer1")
    with mysql_app.app_context():
        AdminSession.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    assert mysql_client.get("/api/v1/admin/overview", headers=headers).status_code == 401


def test_logout_ends_the_session(mysql_client, admins):
    headers = bearer(mysql_client, "viewer1")
    assert mysql_client.post("/api/v1/admin/logout", headers=headers).status_code == 204
    assert mysql_client.get("/api/v1/admin/me", headers=headers).status_code == 401


def test_no_token_or_a_made_up_token(mysql_client, admins):
    assert mysql_client.get("/api/v1/admin/users").status_code == 401
    made_up = mysql_client.get("/api/v1/admin/users", headers={"Authorization": "Bearer abc"})
    assert made_up.status_code == 401 and made_up.get_json()["error"]["code"] == "admin_login_required"


def test_viewer_cannot_adjust_credits_operator_can(mysql_app, mysql_client, admins):
    url = f"/api/v1/admin/users/{admins['user_id']}/credits"
    viewer = mysql_client.post(url, json={"delta": 5, "reason": "补偿"}, headers=bearer(mysql_client, "viewer1"))
    assert viewer.status_code == 403 and viewer.get_json()["error"]["code"] == "operator_required"
    op = bearer(mysql_client, "op1")
    done = mysql_client.post(url, json={"delta": 7, "reason": "活动补偿"}, headers=op)
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["user"]["credits_balance"] == 12
    assert body["entry"]["ref"].startswith("adj:")
    assert body["entry"] | {"id": 0, "created_at": "", "ref": ""} == {
        "id": 0, "created_at": "", "delta": 7, "reason": "admin_adjust", "ref": "",
        "balance_after": 12, "operator": "op1", "note": "活动补偿"}
    with mysql_app.app_context():
        assert [(e.delta, e.operator) for e in CreditLedger.select().order_by(CreditLedger.id)] == [
            (5, None), (7, "op1")]
    # a debit below zero is refused and changes nothing
    too_much = mysql_client.post(url, json={"delta": -13, "reason": "纠错"}, headers=op)
    assert too_much.status_code == 402 and too_much.get_json()["error"]["code"] == "insufficient_credits"
    with mysql_app.app_context():
        assert User.get_by_id(admins["user_id"]).credits_balance == 12
        assert CreditLedger.select().count() == 2


@pytest.mark.parametrize("body, code", [
    ({"delta": 5}, "validation_error"), ({"delta": 0, "reason": "x"}, "invalid_delta"),
    ({"delta": "5", "reason": "x"}, "validation_error"), ({"delta": 10 ** 9, "reason": "x"}, "validation_error"),
    ({"delta": 5, "reason": "   "}, "reason_required")])
def test_bad_adjustments_are_4xx(mysql_client, admins, body, code):
    response = mysql_client.post(f"/api/v1/admin/users/{admins['user_id']}/credits", json=body,
                                 headers=bearer(mysql_client, "op1"))
    assert 400 <= response.status_code < 500 and response.get_json()["error"]["code"] == code


def test_viewer_cannot_switch_inference_operator_can(mysql_client, admins):
    viewer = mysql_client.put("/api/v1/admin/inference", json={"mode": "local"},
                              headers=bearer(mysql_client, "viewer1"))
    assert viewer.status_code == 403
    op = bearer(mysql_client, "op1")
    assert mysql_client.put("/api/v1/admin/inference", json={"mode": "fast"}, headers=op).status_code == 422
    switched = mysql_client.put("/api/v1/admin/inference", json={"mode": "local"}, headers=op).get_json()
    assert switched["mode"] == "local" and switched["updated_by"] == "op1"
    assert [(u["name"], u["open"]) for u in switched["upstreams"]] == [("dashscope.classify", False),
                                                                      ("dashscope.edit", False)]
    from xintu.upstreams import Breaker
    with mysql_client.application.app_context():
        Breaker("dashscope.edit").open("billing", "Arrearage", "Access denied")
    shown = mysql_client.get("/api/v1/admin/inference", headers=op).get_json()["upstreams"][1]
    assert shown["open"] and shown["code"] == "Arrearage" and shown["seconds_left"] > 0


def test_cors_only_for_the_configured_admin_origin(mysql_app, mysql_client, admins):
    mysql_app.config["ADMIN_ALLOWED_ORIGINS"] = ["https://admin.example.com"]
    ok = mysql_client.options("/api/v1/admin/login", headers={
        "Origin": "https://admin.example.com", "Access-Control-Request-Method": "POST"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://admin.example.com"
    other = mysql_client.options("/api/v1/admin/login", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_create_user_cli_rules(mysql_app):
    from xintu.errors import BadRequest, Conflict

    with mysql_app.app_context():
        with pytest.raises(BadRequest):
            create_admin("short", "123", "viewer")
        with pytest.raises(BadRequest):
            create_admin("boss", PASSWORD, "root")
        create_admin("boss", PASSWORD, "viewer")
        with pytest.raises(Conflict):
            create_admin("boss", PASSWORD, "viewer")


def test_every_admin_page_answers_on_an_empty_database(mysql_client, mysql_app):
    with mysql_app.app_context():
        create_admin("viewer2", PASSWORD, "viewer")
    headers = bearer(mysql_client, "viewer2")
    for path in ("/api/v1/admin/overview", "/api/v1/admin/users?q=%25_", "/api/v1/admin/orders?status=paid",
                 "/api/v1/admin/releases", "/api/v1/admin/inference"):
        response = mysql_client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.get_json())
    overview = mysql_client.get("/api/v1/admin/overview", headers=headers).get_json()
    assert overview["today"]["requests"] == 0 and overview["today"]["cache_hit_ratio"] is None
    assert set(overview["charts"]) == {"requests", "ratios", "revenue", "methods", "categories"}
    assert mysql_client.get("/api/v1/admin/users/987654321", headers=headers).status_code == 404
    assert mysql_client.get("/api/v1/admin/orders?status=lost", headers=headers).status_code == 422


def test_openapi_names_the_admin_token_apart_from_device_tokens(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert {"AdminBearerAuth", "BearerAuth"} <= set(spec["components"]["securitySchemes"])
    assert spec["paths"]["/api/v1/admin/users"]["get"]["security"] == [{"AdminBearerAuth": []}]
    assert "security" not in spec["paths"]["/api/v1/admin/login"]["post"]
