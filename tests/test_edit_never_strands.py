"""Image edit never strands credits: no upstream → refused before any reservation; a worker or a sweep
that cannot run a task (no key, a broken task row, upstream trouble) settles and refunds it and goes on."""
import json
import time

from click.testing import CliRunner

from tests.edit_fixtures import photo
from tests.factories import make_bound_user
from tests.test_edit_service import balance, ledger, post_edit
from xintu.edit.worker import EditWorker
from xintu.models import CreditLedger, EditImage, EditTask
from xintu_cli.main import cli


def _no_key(config):
    return {**config, "EDIT_DASHSCOPE_API_KEY": None, "DASHSCOPE_API_KEY": None, "SANDBOX": False}


def test_submission_without_an_edit_upstream_is_503_and_reserves_nothing(app):
    user, headers = make_bound_user(app=app, balance=3)
    r = post_edit(app.test_client(), headers, [photo("red"), photo("green")])
    assert r.status_code == 503
    assert r.get_json()["error"]["code"] == "edit_not_configured" and r.get_json()["error"]["message"]
    with app.app_context():
        assert EditTask.select().count() == 0 and EditImage.select().count() == 0
        assert not CreditLedger.select().where(CreditLedger.reason.startswith("edit")).exists()
    assert balance(app, user) == 3


def test_sandbox_mode_counts_as_configured_outside_production(app):
    # `xintu worker` brings its own DashScope fake in sandbox mode, so the web process accepts the task.
    app.config.update(SANDBOX=True)
    user, headers = make_bound_user(app=app, balance=1)
    assert post_edit(app.test_client(), headers, [photo("red")]).status_code == 202
    assert balance(app, user) == 0


def test_worker_without_a_key_refunds_the_task_and_keeps_running(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=3)
    client = edit_app.test_client()
    first = post_edit(client, headers, [photo("red"), photo("green")]).get_json()
    second = post_edit(client, headers, [photo("blue")]).get_json()
    assert balance(edit_app, user) == 0
    worker = EditWorker(_no_key(edit_app.config), worker_id="keyless")
    with edit_app.app_context():
        assert worker.run(until_idle=True) == 2   # both tasks stepped, the worker is still there
        rows = {t.task_id: t for t in EditTask.select()}
    for task, n in ((first, 2), (second, 1)):
        row = rows[task["task_id"]]
        assert row.status == "failed" and row.credits_refunded == n and row.claimed_by is None
        assert all("edit_not_configured" in i["error"] or "未配置" in i["error"] for i in row.images)
    assert balance(edit_app, user) == 3
    assert ledger(edit_app, user) == sorted([
        ("edit_refund", 2, first["task_id"]), ("edit_spend", -2, first["task_id"]),
        ("edit_refund", 1, second["task_id"]), ("edit_spend", -1, second["task_id"])])
    assert dashscope_edit_fake.submissions == 0


def test_worker_command_without_a_key_exits_cleanly_after_refunding(edit_app, monkeypatch):
    user, headers = make_bound_user(app=edit_app, balance=2)
    task = post_edit(edit_app.test_client(), headers, [photo("red"), photo("green")]).get_json()
    monkeypatch.setenv("XINTU_INSTANCE_PATH", edit_app.instance_path)
    monkeypatch.setenv("XINTU_SECRET_KEY", edit_app.config["SECRET_KEY"])
    monkeypatch.setenv("XINTU_SANDBOX", "false")
    monkeypatch.delenv("XINTU_EDIT_DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("XINTU_DASHSCOPE_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["worker", "--once", "--id", "keyless"])
    assert result.exit_code == 0, result.output
    assert "worker keyless stopped after 1 steps" in result.output
    shown = json.loads(CliRunner().invoke(cli, ["edit", "show", task["task_id"], "--format", "json"]).stdout)
    assert shown["status"] == "failed" and shown["credits"] == {"reserved": 2, "charged": 0, "refunded": 2}
    assert balance(edit_app, user) == 2


def _break(app, task_id):
    """A task row whose images no longer have the shape a step expects (as after a bad manual edit)."""
    with app.app_context():
        row = EditTask.get(EditTask.task_id == task_id)
        images = [{k: v for k, v in i.items() if k != "position"} for i in row.images]
        EditTask.update(images=images).where(EditTask.id == row.id).execute()


def test_a_step_that_raises_settles_and_refunds_only_that_task(edit_app, dashscope_edit_fake):
    user, headers = make_bound_user(app=edit_app, balance=3)
    client = edit_app.test_client()
    broken = post_edit(client, headers, [photo("red"), photo("green")]).get_json()
    good = post_edit(client, headers, [photo("blue")]).get_json()
    _break(edit_app, broken["task_id"])
    with edit_app.app_context():
        EditWorker(edit_app.config).run(until_idle=True)
        rows = {t.task_id: t for t in EditTask.select()}
    assert rows[broken["task_id"]].status == "failed" and rows[broken["task_id"]].credits_refunded == 2
    assert all(i["error"] == "worker_error" for i in rows[broken["task_id"]].images)
    assert rows[good["task_id"]].status == "succeeded" and rows[good["task_id"]].credits_charged == 1
    assert balance(edit_app, user) == 2


def test_sweep_refunds_overdue_tasks_whatever_stops_them(edit_app, dashscope_edit_fake):
    edit_app.config.update(EDIT_MODEL="wanx2.1-imageedit")
    dashscope_edit_fake.latency = 60            # upstream never finishes in time
    user, headers = make_bound_user(app=edit_app, balance=4)
    client = edit_app.test_client()
    pending = post_edit(client, headers, [photo("red"), photo("green")]).get_json()
    with edit_app.app_context():
        EditWorker(edit_app.config, worker_id="gone").run_once()   # submitted, then the host died
    broken = post_edit(client, headers, [photo("blue")]).get_json()
    queued = post_edit(client, headers, [photo("black")]).get_json()
    _break(edit_app, broken["task_id"])
    config = {**_no_key(edit_app.config), "EDIT_TASK_TIMEOUT": 0, "EDIT_LEASE_SECONDS": 0}
    time.sleep(1.1)
    with edit_app.app_context():
        result = EditWorker(config).sweep(expire_cache=False)
        rows = {t.task_id: t for t in EditTask.select()}
    assert result == {"finished": 3}
    assert {rows[t["task_id"]].status for t in (pending, broken, queued)} == {"failed"}
    assert [rows[t["task_id"]].credits_refunded for t in (pending, broken, queued)] == [2, 1, 1]
    assert balance(edit_app, user) == 4
    with edit_app.app_context():
        assert EditImage.select().where(EditImage.kind == "upload").count() == 0
