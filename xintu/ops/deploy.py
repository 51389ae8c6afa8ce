"""Deploy a built wheel + rendered configs to an app host over SSH (Fabric), with rollback.

Layout on the host (``paths.root``)::

    releases/<id>/{<wheel>, conf/, .venv/}   one folder per deploy, never modified after activation
    current -> releases/<id>                 switched atomically (rename of a symlink)
    shared/{instance/, xintu.env}            state and secrets that outlive releases
    shared/deps/<key>/                       the wheel's dependencies, one folder per distinct set
    shared/wheelhouse/                       wheels uploaded with --wheelhouse (hosts without an index)

Dependencies are installed once per distinct set (``key``: a hash of the wheel's ``Requires-Dist``, the
pip arguments and the wheelhouse's file names) into ``shared/deps/<key>`` with ``pip install --target``;
each release's venv reaches them through a ``.pth`` file and gets only the wheel itself, then ``pip check``
proves the whole set is satisfied. A release that changes only our code installs in seconds, a rollback
keeps the set it was built with, and sets no kept release uses are pruned. The venvs never see the host
python's own site-packages: a host needs nothing but python3 with pip.

Steps: upload, venv + install, migrate (additive migrations, so the old code keeps working), switch
``current``, graceful reload (HUP: gunicorn starts workers that import the code ``current`` points at
and lets the old ones finish their requests), then a health check that demands the new version. If it
fails, ``current`` goes back to the previous release, gunicorn is reloaded again and the deploy fails.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import shlex
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from xintu.errors import XintuError


class DeployError(XintuError):
    status, code, message = 500, "deploy_failed", "部署失败"


@dataclass
class DeployPlan:
    wheel: Path
    conf_dir: Path                 # output of `xintu conf render`
    settings: dict
    python: str = "python3"        # interpreter on the host that creates the venv
    pip_args: list[str] = field(default_factory=list)   # e.g. --index-url …
    wheelhouse: Path | None = None  # local folder of wheels: uploaded, then installed with --no-index
    reload: str = "systemd"        # or "pidfile": gunicorn started/HUPed by PID (hosts without systemd)
    health_timeout: float = 30.0
    keep: int = 5                  # releases kept for rollback

    @property
    def version(self) -> str:
        return self.wheel.name.split("-")[1]

    @property
    def root(self) -> str:
        return self.settings["paths"]["root"]

    @property
    def requirements(self) -> list[str]:
        return wheel_requirements(self.wheel)

    @property
    def fingerprint(self) -> str:
        """What a release is made of: the wheel's bytes, every rendered config, the dependency set."""
        digest = hashlib.sha256(self.wheel.read_bytes())
        for path in sorted(p for p in self.conf_dir.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(self.conf_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
        digest.update(self.deps_key.encode())
        return digest.hexdigest()[:24]

    @property
    def deps_key(self) -> str:
        parts = sorted(self.requirements) + ["--"] + list(self.pip_args) + ["--"]
        if self.wheelhouse:
            parts += sorted(p.name for p in self.wheelhouse.glob("*.whl"))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    @property
    def health_url(self) -> str:
        guni = self.settings["gunicorn"]
        return f"http://{guni['host']}:{guni['port']}/healthz"


def wheel_requirements(wheel: Path) -> list[str]:
    """A wheel's own runtime requirements (``Requires-Dist`` without extras)."""
    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(whl.read(name).decode("utf-8"))
    return [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]


def _q(value) -> str:
    return shlex.quote(str(value))


def _tar(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


HEALTH_PROBE = """
import json, sys, time, urllib.request
url, want, deadline = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
streak, last = 0, "no answer"
while True:   # at least one try: a deadline of 0 asks once what is running
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            body = json.load(r)
        last = "version %s" % body.get("version")
        streak = streak + 1 if body.get("version") == want and body.get("status") == "ok" else 0
    except Exception as exc:
        last, streak = "%s: %s" % (type(exc).__name__, exc), 0
    if streak >= 5:   # several answers in a row: the old workers are gone
        print("healthy"); sys.exit(0)
    if time.time() >= deadline:
        break
    time.sleep(0.2)
print(last); sys.exit(1)
"""


class Deployer:
    def __init__(self, conn, plan: DeployPlan, log=print):
        self.conn, self.plan = conn, plan
        self._t0 = time.perf_counter()
        self.log = lambda line: log(f"{time.perf_counter() - self._t0:6.1f}s {line}")

    def run(self, command: str, **kw):
        from invoke.exceptions import UnexpectedExit

        try:
            return self.conn.run(command, hide=True, in_stream=False, **kw)
        except UnexpectedExit as exc:
            # One line for the operator: the step's own last words, not Fabric's multi-line report.
            result = exc.result
            said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            step = command.split("; ")[-1][:80]
            raise DeployError(f"on {self.conn.host}: `{step}` exited {result.exited}: {said}",
                              code="remote_command_failed") from None

    def _env_prefix(self) -> str:
        shared = f"{self.plan.root}/shared"
        return (f"set -a; [ -r {shared}/xintu.env ] && . {shared}/xintu.env; set +a; "
                f"export XINTU_INSTANCE_PATH={shared}/instance; ")

    def prepare(self) -> str:
        plan = self.plan
        release = f"{plan.root}/releases/{time.strftime('%Y%m%dT%H%M%S')}-{plan.version}"
        paths = plan.settings["paths"]
        shared = f"{plan.root}/shared"
        # a release is never reused: plain mkdir fails on an existing one
        self.run(f"mkdir -p {_q(plan.root)}/releases {_q(shared)}/instance {_q(shared)}/deps "
                 f"{_q(paths['logs'])} {_q(paths['run'])} && mkdir {_q(release)} {_q(release)}/conf")
        self.conn.put(str(plan.wheel), f"{release}/{plan.wheel.name}")
        self.conn.put(io.BytesIO(_tar(plan.conf_dir)), f"{release}/conf.tar.gz")
        self.run(f"tar -xzf {_q(release)}/conf.tar.gz -C {_q(release)}/conf && rm {_q(release)}/conf.tar.gz")
        self.log(f"uploaded {plan.wheel.name} and configs to {release}")
        deps = self.dependencies()
        venv = f"{release}/.venv"
        # No pip inside the venv (seeding it costs ~9 s per deploy): the host's pip installs into it.
        self.run(f"{_q(plan.python)} -m venv --without-pip {_q(venv)}")
        purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
        site = self.run(f"{_q(venv)}/bin/python -c {_q(purelib)}").stdout.strip()
        self.run(f"echo {_q(deps)} > {_q(site)}/xintu-deps.pth && "
                 f"echo {_q(plan.deps_key)} > {_q(release)}/.deps")
        self.run(f"{self._pip(venv)} install -q --no-deps --no-index {_q(release)}/{_q(plan.wheel.name)}")
        self.run(f"{self._pip(venv)} check")
        self.log("venv ready")
        self.run(self._env_prefix() + f"cd {_q(release)} && {_q(venv)}/bin/xintu db migrate")
        self.log("migrations applied")
        self.run(f"echo {_q(plan.fingerprint)} > {_q(release)}/.fingerprint")
        return release

    def _pip(self, venv: str) -> str:
        return f"{_q(self.plan.python)} -m pip --python {_q(venv)}/bin/python --disable-pip-version-check"

    def _sync_wheelhouse(self) -> str:
        """Upload the wheels the host does not have yet; returns the host's wheelhouse folder."""
        remote = f"{self.plan.root}/shared/wheelhouse"
        self.run(f"mkdir -p {_q(remote)}")
        have = set(self.run(f"ls -1 {_q(remote)}").stdout.split())
        missing = [p for p in sorted(self.plan.wheelhouse.glob("*.whl")) if p.name not in have]
        for wheel in missing:
            self.conn.put(str(wheel), f"{remote}/{wheel.name}.part")
            self.run(f"mv {_q(remote)}/{_q(wheel.name)}.part {_q(remote)}/{_q(wheel.name)}")
        self.log(f"wheelhouse: {len(missing)} wheel(s) uploaded, {len(have)} already there")
        return remote

    def dependencies(self) -> str:
        """The folder holding this wheel's dependency set, installed now if no earlier release made it."""
        plan = self.plan
        target = f"{plan.root}/shared/deps/{plan.deps_key}"
        if self.run(f"test -d {_q(target)}", warn=True).ok:
            self.log(f"dependencies {plan.deps_key} already installed")
            return target
        args = list(plan.pip_args)
        if plan.wheelhouse:
            args += ["--no-index", "--find-links", self._sync_wheelhouse()]
        reqs = "\n".join(plan.requirements) + "\n"
        self.conn.put(io.BytesIO(reqs.encode()), f"{plan.root}/shared/deps/{plan.deps_key}.txt")
        self.run(f"rm -rf {_q(target)}.tmp && {_q(plan.python)} -m pip install -q "
                 f"--disable-pip-version-check --target {_q(target)}.tmp {' '.join(_q(a) for a in args)} "
                 f"-r {_q(target)}.txt "
                 f"&& mv -T {_q(target)}.tmp {_q(target)}")   # complete or absent, never half there
        self.log(f"dependencies {plan.deps_key} installed")
        return target

    def current(self) -> str | None:
        out = self.run(f"readlink {_q(self.plan.root)}/current", warn=True)
        return out.stdout.strip() or None

    def switch(self, release: str) -> None:
        root = self.plan.root
        # A new symlink renamed over the old one: readers see the old or the new release, never none.
        self.run(f"ln -sfn {_q(release)} {_q(root)}/current.new "
                 f"&& mv -T {_q(root)}/current.new {_q(root)}/current")

    def reload(self) -> str:
        if self.plan.reload == "systemd":
            self.run("sudo systemctl reload-or-restart xintu-gunicorn")
            return "systemctl reload"
        pidfile = f"{self.plan.settings['paths']['run']}/gunicorn.pid"
        alive = self.run(f"kill -0 $(cat {_q(pidfile)}) 2>/dev/null", warn=True).ok
        if alive:
            self.run(f"kill -HUP $(cat {_q(pidfile)})")
            return "HUP"
        current = f"{self.plan.root}/current"
        app = self.plan.settings["gunicorn"]["app"]
        self.run(self._env_prefix() + f"cd {_q(current)} && {_q(current)}/.venv/bin/python -m gunicorn "
                 f"--daemon --config {_q(current)}/conf/gunicorn/gunicorn.conf.py {_q(app)}")
        return "started"

    def healthy(self, version: str) -> tuple[bool, str]:
        probe = self.run(f"{_q(self.plan.python)} -c {_q(HEALTH_PROBE)} {_q(self.plan.health_url)} "
                         f"{_q(version)} {self.plan.health_timeout}", warn=True)
        return probe.ok, probe.stdout.strip()

    def prune(self) -> None:
        releases = f"{self.plan.root}/releases"
        listing = self.run(f"ls -1 {_q(releases)}").stdout.split()
        keep = {Path(self.current() or "").name}
        for name in sorted(listing)[:-self.plan.keep]:
            if name not in keep:
                self.run(f"rm -rf {_q(releases)}/{_q(name)}")
        # Dependency sets that no kept release (failed ones included, for inspection) points to.
        deps = f"{self.plan.root}/shared/deps"
        used = set(self.run(f"cat {_q(releases)}/*/.deps 2>/dev/null", warn=True).stdout.split())
        for name in self.run(f"ls -1 {_q(deps)}").stdout.split():
            key = name.removesuffix(".txt").removesuffix(".tmp")
            if key not in used:
                self.run(f"rm -rf {_q(deps)}/{_q(name)}")

    def host_state(self) -> dict:
        """What is on the host now, read without changing anything."""
        current = self.current()
        fingerprint = ""
        if current:
            fingerprint = self.run(f"cat {_q(current)}/.fingerprint 2>/dev/null", warn=True).stdout.strip()
        deps = f"{self.plan.root}/shared/deps/{self.plan.deps_key}"
        running = self.run(f"{_q(self.plan.python)} -c {_q(HEALTH_PROBE)} {_q(self.plan.health_url)} - 0",
                           warn=True).stdout.strip()
        missing = None
        if self.plan.wheelhouse:
            listing = self.run(f"ls -1 {_q(self.plan.root)}/shared/wheelhouse 2>/dev/null", warn=True)
            have = set(listing.stdout.split())
            missing = len([p for p in self.plan.wheelhouse.glob("*.whl") if p.name not in have])
        return {"current": current, "unchanged": bool(current) and fingerprint == self.plan.fingerprint,
                "running": running.removeprefix("version ") if running.startswith("version ") else None,
                "deps_installed": self.run(f"test -d {_q(deps)}", warn=True).ok, "wheels_missing": missing}

    def steps(self, state: dict) -> list[str]:
        plan = self.plan
        if state["unchanged"]:
            return [f"nothing to change: {state['current']} has this wheel and these configs",
                    f"health check {plan.health_url} for version {plan.version}"]
        steps = [f"upload {plan.wheel.name} and {sum(1 for p in plan.conf_dir.rglob('*') if p.is_file())} "
                 f"config files to {plan.root}/releases/<timestamp>-{plan.version}"]
        if state["deps_installed"]:
            steps.append(f"reuse dependency set {plan.deps_key}")
        else:
            if state["wheels_missing"] is not None:
                steps.append(f"upload {state['wheels_missing']} wheel(s) to the host's wheelhouse")
            steps.append(f"install dependency set {plan.deps_key} ({len(plan.requirements)} requirements)")
        steps += ["create the release venv, install the wheel, pip check", "xintu db migrate",
                  f"switch current (now {state['current'] or 'none'})",
                  "reload gunicorn (" + ("systemctl reload-or-restart xintu-gunicorn"
                                         if plan.reload == "systemd" else "HUP by pid file, or start it") + ")",
                  f"health check {plan.health_url} for version {plan.version} (running now: "
                  f"{state['running'] or 'nothing answers'}); roll back on failure",
                  f"prune releases beyond the newest {plan.keep}"]
        return steps

    def dry_run(self) -> dict:
        state = self.host_state()
        return {**state, "version": self.plan.version, "steps": self.steps(state)}

    def deploy(self) -> dict:
        started = time.perf_counter()
        self.log(f"deploying {self.plan.version} to {self.conn.host}")
        state = self.host_state()
        if state["unchanged"]:   # same wheel, same configs, same dependencies: only prove it answers
            ok, detail = self.healthy(self.plan.version)
            if not ok:
                raise DeployError(f"health check of {self.plan.version} failed ({detail}); "
                                  "nothing was changed", code="health_check_failed")
            self.log("unchanged: the current release already has this wheel and these configs")
            return {"release": state["current"], "previous": state["current"], "version": self.plan.version,
                    "reload": "none", "health": detail, "seconds": round(time.perf_counter() - started, 1)}
        previous = state["current"]
        release = self.prepare()
        self.switch(release)
        how = self.reload()
        self.log(f"current -> {release} ({how})")
        ok, detail = self.healthy(self.plan.version)
        if not ok:
            if previous:
                self.switch(previous)
                self.reload()
                back_ok, back_detail = self.healthy(Path(previous).name.split("-", 1)[1])
                state = f"rolled back to {Path(previous).name}"
                if not back_ok:
                    state += f" (unhealthy: {back_detail})"
                # Kept for inspection, renamed so nobody takes it for a release that once worked.
                self.run(f"mv {_q(release)} {_q(release)}.failed")
            else:
                state = "no previous release to roll back to (current stays on it)"
            raise DeployError(f"health check of {self.plan.version} failed ({detail}); {state}",
                              code="health_check_failed")
        self.prune()
        return {"release": release, "previous": previous, "version": self.plan.version, "reload": how,
                "health": detail, "seconds": round(time.perf_counter() - started, 1)}
