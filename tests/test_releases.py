"""APP releases: upload (CLI and admin API), latest per platform, counted downloads — on MariaDB."""
import hashlib
import json

import pytest
from click.testing import CliRunner

from xintu.admin.auth import create_admin
from xintu.models import DailyStat, Release
from xintu.releases.service import get_service, version_key
from xintu.stats.service import StatsService
from xintu.timeutil import local_today

pytestmark = pytest.mark.mariadb


@pytest.fixture
def installers(tmp_path):
    files = {}
    for name, payload in (("xintu-setup.exe", b"MZ" + b"\x00" * 5000), ("xintu.dmg", b"dmg" * 999),
                          ("xintu-new.exe", b"MZ-new" * 1000)):
        path = tmp_path / name
        path.write_bytes(payload)
        files[name] = path
    return files


def test_version_order_is_numeric_not_alphabetic():
    assert sorted(["1.10.0", "1.9.2", "1.10.0-beta", "2.0"], key=version_key) == [
        "1.9.2", "1.10.0-beta", "1.10.0", "2.0"]


def test_upload_latest_download_and_counts(mysql_app, mysql_client, installers, mariadb, tmp_path):
    mysql_app.config["RELEASES_DIR"] = str(tmp_path / "store")
    releases = get_service(mysql_app)   # one per app: the same object in every request
    with mysql_app.app_context():
        assert get_service() is releases
        old = releases.upload_file(installers["xintu-setup.exe"], platform="windows", version="1.9.2", notes="旧版")
        new = releases.upload_file(installers["xintu-new.exe"], platform="windows", version="1.10.0", notes="新版")
        releases.upload_file(installers["xintu.dmg"], platform="mac", version="1.1.0")
    assert new.sha256 == hashlib.sha256(installers["xintu-new.exe"].read_bytes()).hexdigest()
    assert old.size == 5002
    mariadb.wait_replica()

    latest = mysql_client.get("/api/v1/releases/latest?platform=windows").get_json()
    assert latest["version"] == "1.10.0" and latest["notes"] == "新版"
    assert latest["download_url"].endswith("/api/v1/releases/windows/1.10.0/download")

    from prometheus_client import REGISTRY

    counted = REGISTRY.get_sample_value("xintu_app_downloads_total", {"platform": "windows"}) or 0
    for _ in range(2):
        got = mysql_client.get("/api/v1/releases/windows/1.10.0/download")
        assert got.status_code == 200 and got.data == installers["xintu-new.exe"].read_bytes()
        assert "attachment" in got.headers["Content-Disposition"]
    assert mysql_client.get("/api/v1/releases/mac/latest/download").status_code == 200
    assert REGISTRY.get_sample_value("xintu_app_downloads_total", {"platform": "windows"}) == counted + 2
    with mysql_app.app_context():
        assert Release.get(Release.version == "1.10.0").downloads == 2
        per_day = {(d.key, d.value) for d in DailyStat.select().where(DailyStat.metric == "downloads")}
        assert per_day == {("windows 1.10.0", 2), ("mac 1.1.0", 1)}
    mariadb.wait_replica()
    with mysql_app.app_context():
        today = StatsService().summary(local_today(), local_today())
    assert today.downloads == 3 and today.downloads_by_version == {"windows 1.10.0": 2, "mac 1.1.0": 1}


def test_bad_release_requests_are_4xx(mysql_app, mysql_client, installers, tmp_path):
    mysql_app.config["RELEASES_DIR"] = str(tmp_path / "store")
    assert mysql_client.get("/api/v1/releases/latest?platform=linux").status_code == 422
    none_yet = mysql_client.get("/api/v1/releases/latest?platform=android")
    assert none_yet.status_code == 404 and none_yet.get_json()["error"]["code"] == "no_release"
    assert mysql_client.get("/api/v1/releases/windows/9.9.9/download").status_code == 404
    assert mysql_client.get("/api/v1/releases/beos/1.0/download").get_json()["error"]["code"] == \
        "invalid_platform"
    from xintu.errors import Conflict, UnsupportedMediaType

    with mysql_app.app_context():
        get_service().upload_file(installers["xintu-setup.exe"], platform="windows", version="1.0.0")
        with pytest.raises(Conflict):
            get_service().upload_file(installers["xintu-setup.exe"], platform="windows", version="1.0.0")
        with pytest.raises(UnsupportedMediaType):
            get_service().upload_file(installers["xintu.dmg"], platform="android", version="1.0.0")
    # nothing half-written is left behind
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["xintu-1.0.0-windows.exe"]


def test_admin_upload_needs_an_operator(mysql_app, mysql_client, installers, tmp_path):
    mysql_app.config["RELEASES_DIR"] = str(tmp_path / "store")
    with mysql_app.app_context():
        create_admin("viewer1", "viewer password", "viewer")
        create_admin("op1", "operator password", "operator")

    def headers(name, password):
        token = mysql_client.post("/api/v1/admin/login", json={"username": name, "password": password})
        return {"Authorization": "Bearer " + token.get_json()["token"]}

    def form():
        return {"platform": "android", "version": "2.0.1", "notes": "安卓首发",
                "file": (installers["xintu-setup.exe"].open("rb"), "xintu.apk")}

    denied = mysql_client.post("/api/v1/admin/releases", data=form(), headers=headers("viewer1", "viewer password"))
    assert denied.status_code == 403
    made = mysql_client.post("/api/v1/admin/releases", data=form(), headers=headers("op1", "operator password"))
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["sha256"] == hashlib.sha256(installers["xintu-setup.exe"].read_bytes()).hexdigest()
    missing = mysql_client.post("/api/v1/admin/releases", data={"platform": "android", "version": "2.0.2"},
                                headers=headers("op1", "operator password"))
    assert missing.status_code == 422


def test_release_cli(mysql_app, mariadb, mysql_database, installers, monkeypatch, tmp_path):
    from xintu_cli.main import cli

    for key, value in {"INSTANCE_PATH": str(tmp_path / "inst"), "ENV": "testing", "SANDBOX": "0",
                       "SECRET_KEY": "t" * 40, "DATABASE_URL": mariadb.app_url(mysql_database),
                       "REPLICA_URL": mariadb.ro_url(mysql_database),
                       "RELEASES_DIR": str(tmp_path / "store")}.items():
        monkeypatch.setenv("XINTU_" + key, value)
    run = CliRunner().invoke
    up = run(cli, ["release", "upload", str(installers["xintu.dmg"]), "--platform", "mac", "--version",
                   "1.2.0", "--notes", "修复", "--format", "json"])
    assert up.exit_code == 0, up.output
    assert json.loads(up.output)["sha256"] == hashlib.sha256(installers["xintu.dmg"].read_bytes()).hexdigest()
    assert (tmp_path / "store" / "xintu-1.2.0-mac.dmg").is_file()
    dup = run(cli, ["release", "upload", str(installers["xintu.dmg"]), "--platform", "mac", "--version", "1.2.0"])
    assert dup.exit_code == 1 and dup.output.strip() == "Error: mac 1.2.0 已发布过"
    mariadb.wait_replica()
    latest = json.loads(run(cli, ["release", "latest", "--platform", "mac", "--format", "json"]).output)
    assert latest["version"] == "1.2.0"
    assert run(cli, ["release", "latest", "--platform", "android"]).exit_code == 1


