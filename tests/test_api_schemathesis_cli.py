"""The issue's own acceptance, as a developer runs it: the `schemathesis` CLI from the checkout (so it reads
the project's schemathesis.toml and nothing else), its default phases, ``--checks all``, a fixed seed,
against `xintu serve`, once with a device token and once with a bound-user token: exit 0, no failures,
and each token really got in where it may (an operation answering only 401/403 would pass while testing
nothing). tests/test_api_contract.py runs every role with per-operation credentials; this one checks that
the bare command agrees."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.contract_helpers import warm

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
MAX_EXAMPLES = 2     # the command says 30; the phases, checks and seed are the same


def _command(base: str, token: str) -> list[str]:
    return [SCHEMATHESIS, "--no-color", "run", base + "/api/v1/openapi.json", "--checks", "all",
            "-H", f"Authorization: Bearer {token}", "--max-examples", str(MAX_EXAMPLES), "--seed", "1"]


def _refused(out: str) -> set[str]:
    """The operations schemathesis warns answered only 401/403."""
    if "only 401/403" not in out:
        return set()
    warning = out.split("returned only 401/403 responses")[1].split("💡")[0]
    return set(re.findall(r"^\s+- ([A-Z]+ \S+)$", warning, re.M))


def _bearer_operations(spec: dict, user: bool) -> set[str]:
    """Operations a device token (``user=False``) or a bound token opens."""
    names = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for requirement in operation.get("security", []):
                roles = requirement.get("BearerAuth")
                if roles is not None and (user or not roles):
                    names.add(f"{method.upper()} {path}")
    return names - {"POST /api/v1/auth/logout"}     # disabled in schemathesis.toml (it ends the token)


def _serve_log(served) -> str:
    """The last lines `xintu serve` wrote (gunicorn's worker starts and exits among them)."""
    lines = (served.folder / "serve.log").read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if '" 200 ' not in line)[-6000:]


def test_the_schemathesis_command_passes_with_a_device_and_a_bound_token(served):
    base, cli = served
    device = requests.post(base + "/api/v1/clients", json={"client_id": "pc-st-device", "platform": "windows"},
                           timeout=10).json()["token"]
    issued = json.loads(cli("qrcode", "issue", "--client-id", "pc-st-bound", "-o", "qr.png",
                            "--format", "json").stdout)
    cli("sandbox", "scan", issued["scene"], "--openid", "o_schemathesis")
    bound = requests.get(base + "/api/v1/auth/wechat/binding", params={"scene": issued["scene"]},
                         headers={"Authorization": f"Bearer {issued['device_token']}"}, timeout=10).json()["token"]
    spec = requests.get(base + "/api/v1/openapi.json", timeout=10).json()
    started = time.monotonic()
    warm(base, device)
    warmed = time.monotonic()

    runs = {role: subprocess.Popen(_command(base, token), cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            for role, token in (("device", device), ("bound", bound))}
    outputs = {role: proc.communicate(timeout=600)[0] for role, proc in runs.items()}
    phases = {role: dict(re.findall(r"(Examples|Coverage|Fuzzing|Stateful) \(in ([0-9.]+)s\)", out))
              for role, out in outputs.items()}
    print(f"SCHEMATHESIS-CLI warm-up {warmed - started:.1f}s, both runs {time.monotonic() - warmed:.1f}s, "
          f"phases {phases}")
    for role, out in outputs.items():
        summary = out.split("SUMMARY")[-1]
        assert runs[role].returncode == 0, f"{role}:\n{out[-12000:]}\nserve.log:\n{_serve_log(cli)}"
        assert "failures" not in summary and "Network Error" not in summary, f"{role}:\n{out[-4000:]}"
        assert f"Tested: {sum(len(item) for item in spec['paths'].values()) - 1}" in summary, summary
        opened = _bearer_operations(spec, user=role == "bound")
        assert opened and not opened & _refused(out), f"{role} was refused: {opened & _refused(out)}"
    # The tokens outlived the run (nothing in it ended them).
    for token in (device, bound):
        assert requests.get(base + "/api/v1/auth/wechat/binding", params={"scene": "x"}, timeout=10,
                            headers={"Authorization": f"Bearer {token}"}).status_code != 401
