"""`xintu serve` as a user runs it: a subprocess (gunicorn + its sandbox) on a temp instance folder, with a
second "shell" that runs `xintu …` on the same instance. ``served`` uses this venv's `xintu`;
tests/test_wheel.py runs the same helper with the wheel installed alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from xintu.ops.procs import free_port

VENV_XINTU = str(Path(sys.executable).with_name("xintu"))


class Served:
    """The running server (``base``, ``proc``) and the second shell: ``served("credits", "audit")``."""

    def __init__(self, xintu: str, folder: Path, env: dict, base: str, proc: subprocess.Popen):
        self.xintu, self.folder, self.env, self.base, self.proc = xintu, folder, env, base, proc

    def __call__(self, *args, check=True, timeout=300):
        result = subprocess.run([self.xintu, *args], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, f"xintu {' '.join(args)}: {result.stderr[-1500:]}"
        return result

    def __iter__(self):   # base, cli = served
        return iter((self.base, self))


def clean_env(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XINTU_")}
    env.update(XINTU_INSTANCE_PATH=str(folder / "instance"), XINTU_INTERNAL_SHARED_SECRET="s" * 40)
    return env


@contextmanager
def running_serve(xintu: str, folder: Path, env: dict | None = None, startup: float = 90):
    """Start `xintu serve` in ``folder``; ready once /healthz answers and its sandbox is recorded. Stopped
    with SIGTERM (as an operator's Ctrl-C or systemd would) on the way out."""
    env = env or clean_env(folder)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(folder / "serve.log", "ab")   # gunicorn's and the children's lines, for a failing test to show
    proc = subprocess.Popen([xintu, "serve", "--port", str(port)], cwd=folder, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    state = Path(env["XINTU_INSTANCE_PATH"]) / "sandbox.json"
    try:
        deadline = time.monotonic() + startup
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200 and state.exists():
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                pytest.fail(f"xintu serve exited with {proc.returncode}")
            time.sleep(0.3)
        else:
            pytest.fail("xintu serve did not come up")
        yield Served(xintu, folder, env, base, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.fixture
def served(tmp_path):
    with running_serve(VENV_XINTU, tmp_path) as server:
        yield server
