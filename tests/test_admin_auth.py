"""管理后台 authentication and roles on the real MariaDB primary: hashed passwords, lockout,
per-address rate limit, session expiry, viewer vs operator."""
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


def test_lockout_after_repeated_failures(mysql_app, mysql_client, admins):
    for i in range(5):
        assert login(mysql_client, "op1", f"guess {i}", ip=f"10.0.1.{i}").status_code == 401
    # now even the right password is refused, from any address
    locked = login(mysql_client, "op1", ip="10.0.2.1")
    assert locked.status_code == 429 and locked.get_json()["error"]["code"] == "account_locked"
    assert login(mysql_client, "viewer1", ip="10.0.2.1").status_code == 200   # others unaffected
    with mysql_app.app_context():
        Admin.update(locked_until=utcnow() - timedelta(seconds=1)).where(Admin.username == "op1").execute()
    assert login(mysql_client, "op1", ip="10.0.2.1").status_code == 200       # lock ran out


def test_one_address_is_rate_limited_across_usernames(mysql_client, admins):
    for i in range(20):
        assert login(mysql_client, f"guess{i}", "x", ip="10.9.9.9").status_code == 401
    limited = login(mysql_client, "op1", ip="10.9.9.9")
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "login_rate_limited"
    assert login(mysql_client, "op1", ip="10.9.9.10").status_code == 200


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
