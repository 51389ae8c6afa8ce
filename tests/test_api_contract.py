"""The OpenAPI document is the contract the PC and mobile clients are generated from.

schemathesis (its CLI, in a subprocess, ``--checks all``, every phase including stateful) runs against
the live app — a real socket, the WeChat / WeChat Pay sandbox wired in — with each operation's real
credentials, chosen from the operation's own ``security`` in the served document: device token,
bound-user token, H5 session cookie, admin operator session; then the admin operations again as a
viewer. Once on the embedded SQLite default, once on MariaDB. Zero failures.

Where the document cannot say which values a server accepts, the run allows the documented error for
schema-valid data (``POSITIVE_ALSO``): an upload field is "binary" but must also decode as an image;
credit packages and redirect origins come from configuration.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from tests.contract_helpers import roles, warm

pytestmark = pytest.mark.slow

SEED = 1
DEFAULT_POSITIVE = ["2xx", "3xx", 401, 403, 404, 409, 429, "5xx"]   # schemathesis' own default
# The project's schemathesis.toml (what `schemathesis run` reads from the checkout) says, with reasons,
# which documented 4xx schema-valid data may get: the same allowances here.
PROJECT_CONFIG = tomllib.loads((Path(__file__).resolve().parents[1] / "schemathesis.toml").read_text("utf-8"))
POSITIVE_ALSO = {
    op["include-name"]: [s for s in op["checks"]["positive_data_acceptance"]["expected-statuses"]
                         if s not in DEFAULT_POSITIVE]
    for op in PROJECT_CONFIG["operations"] if "checks" in op}
OPERATOR_ONLY = {"POST /api/v1/admin/users/{user_id}/credits", "POST /api/v1/admin/releases",
                 "PUT /api/v1/admin/inference", "POST /api/v1/admin/orders/{out_trade_no}/refund",
                 "POST /api/v1/admin/users/{user_id}/sessions/revoke"}


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_for(spec: dict, creds, admin: str = "operator", only=None, h5_cookie: str | None = None) -> str:
    """schemathesis.toml: per operation, the credentials its security asks for, pinned ids, allowances."""
    lines = ["[auth.openapi.H5Cookie]", f"api_key = {_toml(h5_cookie or creds.h5_cookie)}", "",
             # Stateful scenarios are about positive sequences; their negative steps can add a query
             # parameter with an empty name, which no server can tell from no parameter. Rejection of
             # invalid data is checked by the coverage and fuzzing phases.
             "[phases.stateful.checks.negative_data_rejection]", "enabled = false", ""]
    pinned = {"task_id": creds.task_id, "out_trade_no": creds.out_trade_no, "user_id": creds.user_id}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            if only and not only(path):
                continue
            headers = creds.headers(operation.get("security"), admin=admin)
            if "Cookie" in headers:   # an apiKey in a cookie: given as [auth.openapi.H5Cookie] below
                headers = {}
            if name == "POST /api/v1/admin/logout":
                headers = {"Authorization": f"Bearer {creds.logout}"}
            op_pinned = pinned
            if name in DESTRUCTIVE:   # ends what it is called with: the spare identities (contract_helpers)
                spare = creds.throwaway
                if DESTRUCTIVE[name] == "device":
                    headers = {"Authorization": f"Bearer {spare['device']}"}
                op_pinned = {**pinned, "user_id": spare["user_id"]}
            lines += ["[[operations]]", f"include-name = {_toml(name)}", f"headers = {_toml(headers or {})}"]
            params = {p["name"]: op_pinned[p["name"]] for p in operation.get("parameters", [])
                      if p["in"] == "path" and p["name"] in op_pinned}
            if params:
                lines.append(f"parameters = {_toml(params)}")
            if name in POSITIVE_ALSO:
                lines.append("checks.positive_data_acceptance.expected-statuses = "
                             + _toml(DEFAULT_POSITIVE + POSITIVE_ALSO[name]))
            lines.append("")
    return "\n".join(lines)


ALL_PHASES = "examples,coverage,fuzzing,stateful"

# Operations that end the session or the user they act on (value: which credential they spend). The H5
# ones run in a pass of their own whose H5 cookie is the spare user's.
DESTRUCTIVE = {"POST /api/v1/auth/logout": "device", "POST /api/v1/h5/forget": "h5",
               "POST /api/v1/h5/sessions/{session_id}/revoke": "h5",
               "POST /api/v1/admin/users/{user_id}/sessions/revoke": "admin"}
H5_DESTRUCTIVE = ["/api/v1/h5/forget", "/api/v1/h5/sessions/{session_id}/revoke"]


def run_schemathesis(stack, config: str, tmp_path: Path, max_examples: int, *extra, denied=(),
                     phases=ALL_PHASES) -> str:
    """Run the CLI; ``denied``: the operations this role may only ever be refused (401/403) on."""
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config, encoding="utf-8")
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [str(cli), "--no-color", "--config-file", str(config_file), "run",
           stack.url + "/api/v1/openapi.json",
           "--checks", "all", "--phases", phases, "--max-examples",
           str(max_examples), "--seed", str(SEED), "--workers", "1", "--suppress-health-check", "all",
           "--request-timeout", "60",
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-12000:]
    assert "failures" not in out.split("SUMMARY")[-1], out[-4000:]
    warning = out.split("returned only 401/403 responses")[1].split("💡")[0] if "only 401/403" in out else ""
    refused = set(re.findall(r"^\s+- ([A-Z]+ \S+)$", warning, re.M))
    assert refused == set(denied), out[-4000:]      # every role really got in where it may
    return out


def _contract(stack, tmp_path, max_examples, phases=ALL_PHASES):
    creds = roles(stack, tmp_path / "releases")
    warm(stack.url, creds.device)
    spec = requests.get(stack.url + "/api/v1/openapi.json", timeout=10).json()
    skip = [arg for path in H5_DESTRUCTIVE for arg in ("--exclude-path", path)]
    out = run_schemathesis(stack, config_for(spec, creds), tmp_path, max_examples, *skip, phases=phases)
    tested = int(out.split("Tested: ")[1].split()[0])
    assert tested == sum(len(item) for item in spec["paths"].values()) - len(H5_DESTRUCTIVE)
    # Erasing the H5 user and ending its sessions, with the spare user's cookie.
    spare = config_for(spec, creds, h5_cookie=creds.throwaway["h5_cookie"],
                       only=lambda p: p in H5_DESTRUCTIVE)
    only = [arg for path in H5_DESTRUCTIVE for arg in ("--include-path", path)]
    out = run_schemathesis(stack, spare, tmp_path, max_examples, *only, phases="examples,coverage,fuzzing")
    assert int(out.split("Tested: ")[1].split()[0]) == len(H5_DESTRUCTIVE)
    # The admin operations once more as a viewer: the operator-only ones answer their documented 403.
    viewer = config_for(spec, creds, admin="viewer", only=lambda p: p.startswith("/api/v1/admin/"))
    run_schemathesis(stack, viewer, tmp_path, max(3, max_examples // 3), "--include-path-regex",
                     "^/api/v1/admin/", "--exclude-path", "/api/v1/admin/logout", denied=OPERATOR_ONLY,
                     phases="examples,fuzzing")


def test_every_operation_keeps_its_contract_for_every_role(member_stack, tmp_path):
    _contract(member_stack, tmp_path, max_examples=10)


@pytest.mark.mariadb
def test_every_operation_keeps_its_contract_on_mariadb(mysql_member_stack, tmp_path):
    # The coverage phase (deterministic boundary cases, the slowest) ran on SQLite: the database
    # changes what valid requests do, so here examples, fuzzing and stateful sequences.
    _contract(mysql_member_stack, tmp_path, max_examples=5, phases="examples,fuzzing,stateful")
