"""The wheel is the product: installed alone into a clean venv (every dependency from its own requirements,
no checkout on the path), run from an unrelated folder, it renders configs and sites, classifies photos
with the local model (faces and text included), and serves — a real gunicorn with its sandbox, driven
from a second shell, and nothing left running after SIGTERM."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.classify_images import PACKAGE_PHOTOS, id_card, package_photo, phone_screenshot
from tests.serve_fixtures import running_serve


@pytest.fixture(scope="module")
def installed(tmp_path_factory, bare_python, built_wheel, wheelhouse):
    """A venv holding the wheel and what it asks for, nothing else; and a folder that is not the checkout."""
    base = tmp_path_factory.mktemp("wheel-alone")
    venv = base / "venv"
    subprocess.run([bare_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([bare_python, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                    "--disable-pip-version-check", "--no-index", "--find-links", str(wheelhouse),
                    str(built_wheel)], check=True, capture_output=True)
    work = base / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XINTU_", "PYTHON"))}
    env.update(XINTU_INSTANCE_PATH=str(work / "instance"), XINTU_INTERNAL_SHARED_SECRET="s" * 40)
    return {"xintu": str(venv / "bin/xintu"), "python": str(venv / "bin/python"), "cwd": work, "env": env}


def xintu(installed, *args, check=True, timeout=300):
    result = subprocess.run([installed["xintu"], *args], cwd=installed["cwd"], env=installed["env"],
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"xintu {' '.join(args)}: {result.stderr[-1500:]}"
    return result


def test_the_installed_package_is_not_the_checkout(installed):
    where = subprocess.run([installed["python"], "-c", "import xintu, xintu_cli; print(xintu.__file__)"],
                           cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True,
                           check=True).stdout
    assert "site-packages" in where and str(Path(__file__).resolve().parents[1] / "xintu") not in where


def test_conf_render_from_the_shipped_example(installed):
    example = xintu(installed, "conf", "example").stdout
    (installed["cwd"] / "deploy.toml").write_text(example)
    out = installed["cwd"] / "conf-out"
    rows = json.loads(xintu(installed, "conf", "render", "--settings", "deploy.toml", "--out", str(out),
                            "--format", "json").stdout)
    names = {Path(row["file"]).name for row in rows}
    assert {"nginx.conf", "xintu-api.conf", "lighttpd.conf", "gunicorn.conf.py"} <= names


def test_sites_render_on_a_fresh_instance(installed):
    out = installed["cwd"] / "sites-out"
    result = xintu(installed, "sites", "render", "--out", str(out), "--format", "json")
    assert (out / "h5" / "index.html").is_file() and (out / "admin" / "index.html").is_file()
    assert (out / "official" / "index.html").is_file()
    assert result.returncode == 0
    import sqlite3  # the fresh instance created its schema itself
    with sqlite3.connect(installed["cwd"] / "instance" / "xintu.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'releases'").fetchone()[0] == 1


def test_local_classify_of_a_folder_faces_and_text_included(installed):
    photos = installed["cwd"] / "photos"
    photos.mkdir()
    picks = {"skimage:astronaut.png": "single_person", "skimage:chelsea.png": "pets"}
    assert set(picks.items()) <= set(PACKAGE_PHOTOS.items())
    for ref in picks:
        (photos / ref.split(":")[1]).write_bytes(package_photo(ref))
    (photos / "screen.png").write_bytes(phone_screenshot())
    (photos / "card.png").write_bytes(id_card())
    rows = json.loads(xintu(installed, "classify", str(photos), "--method", "local", "--silent",
                            "--format", "json").stdout)
    got = {Path(row["file"]).name: row["category"] for row in rows}
    assert got["astronaut.png"] == "single_person"      # MTCNN faces, from package data
    assert got["chelsea.png"] == "pets"
    assert got["screen.png"] == "screenshot"             # text cues from rapidocr's models
    assert got["card.png"] == "idcard"


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found | {g for c in found for g in _children(c)} if found else found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_serve_pages_sandbox_from_a_second_shell_and_a_clean_stop(installed):
    with running_serve(installed["xintu"], installed["cwd"], installed["env"]) as server:
        for path in ("/h5/", "/admin/", "/api/v1/docs"):
            answer = requests.get(server.base + path, timeout=10)
            assert answer.status_code == 200 and "<html" in answer.text.lower(), path
        server_header = requests.get(server.base + "/healthz", timeout=5).headers.get("Server", "")
        assert "gunicorn" in server_header.lower()
        state = installed["cwd"] / "instance" / "sandbox.json"
        assert state.stat().st_mode & 0o777 == 0o600

        # A second shell on the same instance: the QR comes from the server's sandbox, the scan binds it.
        issued = json.loads(server("qrcode", "issue", "--client-id", "pc-wheel-01", "-o", "qr.png",
                                   "--format", "json").stdout)
        scanned = json.loads(server("sandbox", "scan", issued["scene"], "--openid", "o_wheel_user",
                                    "--format", "json").stdout)
        assert scanned["event"] == "subscribe" and "登录成功" in scanned["reply"]
        device = {"Authorization": f"Bearer {issued['device_token']}"}
        binding = requests.get(server.base + "/api/v1/auth/wechat/binding", params={"scene": issued["scene"]},
                               headers=device, timeout=10).json()
        assert binding["status"] == "bound" and binding["token"]
        me = requests.get(server.base + "/api/v1/me", headers={"Authorization": f"Bearer {binding['token']}"},
                          timeout=10).json()
        assert me["credits_balance"] == 10
        helpers = _children(server.proc.pid)
        assert len(helpers) >= 4            # sandbox, edit worker, two gunicorn workers
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in helpers):
        time.sleep(0.2)
    assert not [p for p in helpers if _alive(p)], "xintu serve left processes behind"
    assert not (installed["cwd"] / "instance" / "sandbox.json").exists()
    refused = xintu(installed, "sandbox", "scan", "anything", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip().splitlines()[-1]]
    assert "no sandbox is running" in refused.stderr


def test_nothing_reaches_for_the_host_pythons_packages():
    """The class of mistake behind a CI that passed only where someone once pip-installed our dependencies
    into the system python: only the bare-host fixture may touch the base interpreter."""
    import re
    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(r"_base_executable|--system-site-packages")
    offenders = [str(p.relative_to(root)) for folder in ("tests", "xintu", "cli", "scripts")
                 for p in (root / folder).rglob("*") if p.is_file() and p.suffix in (".py", "", ".j2")
                 and p.name != "wheel_fixtures.py" and p != Path(__file__).resolve()
                 and pattern.search(p.read_text("utf-8", errors="replace"))]
    assert offenders == []
