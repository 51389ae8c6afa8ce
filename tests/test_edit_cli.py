"""`xintu edit …` and `xintu worker` through the real Click commands, against the DashScope fake."""
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from tests.edit_fixtures import photo, sha256
from tests.factories import make_bound_user
from tests.test_edit_service import ledger, post_edit
from xintu_cli.main import cli


@pytest.fixture
def cli_env(edit_app, dashscope_edit_fake, monkeypatch):
    """The CLI configured like the test app: same instance folder (SQLite), same fake."""
    monkeypatch.setenv("XINTU_INSTANCE_PATH", edit_app.instance_path)
    monkeypatch.setenv("XINTU_SECRET_KEY", edit_app.config["SECRET_KEY"])
    monkeypatch.setenv("XINTU_EDIT_DASHSCOPE_API_KEY", dashscope_edit_fake.api_key)
    monkeypatch.setenv("XINTU_EDIT_DASHSCOPE_BASE_URL", dashscope_edit_fake.api_base)
    monkeypatch.setenv("XINTU_EDIT_POLL_INTERVAL", "0")
    monkeypatch.setenv("XINTU_SANDBOX", "false")
    return CliRunner()


def test_edit_run_prints_the_result_url_and_saves_it(cli_env, tmp_path, dashscope_edit_fake, monkeypatch):
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    source.write_bytes(photo("red", fmt="PNG"))
    refused = cli_env.invoke(cli, ["edit", "run", str(source), "--prompt", "把背景换成海边", "-o", str(target)])
    assert refused.exit_code == 1 and "result not saved (result_url_refused)" in refused.output
    assert not target.exists()
    # SANDBOX on admits the test fake's http result URLs; --no-sandbox: use that fake, start none
    monkeypatch.setenv("XINTU_SANDBOX", "true")
    result = cli_env.invoke(cli, ["edit", "run", str(source), "--prompt", "把背景换成海边", "-o", str(target),
                                  "--no-sandbox"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith(dashscope_edit_fake.base_url + "/results/")
    assert Image.open(target).getpixel((0, 0)) == (0, 255, 255)


def test_edit_run_with_async_model_waits_for_the_task(cli_env, tmp_path, dashscope_edit_fake):
    dashscope_edit_fake.latency = 1.5
    source = tmp_path / "in.jpg"
    source.write_bytes(photo("blue"))
    result = cli_env.invoke(cli, ["edit", "run", str(source), "--prompt", "换成夜景", "--model", "wanx2.1-imageedit"])
    assert result.exit_code == 0, result.output
    assert "/results/" in result.stdout


def test_edit_run_refused_upstream_is_one_error_line(cli_env, tmp_path, dashscope_edit_fake):
    source = tmp_path / "in.jpg"
    source.write_bytes(photo("black"))
    dashscope_edit_fake.fail_sha256.add(sha256(source.read_bytes()))
    result = cli_env.invoke(cli, ["edit", "run", str(source), "--prompt", "换成夜景"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: upstream refused the edit: 400 DataInspectionFailed: Output data may contain inappropriate content."]


def test_edit_run_refuses_a_retired_model_and_reports_arrears_in_one_line(cli_env, tmp_path,
                                                                         dashscope_edit_fake):
    source = tmp_path / "in.jpg"
    source.write_bytes(photo("black"))
    retired = cli_env.invoke(cli, ["edit", "run", str(source), "--prompt", "p", "--model", "qwen-vl-plus"])
    assert retired.exit_code == 1 and "not a known image edit model" in retired.output
    assert dashscope_edit_fake.submissions == 0
    dashscope_edit_fake.refuse_next = [(403, "Arrearage", "Access denied, please make sure your account is "
                                        "in good standing.")]
    stopped = cli_env.invoke(cli, ["edit", "run", str(source), "--prompt", "换成夜景"])
    assert stopped.exit_code == 1
    assert stopped.output.strip().splitlines() == [
        "Error: DashScope stopped the edit: Arrearage: qwen-image-2.0: Access denied, please make sure your "
        "account is in good standing. (see `xintu doctor`)"]


def test_worker_once_runs_the_queue_and_show_reports_it(cli_env, edit_app, monkeypatch):
    user, headers = make_bound_user(app=edit_app, balance=2)
    task = post_edit(edit_app.test_client(), headers, [photo("red"), photo("green")]).get_json()
    # SANDBOX on admits the test fake's http result URLs; --no-sandbox: use that fake, start none
    monkeypatch.setenv("XINTU_SANDBOX", "true")
    result = cli_env.invoke(cli, ["worker", "--once", "--id", "cli-worker", "--no-sandbox"])
    assert result.exit_code == 0, result.output
    assert "worker cli-worker stopped after" in result.output
    shown = cli_env.invoke(cli, ["edit", "show", task["task_id"], "--format", "json"])
    body = json.loads(shown.stdout)
    assert body["status"] == "succeeded" and body["credits"]["charged"] == 2
    listed = cli_env.invoke(cli, ["edit", "list", "--format", "json"])
    assert json.loads(listed.stdout)[0]["task_id"] == task["task_id"]
    assert ledger(edit_app, user) == [("edit_spend", -2, task["task_id"])]


def test_sweep_and_unknown_task(cli_env, edit_app, monkeypatch):
    user, headers = make_bound_user(app=edit_app, balance=1)
    task = post_edit(edit_app.test_client(), headers, [photo("red")]).get_json()
    monkeypatch.setenv("XINTU_EDIT_TASK_TIMEOUT", "0")
    result = cli_env.invoke(cli, ["edit", "sweep", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["finished"] == 1
    assert ledger(edit_app, user) == [("edit_refund", 1, task["task_id"]), ("edit_spend", -1, task["task_id"])]
    missing = cli_env.invoke(cli, ["edit", "show", "nope"])
    assert missing.exit_code == 1 and missing.output.strip() == "Error: 没有这个编辑任务"


def test_edit_run_rejects_a_non_image_in_one_line(cli_env, tmp_path):
    source = tmp_path / "notes.jpg"
    source.write_text("hello")
    result = cli_env.invoke(cli, ["edit", "run", str(source), "--prompt", "x"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("Error: ")




def test_worker_in_sandbox_mode_brings_its_own_dashscope(cli_env, edit_app, monkeypatch, dashscope_edit_fake):
    monkeypatch.setenv("XINTU_SANDBOX", "true")
    _, headers = make_bound_user(app=edit_app, balance=1)
    task = post_edit(edit_app.test_client(), headers, [photo("red")]).get_json()
    result = cli_env.invoke(cli, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "sandbox DashScope image edit on http://127.0.0.1:" in result.output
    shown = json.loads(cli_env.invoke(cli, ["edit", "show", task["task_id"], "--format", "json"]).stdout)
    assert shown["status"] == "succeeded" and dashscope_edit_fake.base_url not in shown["images"][0]["url"]
    assert dashscope_edit_fake.submissions == 0  # the test's fake was not used


def test_worker_process_runs_tasks_and_stops_cleanly_on_sigterm(edit_app, dashscope_edit_fake, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from xintu.models import EditTask

    env = {**os.environ, "XINTU_INSTANCE_PATH": edit_app.instance_path, "XINTU_SANDBOX": "false",
           "XINTU_SECRET_KEY": edit_app.config["SECRET_KEY"],
           "XINTU_EDIT_DASHSCOPE_API_KEY": dashscope_edit_fake.api_key,
           "XINTU_EDIT_DASHSCOPE_BASE_URL": dashscope_edit_fake.api_base, "XINTU_EDIT_POLL_INTERVAL": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "xintu_cli.main", "worker", "--idle-sleep", "0.1",
                             "--id", "proc-worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        _, headers = make_bound_user(app=edit_app, balance=2)
        task = post_edit(edit_app.test_client(), headers, [photo("red"), photo("blue")]).get_json()
        deadline = time.monotonic() + 30
        with edit_app.app_context():
            while time.monotonic() < deadline:
                if EditTask.get(EditTask.task_id == task["task_id"]).status == "succeeded":
                    break
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "worker proc-worker stopped after 1 steps" in err
    assert dashscope_edit_fake.submissions == 2
