"""Property-based requests (schemathesis, from our own OpenAPI document) against the admin and
release endpoints on MariaDB, as an operator: any input gives a documented 4xx, never a 500."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from xintu.admin.auth import create_admin

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]


def test_admin_and_release_endpoints_never_fail_with_500(mysql_app, tmp_path):
    mysql_app.config["RELEASES_DIR"] = str(tmp_path / "store")
    client = mysql_app.test_client()
    with mysql_app.app_context():
        create_admin("fuzz", "fuzz password!", "operator")
    # lots of wrong logins are expected: lift the throttles so the fuzzer keeps reaching the views
    mysql_app.config.update(ADMIN_LOGIN_FREE_FAILURES=10 ** 6)
    token = client.post("/api/v1/admin/login", json={"username": "fuzz", "password": "fuzz password!"}
                        ).get_json()["token"]
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", mysql_app)
    schema = schema.include(path_regex=r"^/api/v1/(admin|releases)/").exclude(path="/api/v1/admin/logout")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:   # every error has the one shape
                assert set(response.json()["error"]) >= {"code", "message"}

        check()
