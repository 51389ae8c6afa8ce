"""Property-based requests (schemathesis, from our own OpenAPI document) against every client-facing
endpoint, with the WeChat / WeChat Pay sandbox wired in and a bound client token: whatever the input,
the answer is a documented status with the one error shape — never a 5xx.  (Admin and release endpoints
have their own run on MariaDB in test_admin_api_schema.py.)"""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.slow


def test_client_endpoints_never_fail_with_5xx(member_stack):
    from xintu.auth import issue_token
    from xintu.models import User

    app = member_stack.app
    app.config["CLIENT_REQUESTS_PER_MINUTE"] = 0   # the fuzzer is one very busy client
    with app.app_context():
        user = User.create(openid="o-schema-fuzz", credits_balance=5)
        token, _ = issue_token(client_id="schema-fuzz", kind="bound", user=user)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema = schema.exclude(path_regex=r"^/api/v1/(admin|releases)/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    seen = set()
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            case.validate_response(response, checks=[not_a_server_error])
            seen.add(response.status_code)
            if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
                    "application/json"):
                assert set(response.json()["error"]) >= {"code", "message"}

        check()
    assert any(code < 300 for code in seen) and any(400 <= code < 500 for code in seen)
