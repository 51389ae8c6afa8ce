"""`xintu deploy` over a real sshd on 127.0.0.1 into a temp folder: first deploy, a graceful upgrade under
load, and a broken release that is rolled back."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import pymysql
import pytest
import requests
from click.testing import CliRunner

from xintu.ops import render
from xintu.ops.loopback import loopback_settings
from xintu.ops.procs import free_port, sshd
from xintu_cli.main import cli


def rewrap(wheel: Path, version: str, out: Path, patches: dict[str, tuple[str, str]] | None = None) -> Path:
    """A copy of ``wheel`` as another version (and with source edits), its RECORD recomputed."""
    old = wheel.name.split("-")[1]
    patches = {"xintu/__init__.py": (f'__version__ = "{old}"', f'__version__ = "{version}"'),
               **(patches or {})}
    target = out / wheel.name.replace(f"-{old}-", f"-{version}-")
    record_name = f"xintu-{version}.dist-info/RECORD"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        record = []
        for info in src.infolist():
            name = info.filename.replace(f"xintu-{old}.dist-info", f"xintu-{version}.dist-info")
            if name == record_name:
                continue
            data = src.read(info)
            if name in patches:
                before, after = patches[name]
                assert before.encode() in data, (name, before)
                data = data.replace(before.encode(), after.encode())
            if name.endswith("METADATA"):
                data = data.replace(f"Version: {old}".encode(), f"Version: {version}".encode())
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
            dst.writestr(name, data)
        dst.writestr(record_name, "\n".join(record + [f"{record_name},,"]) + "\n")
    return target


@pytest.fixture(scope="module")
def wheels(tmp_path_factory, built_wheel):
    out = tmp_path_factory.mktemp("wheels")
    built = built_wheel
    broken = {"xintu/health.py": ('return {"status": "ok", "version": __version__}',
                                  'raise RuntimeError("broken build")')}
    return {"v1": rewrap(built, "9.0.1", out), "v2": rewrap(built, "9.0.2", out),
            "broken": rewrap(built, "9.0.3", out, broken)}


@pytest.fixture
def ssh_host(tmp_path):
    port = free_port()
    server, key = sshd(tmp_path / "sshd", port)
    with server:
        yield f"root@127.0.0.1:{port}", key


@pytest.fixture
def target(tmp_path, mariadb, mysql_database):
    """Deployment settings for a host whose app database is a fresh database on the real primary."""
    settings = loopback_settings(tmp_path / "site", tls=False)
    shared = Path(settings["paths"]["root"]) / "shared"
    (shared / "instance").mkdir(parents=True, exist_ok=True)
    (shared / "xintu.env").write_text(f"XINTU_DATABASE_URL={mariadb.app_url(mysql_database)}\n"
                                      "XINTU_SANDBOX=false\n")
    conf = tmp_path / "conf"
    render.write_tree(render.render_all(settings, "deploy-test-secret-0123456789abcdef"), conf)
    yield settings, conf
    pidfile = Path(settings["paths"]["run"]) / "gunicorn.pid"
    if pidfile.exists():   # the gunicorn master the deploy started (daemonised) is ours to stop
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)


@pytest.fixture
def deploy(bare_python, wheelhouse):
    """`xintu deploy` to the loopback host: its python is a bare one, every dependency comes from the
    wheelhouse (uploaded over SSH, installed with --no-index)."""
    def run(host, key, settings, conf, wheel, *extra):
        return CliRunner().invoke(cli, [
            "deploy", "--host", host, "--key", str(key), "--settings",
            str(Path(settings["paths"]["root"]).parent / "deploy.toml"), "--wheel", str(wheel),
            "--conf", str(conf), "--python", bare_python, "--wheelhouse", str(wheelhouse),
            "--reload", "pidfile", "--health-timeout", "8", "--format", "json", *extra])
    return run


@pytest.mark.slow
def test_deploy_upgrade_under_load_and_rollback_of_a_broken_release(ssh_host, target, wheels, mariadb,
                                                                    mysql_database, deploy):
    host, key = ssh_host
    settings, conf = target
    root = Path(settings["paths"]["root"])
    health = f"http://127.0.0.1:{settings['gunicorn']['port']}/healthz"

    first = deploy(host, key, settings, conf, wheels["v1"])
    assert first.exit_code == 0, first.output
    assert requests.get(health, timeout=5).json()["version"] == "9.0.1"
    v1_release = os.readlink(root / "current")
    assert (Path(v1_release) / "conf/gunicorn/gunicorn.conf.py").is_file()
    assert "include-system-site-packages = false" in (Path(v1_release) / ".venv/pyvenv.cfg").read_text()
    assert "wheel(s) uploaded" in first.output and "installed" in first.output
    with pymysql.connect(host="127.0.0.1", port=mariadb.primary.port, user="root",
                         database=mysql_database) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES LIKE 'users'")
        assert cur.fetchone(), "migrations did not run on the host"

    # The same wheel and configs again: the plan says so, and a re-deploy changes nothing but asks /healthz.
    releases_before = sorted(p.name for p in (root / "releases").iterdir())
    plan = deploy(host, key, settings, conf, wheels["v1"], "--dry-run")
    assert plan.exit_code == 0, plan.output
    [state] = json.loads(plan.stdout)
    assert state["unchanged"] is True and state["running"] == "9.0.1" and len(state["steps"]) == 2
    again = deploy(host, key, settings, conf, wheels["v1"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)[0]["reload"] == "none"
    assert sorted(p.name for p in (root / "releases").iterdir()) == releases_before
    assert os.readlink(root / "current") == v1_release
    [upgrade] = json.loads(deploy(host, key, settings, conf, wheels["v2"], "--dry-run").stdout)
    assert upgrade["unchanged"] is False and upgrade["deps_installed"] is True
    assert any(step.startswith("reuse dependency set") for step in upgrade["steps"])
    assert sorted(p.name for p in (root / "releases").iterdir()) == releases_before   # a plan only

    # Upgrade while a client keeps calling: the HUP reload must not drop a single request.
    seen, failures, stop = set(), [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                # A slow answer on a busy machine is not a dropped one: only a refused, reset or failed
                # request counts, so the read timeout is generous.
                answer = requests.get(health, timeout=60)
                if answer.status_code != 200:
                    failures.append(answer.status_code)
                else:
                    seen.add(answer.json()["version"])
            except requests.RequestException as exc:
                failures.append(repr(exc))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        second = deploy(host, key, settings, conf, wheels["v2"])
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join()
    assert second.exit_code == 0, second.output
    assert "already installed" in second.output      # same requirements: the dependency set is reused
    assert failures == []
    assert seen == {"9.0.1", "9.0.2"}
    v2_release = os.readlink(root / "current")

    third = deploy(host, key, settings, conf, wheels["broken"])
    assert third.exit_code == 1
    last_line = third.output.strip().splitlines()[-1]
    assert last_line.startswith("Error: health check of 9.0.3 failed")
    assert last_line.endswith(f"rolled back to {Path(v2_release).name}")
    assert os.readlink(root / "current") == v2_release
    assert requests.get(health, timeout=5).json()["version"] == "9.0.2"
    assert [p.name for p in (root / "releases").glob("*-9.0.3.failed")]
    assert Path(v1_release).is_dir()   # older releases stay available for a manual rollback


@pytest.mark.slow
def test_a_broken_first_deploy_fails_without_inventing_a_rollback(ssh_host, target, wheels, deploy):
    host, key = ssh_host
    settings, conf = target
    root = Path(settings["paths"]["root"])
    result = deploy(host, key, settings, conf, wheels["broken"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].endswith(
        "no previous release to roll back to (current stays on it)")
    assert Path(os.readlink(root / "current")).is_dir()


@pytest.mark.parametrize("bad", ["/srv/x$(id)", "/srv/`id`", "/srv/a|b", "/srv/a;b", "/srv/a b", "/srv/*"])
def test_settings_refuse_shell_characters_in_paths(tmp_path, bad):
    from xintu.errors import ConfigError
    from xintu.ops.settings import validate_settings

    with pytest.raises(ConfigError, match="paths.root"):
        validate_settings({"paths": {"root": bad}}, "deploy.toml")
