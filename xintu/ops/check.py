"""Validate rendered configs with the real server binaries (`xintu conf check DIR`).

A config that only looks right is worth little: each file goes through the program that will read it.
Two of those programs accept broken input with exit 0, so their output is read too: lighttpd ignores a
directive of a module it did not load (``WARNING: unknown config-key``) and systemd ignores unknown keys.
Paths a config names (logs, pid files, TLS keys) must exist where the check runs: run it on the target
host, or on output rendered from settings that point at local folders (as the tests do).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CheckResult:
    file: str
    tool: str
    ok: bool
    output: str

    def row(self) -> dict:
        return {"file": self.file, "tool": self.tool, "ok": self.ok, "output": self.output}


def _run(argv: list[str], env: dict | None = None, timeout: float = 60) -> tuple[int, str]:
    if not shutil.which(argv[0]):
        return 127, f"{argv[0]}: not installed"
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _summary(output: str, bad: re.Pattern | None = None) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    if bad:
        flagged = [line for line in lines if bad.search(line)]
        if flagged:
            return " | ".join(flagged[:5])
    return " | ".join(lines[-2:])


def check_nginx(main_conf: Path) -> CheckResult:
    rc, out = _run(["nginx", "-t", "-c", str(main_conf.resolve())])
    return CheckResult(str(main_conf), "nginx -t", rc == 0, _summary(out, re.compile(r"\[emerg\]")))


LIGHTTPD_BAD = re.compile(r"WARNING|ERROR|unknown config-key", re.IGNORECASE)


def check_lighttpd(conf: Path) -> CheckResult:
    rc, out = _run(["lighttpd", "-tt", "-f", str(conf.resolve())])
    ok = rc == 0 and not LIGHTTPD_BAD.search(out)
    return CheckResult(str(conf), "lighttpd -tt", ok, _summary(out, LIGHTTPD_BAD) or "Syntax OK")


def check_gunicorn(conf: Path, app: str, env: dict | None = None) -> CheckResult:
    """``--check-config`` imports the app, so ``env`` must let it start (instance path, database URL)."""
    argv = [sys.executable, "-m", "gunicorn", "--check-config", "-c", str(conf.resolve()), app]
    rc, out = _run(argv, env={**os.environ, **(env or {})})
    return CheckResult(str(conf), "gunicorn --check-config", rc == 0, _summary(out) or "config OK")


def check_mariadb(cnf: Path) -> CheckResult:
    # `--help --verbose` parses the option files exactly as a start would and stops at unknown variables.
    rc, out = _run(["mariadbd", f"--defaults-file={cnf.resolve()}", "--help", "--verbose"])
    return CheckResult(str(cnf), "mariadbd --help --verbose", rc == 0,
                       _summary(out, re.compile(r"\[ERROR\]")) if rc else "options OK")


SYSTEMD_BAD = re.compile(r"Unknown (key|section)|Failed to parse|Invalid|bad-setting|Missing '='")


def check_systemd(units: list[Path]) -> CheckResult:
    # Off the target host the venv binaries do not exist yet: that is not a unit-file error.
    rc, out = _run(["systemd-analyze", "verify", *[str(u.resolve()) for u in units]])
    problems = [line for line in out.splitlines() if SYSTEMD_BAD.search(line)]
    folder = str(units[0].parent) if units else "systemd"
    return CheckResult(folder, "systemd-analyze verify", rc != 127 and not problems,
                       " | ".join(problems[:5]) or ("not installed" if rc == 127 else "units OK"))


def check_tree(out: str | os.PathLike, app: str = "xintu:create_app()",
               app_env: dict | None = None) -> list[CheckResult]:
    """Check every rendered file found under ``out`` (as written by ``render.write_tree``)."""
    out = Path(out)
    results = []
    if (out / "nginx/nginx.conf").exists():
        results.append(check_nginx(out / "nginx/nginx.conf"))
    if (out / "lighttpd/lighttpd.conf").exists():
        results.append(check_lighttpd(out / "lighttpd/lighttpd.conf"))
    if (out / "gunicorn/gunicorn.conf.py").exists():
        results.append(check_gunicorn(out / "gunicorn/gunicorn.conf.py", app, app_env))
    for cnf in sorted((out / "mariadb").glob("*.cnf")):
        results.append(check_mariadb(cnf))
    units = sorted(p for p in (out / "systemd").glob("*") if p.suffix in (".service", ".timer", ".target"))
    if units:
        results.append(check_systemd(units))
    return results
