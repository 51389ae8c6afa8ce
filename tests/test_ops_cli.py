"""The operator's path: `xintu conf render/check`, `xintu sites render`, `xintu db replication`."""

from __future__ import annotations

import json
import threading
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from xintu.ops import render, replication
from xintu.ops.loopback import loopback_settings
from xintu.ops.procs import MariaDBServer
from xintu_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SECRET = "cli-test-shared-secret-0123456789"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_conf_render_writes_every_config_from_the_settings_file(tmp_path):
    result = invoke("conf", "render", "--settings", str(ROOT / "xintu/conf/deploy.example.toml"),
                    "--out", str(tmp_path), "--format", "json",
                    env={"XINTU_INTERNAL_SHARED_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    files = {Path(row["file"]).relative_to(tmp_path).as_posix() for row in json.loads(result.output)}
    assert {"nginx/nginx.conf", "lighttpd/lighttpd.conf", "gunicorn/gunicorn.conf.py", "mariadb/replica.cnf",
            "systemd/xintu-gunicorn.service", "systemd/xintu-order-sweep.timer", "cron/xintu"} <= files
    assert SECRET in (tmp_path / "lighttpd/lighttpd.conf").read_text()


def test_conf_render_without_the_secret_is_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["conf", "render", "--settings", str(ROOT / "xintu/conf/deploy.example.toml"),
                                      "--out", str(tmp_path)], env={"XINTU_INTERNAL_SHARED_SECRET": ""})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: set XINTU_INTERNAL_SHARED_SECRET (at least 24 characters) to render the web tier config"]
    assert not (tmp_path / "lighttpd").exists()


def test_conf_check_passes_loopback_output_and_fails_on_paths_that_do_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    render.write_tree(render.render_all(loopback_settings(tmp_path / "lb"), SECRET), tmp_path / "ok")
    result = invoke("conf", "check", str(tmp_path / "ok"), "--app", "tests.ops_wsgi:app", "--format", "json")
    assert result.exit_code == 0, result.output
    assert all(row["ok"] for row in json.loads(result.output))

    invoke("conf", "render", "--settings", str(ROOT / "xintu/conf/deploy.example.toml"), "--out",
           str(tmp_path / "prod"), env={"XINTU_INTERNAL_SHARED_SECRET": SECRET})
    result = CliRunner().invoke(cli, ["conf", "check", str(tmp_path / "prod"), "--app", "tests.ops_wsgi:app",
                                      "--format", "json"])
    assert result.exit_code == 1
    failed = {row["tool"] for row in json.loads(result.output) if not row["ok"]}
    assert "nginx -t" in failed   # /var/log/xintu and the TLS key do not exist on this machine


def test_sites_render_links_the_newest_release_in_the_database(app, tmp_path, monkeypatch):
    from xintu.models import Release

    with app.app_context():
        for version in ("1.2.0", "1.10.0", "1.9.5"):
            Release.create(platform="windows", version=version, filename=f"xintu-{version}.exe",
                           sha256="0" * 64, size=1 << 20)
    monkeypatch.setenv("XINTU_INSTANCE_PATH", app.instance_path)
    result = invoke("sites", "render", "--out", str(tmp_path / "dist"), "--api-base", "https://api.xintu.test",
                    "--only", "official", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["site"] == "official"
    html = (tmp_path / "dist/official/index.html").read_text()
    assert 'href="https://api.xintu.test/api/v1/releases/windows/1.10.0/download"' in html
    assert "1.9.5" not in html


@pytest.fixture
def empty_pair(tmp_path):
    """Two MariaDB servers on brand-new datadirs: nothing configured between them yet."""
    primary = MariaDBServer(tmp_path / "p", server_id=11)
    replica = MariaDBServer(tmp_path / "r", server_id=12, replica=True)
    threads = [threading.Thread(target=s.start) for s in (primary, replica)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    yield primary, replica
    for server in (replica, primary):
        server.destroy()


def _query(server, sql, args=None):
    with closing(replication.admin_connect(server.admin_url)) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def test_replication_from_nothing_is_least_privilege_idempotent_and_promotable(empty_pair):
    primary, replica = empty_pair
    urls = ["--primary", primary.admin_url, "--replica", replica.admin_url]
    first = invoke("db", "replication", "setup", *urls, "--format", "json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["replicating"] is True and report["read_only"] == 1
    assert any(line.startswith("created replication user repl@127.0.0.1") for line in report["changed"])

    accounts = _query(primary, "SELECT Host, authentication_string AS auth FROM mysql.user WHERE User='repl'")
    assert [a["Host"] for a in accounts] == ["127.0.0.1"]          # host-limited, never '%'
    grants = _query(primary, "SHOW GRANTS FOR 'repl'@'127.0.0.1'")
    assert [list(g.values())[0].split(" IDENTIFIED")[0] for g in grants] == [
        "GRANT REPLICATION SLAVE ON *.* TO `repl`@`127.0.0.1`"]

    again = invoke("db", "replication", "setup", *urls)
    assert again.exit_code == 0 and "already replicating: nothing changed" in again.output
    assert _query(primary, "SELECT authentication_string AS auth FROM mysql.user WHERE User='repl'") == \
        [{"auth": accounts[0]["auth"]}]

    _query(primary, "CREATE DATABASE xintu_cli_check")
    _query(primary, "CREATE TABLE xintu_cli_check.t (id INT PRIMARY KEY)")
    _query(primary, "INSERT INTO xintu_cli_check.t VALUES (7)")
    replication.wait_for(primary.admin_url, replica.admin_url)
    assert _query(replica, "SELECT id FROM xintu_cli_check.t") == [{"id": 7}]
    # The replica's my.cnf is the production template: it keeps a binlog so it can be promoted.
    assert _query(replica, "SELECT @@log_slave_updates AS l, @@gtid_strict_mode AS g") == [{"l": 1, "g": 1}]

    status = invoke("db", "replication", "status", "--replica", replica.admin_url, "--format", "json")
    assert status.exit_code == 0
    state = json.loads(status.output)
    assert state["io_running"] == state["sql_running"] == "Yes" and state["lag_seconds"] == 0
    assert state["gtid_slave_pos"] == _query(primary, "SELECT @@gtid_binlog_pos AS p")[0]["p"]

    promoted = invoke("db", "replication", "promote", "--replica", replica.admin_url, "--yes",
                      "--format", "json")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.output)["was_following"] == f"127.0.0.1:{primary.port}"
    _query(replica, "INSERT INTO xintu_cli_check.t VALUES (8)")      # writable now
    after = CliRunner().invoke(cli, ["db", "replication", "status", "--replica", replica.admin_url,
                                     "--format", "json"])
    assert after.exit_code == 1 and json.loads(after.output)["replicating"] is False
