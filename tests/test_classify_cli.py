"""`xintu classify PATH...`: folders, formats, method switch, summary, one-line errors."""
import json
import shutil

from click.testing import CliRunner

from tests.classify_images import package_photo, phone_screenshot
from xintu_cli.main import cli


def _env(tmp_path, model_dir, **extra):
    return {"XINTU_INSTANCE_PATH": str(tmp_path / "instance"), "XINTU_CLASSIFY_MODEL_DIR": model_dir,
            "XINTU_DASHSCOPE_API_KEY": "", **extra}


def _album(tmp_path):
    album = tmp_path / "album" / "2024"
    album.mkdir(parents=True)
    (album / "cat.png").write_bytes(package_photo("skimage:chelsea.png"))
    (album / "coffee.png").write_bytes(package_photo("skimage:coffee.png"))
    (album.parent / "screen.png").write_bytes(phone_screenshot())
    (album.parent / "notes.txt").write_text("not a photo, skipped in folders")
    return album.parent


def test_classify_folder_recursively_as_json(tmp_path, classify_model_dir, monkeypatch):
    result = CliRunner().invoke(cli, ["classify", str(_album(tmp_path)), "--method", "local", "--format", "json"],
                                env=_env(tmp_path, classify_model_dir))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    got = {r["file"].rsplit("/", 1)[1]: (r["category"], r["method"]) for r in rows}
    assert got == {"cat.png": ("pets", "local"), "coffee.png": ("foods", "local"),
                   "screen.png": ("screenshot", "local")}
    summary = json.loads(result.stderr)
    assert {r["category"]: r["count"] for r in summary} == {"pets": 1, "foods": 1, "screenshot": 1}


def test_classify_table_with_a_bad_file_named_explicitly(tmp_path, classify_model_dir, monkeypatch):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(package_photo("skimage:rocket.jpg")[:500])
    good = tmp_path / "cat.png"
    shutil.copy(_album(tmp_path) / "2024" / "cat.png", good)
    result = CliRunner().invoke(cli, ["classify", str(good), str(bad), "--silent"],
                                env=_env(tmp_path, classify_model_dir))
    assert result.exit_code == 0, result.output
    assert "pets" in result.stdout and "image_corrupt" in result.stdout
    assert "count" in result.stdout  # the summary table


def test_only_bad_files_is_a_failure_without_traceback(tmp_path, classify_model_dir, monkeypatch):
    bad = tmp_path / "a.png"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(cli, ["classify", str(bad)], env=_env(tmp_path, classify_model_dir))
    assert result.exit_code == 1 and "Traceback" not in result.output
    missing = CliRunner().invoke(cli, ["classify", str(tmp_path / "nope.jpg")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
