"""The operator CLI: discoverable, lazy, one-line errors, shared output formats."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from xintu_cli.main import COMMANDS, LazyGroup, cli
from xintu_cli.output import render


def _all_commands(group, ctx_path=()):
    ctx = None
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield ctx_path + (name,)
        if hasattr(command, "list_commands"):
            yield from _all_commands(command, ctx_path + (name,))


def test_top_level_help_lists_installed_groups():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("serve", "db", "config"):
        assert name in result.output


def test_every_command_has_help():
    names = list(_all_commands(cli))
    assert len(names) >= 8
    for path in names:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_group_help_shows_an_example():
    for path in [("db",), ("config",)]:
        assert "Example" in CliRunner().invoke(cli, [*path, "--help"]).output


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from xintu_cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('onnxruntime', 'dashscope', 'wechatpy', 'cv2', 'numpy', 'peewee', 'flask')"
            " if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY []" in out


def test_bad_input_is_one_line_and_non_zero(tmp_path):
    env = {"XINTU_INSTANCE_PATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "xintu_cli.main", "config", "set", "inference.mode",
                             "fastest"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: inference.mode must be one of auto, llm, local"


def test_unreachable_database_is_one_line(tmp_path):
    env = {"XINTU_INSTANCE_PATH": str(tmp_path), "PATH": "/usr/bin:/bin",
           "XINTU_DATABASE_URL": "mysql://nobody:x@127.0.0.1:9/xintu"}
    result = subprocess.run([sys.executable, "-m", "xintu_cli.main", "db", "status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: database error:") and result.stderr.count("\n") == 1


def test_runtime_switch_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "migrate"]).exit_code == 0
    assert runner.invoke(cli, ["config", "set", "inference.mode", "local", "--by", "ops"]).exit_code == 0
    assert runner.invoke(cli, ["config", "get", "inference.mode"]).output.strip() == '"local"'
    listed = json.loads(runner.invoke(cli, ["config", "list", "--format", "json"]).output)
    assert {"key": "inference.mode", "value": "local"} in listed


def test_config_show_masks_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("XINTU_WECHAT_APP_SECRET", "super-secret-value")
    monkeypatch.setenv("XINTU_REPLICA_URL", "mysql://ro:pw123@10.0.0.6/xintu")
    output = CliRunner().invoke(cli, ["config", "show", "--format", "json"]).output
    data = json.loads(output)
    assert data["WECHAT_APP_SECRET"] == "********" and "super-secret-value" not in output
    assert data["REPLICA_URL"] == "mysql://***@10.0.0.6/xintu"


def test_config_show_names_the_wechatpay_verify_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path))
    data = json.loads(CliRunner().invoke(cli, ["config", "show", "--format", "json"]).output)
    assert data["WECHATPAY_VERIFY_MODE"] == "public_key"
    monkeypatch.setenv("XINTU_WECHATPAY_VERIFY_MODE", "both")
    data = json.loads(CliRunner().invoke(cli, ["config", "show", "--format", "json"]).output)
    assert data["WECHATPAY_VERIFY_MODE"] == "both"
    assert data["WECHATPAY_CERT_DIR"] == str(tmp_path / "wechatpay-certs")


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_output_formats(fmt):
    rows = [{"name": "小芯", "credits": 10}, {"name": "bob", "credits": None}]
    text = render(rows, fmt)
    if fmt == "json":
        assert json.loads(text) == rows
    elif fmt == "csv":
        assert text.splitlines() == ["name,credits", "小芯,10", "bob,"]
    else:
        lines = text.splitlines()
        assert lines[0].split() == ["name", "credits"] and lines[2].split() == ["小芯", "10"]
        # CJK characters are two columns wide: the credits column still starts at display column 6
        from xintu_cli.output import _width
        assert _width(lines[2][:lines[2].index("10")]) == lines[0].index("credits") == 6
        assert len(lines) == 4


def test_command_table_points_at_click_objects():
    group = LazyGroup()
    for name in group.list_commands(None):
        assert group.get_command(None, name) is not None, COMMANDS[name]


def test_unset_switch_shows_the_configured_value(tmp_path, monkeypatch):
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("XINTU_INFERENCE_MODE", "local")
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "migrate"]).exit_code == 0
    assert runner.invoke(cli, ["config", "get", "inference.mode"]).output.strip() == '"local"'


def test_every_invocation_builds_its_own_app_and_a_given_app_is_used(tmp_path, monkeypatch):
    from xintu.app import create_app
    from xintu.settings_store import set_setting
    from xintu_cli.context import get_app

    def mode():
        listed = json.loads(runner.invoke(cli, ["config", "list", "--format", "json"]).output)
        return {row["key"]: row["value"] for row in listed}.get("inference.mode")

    runner = CliRunner()
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path / "a"))
    assert runner.invoke(cli, ["config", "set", "inference.mode", "local", "--by", "ops"]).exit_code == 0
    assert mode() == "local"
    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path / "b"))   # the next invocation reads it afresh
    assert mode() == "auto"   # the configured default: nothing stored in b
    given = create_app({"INSTANCE_PATH": str(tmp_path / "c")})
    with given.app_context():
        from xintu import db, migrations

        migrations.migrate(db.primary.obj)
        set_setting("inference.mode", "llm", by="test")
    listed = json.loads(runner.invoke(cli, ["config", "list", "--format", "json"], obj=given).output)
    assert {row["key"]: row["value"] for row in listed}["inference.mode"] == "llm"
    assert get_app(schema=False) is not get_app(schema=False)   # outside click: a new app each call


def test_every_command_table_entry_imports_a_click_command():
    import importlib

    import click

    assert LazyGroup().list_commands(None) == sorted(COMMANDS)   # nothing hidden
    for name, (target, summary) in COMMANDS.items():
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)   # a typo fails here, by name
        assert isinstance(command, click.Command), target
        assert summary.strip(), name


@pytest.mark.parametrize("target", ["xintu_cli.stats:statz", "xintu_cli.no_such_area:thing",
                                    "xintu_cli.stats", "xintu_cli.output:render"])
def test_a_broken_command_entry_fails_loudly(monkeypatch, target):
    monkeypatch.setitem(COMMANDS, "broken", (target, "A typo in the table."))
    assert "broken" in CliRunner().invoke(cli, ["--help"]).output      # listed, not hidden
    result = CliRunner().invoke(cli, ["broken"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: command 'broken'") and target in result.output
    assert len(result.output.strip().splitlines()) == 1


def _command_paths(command, path):
    import click

    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path.split()[-1])
        for name in command.list_commands(ctx):
            yield from _command_paths(command.get_command(ctx, name), f"{path} {name}")


def test_every_command_is_documented():
    """Each full command path (`xintu orders refund`) is named in README.md or docs/*.md."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text(encoding="utf-8") for p in [root / "README.md", *sorted(root.glob("docs/*.md"))])
    paths = list(_command_paths(cli, "xintu"))
    assert len(paths) > len(COMMANDS)
    missing = [p for p in paths if not re.search(r"(?<![\w-])" + re.escape(p) + r"(?![\w-])", text)]
    assert missing == [], "add a line saying what each does to the right docs/*.md: " + ", ".join(missing)
