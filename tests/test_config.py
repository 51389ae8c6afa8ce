"""Configuration: defaults < instance file < XINTU_* env < explicit; production refuses without secrets."""

import subprocess
import sys

import pytest

from xintu.config import PRODUCTION_REQUIRED, load_config
from xintu.errors import ConfigError


def test_instance_file_overrides_defaults_and_env_overrides_file(tmp_path):
    (tmp_path / "xintu.toml").write_text('log_level = "DEBUG"\nreplica_max_lag = 7\n'
                                         '[wechat]\napp_id = "wx-from-file"\n')
    config = load_config(instance=str(tmp_path), environ={"XINTU_REPLICA_MAX_LAG": "9"})
    assert config["LOG_LEVEL"] == "DEBUG"
    assert config["WECHAT_APP_ID"] == "wx-from-file"
    assert config["REPLICA_MAX_LAG"] == 9


def test_env_values_take_the_type_of_the_default(tmp_path):
    config = load_config(instance=str(tmp_path), environ={
        "XINTU_SANDBOX": "off", "XINTU_INTERNAL_ALLOWED_ADDRS": "10.0.0.2, 10.0.0.3",
        "XINTU_REPLICA_CHECK_INTERVAL": "0.5"})
    assert config["SANDBOX"] is False
    assert config["INTERNAL_ALLOWED_ADDRS"] == ["10.0.0.2", "10.0.0.3"]
    assert config["REPLICA_CHECK_INTERVAL"] == 0.5


def test_unreadable_env_value_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="XINTU_REPLICA_MAX_LAG"):
        load_config(instance=str(tmp_path), environ={"XINTU_REPLICA_MAX_LAG": "soon"})


def test_development_default_is_sqlite_in_the_instance_folder_with_a_persistent_secret(tmp_path):
    first = load_config(instance=str(tmp_path), environ={})
    second = load_config(instance=str(tmp_path), environ={})
    assert first["DATABASE_URL"] == f"sqlite:///{tmp_path / 'xintu.sqlite3'}"
    assert len(first["SECRET_KEY"]) >= 32 and first["SECRET_KEY"] == second["SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_without_secrets_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(instance=str(tmp_path), environ={"XINTU_ENV": "production"})
    assert all(key in info.value.message for key in PRODUCTION_REQUIRED)


def _production_env(**extra):
    env = {f"XINTU_{key}": f"value-{key.lower()}" for key in PRODUCTION_REQUIRED}
    env.update(XINTU_ENV="production", XINTU_SECRET_KEY="s" * 16 + "0123456789abcdef0123",
               XINTU_DATABASE_URL="mysql://app:pw@db1:3306/xintu")
    env.update(extra)
    return env


def test_production_rejects_weak_secret_key_and_sqlite(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(instance=str(tmp_path), environ=_production_env(XINTU_SECRET_KEY="short"))
    with pytest.raises(ConfigError, match="SQLite"):
        load_config(instance=str(tmp_path), environ=_production_env(XINTU_DATABASE_URL="sqlite:///x"))


def test_production_with_secrets_forces_sandbox_off_and_internal_header_on(tmp_path):
    config = load_config(instance=str(tmp_path), environ=_production_env())
    assert config["SANDBOX"] is False and config["REQUIRE_INTERNAL_HEADER"] is True


def test_production_cli_start_fails_with_one_readable_line(tmp_path):
    env = {"XINTU_ENV": "production", "XINTU_INSTANCE_PATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "xintu_cli.main", "db", "status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: production needs these settings")
    assert "Traceback" not in result.stderr
