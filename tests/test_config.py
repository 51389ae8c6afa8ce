"""Configuration: defaults < instance file < XINTU_* env < explicit; production refuses without secrets."""

import subprocess
import sys

import pytest

from xintu.config import PRODUCTION_REQUIRED, VERIFY_MODES, load_config
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
    assert all(key in info.value.message for key in PRODUCTION_REQUIRED + VERIFY_MODES["public_key"])


def _production_env(**extra):
    env = {f"XINTU_{key}": f"value-{key.lower()}" for key in PRODUCTION_REQUIRED + VERIFY_MODES["public_key"]}
    env.update(XINTU_ENV="production", XINTU_SECRET_KEY="s" * 16 + "0123456789abcdef0123",
               XINTU_DATABASE_URL="mysql://app:pw@db1:3306/xintu", XINTU_WECHATPAY_APIV3_KEY="k" * 32,
               XINTU_PUBLIC_BASE_URL="https://api.example.cn", XINTU_WECHAT_TOKEN="callbackToken1",
               XINTU_WECHAT_AES_KEY="A" * 43,
               XINTU_WECHATPAY_NOTIFY_URL="https://wx.example.cn/wechat/pay/notify",
               XINTU_WECHAT_OAUTH_REDIRECT_URL="https://wx.example.cn/wechat/oauth")
    env.update(extra)
    return env


def test_production_rejects_weak_secret_key_and_sqlite(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(instance=str(tmp_path), environ=_production_env(XINTU_SECRET_KEY="short"))
    with pytest.raises(ConfigError, match="SQLite"):
        load_config(instance=str(tmp_path), environ=_production_env(XINTU_DATABASE_URL="sqlite:///x"))


@pytest.mark.parametrize("change, message", [
    ({"XINTU_PUBLIC_BASE_URL": ""}, "production needs PUBLIC_BASE_URL"),
    ({"XINTU_PUBLIC_BASE_URL": "http://api.example.cn"}, "PUBLIC_BASE_URL must be an https:// URL"),
    ({"XINTU_WECHATPAY_NOTIFY_URL": "http://wx.example.cn/n"}, "WECHATPAY_NOTIFY_URL must be an https://"),
    ({"XINTU_WECHATPAY_APIV3_KEY": "short"}, "WECHATPAY_APIV3_KEY must be exactly 32 bytes"),
    ({"XINTU_INTERNAL_SHARED_SECRET": "abc"}, "INTERNAL_SHARED_SECRET must be at least 24"),
    ({"XINTU_WECHAT_TOKEN": "with spaces"}, "WECHAT_TOKEN must be 3–32 letters or digits"),
    ({"XINTU_WECHAT_AES_KEY": "x" * 42 + "!"}, "WECHAT_AES_KEY is not a valid EncodingAESKey"),
])
def test_production_refuses_wrong_addresses_and_short_secrets(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(instance=str(tmp_path), environ=_production_env(**change))


def test_development_falls_back_to_the_local_address(tmp_path):
    assert load_config(instance=str(tmp_path), environ={})["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000"


@pytest.mark.parametrize("key, name, message", [
    ("CLASSIFY_LLM_MODEL", "qwen-vl-plus", "retired by Model Studio .* use qwen3-vl-plus"),
    ("CLASSIFY_LLM_MODEL", "gpt-4o", "not a known classification model"),
    ("EDIT_MODEL", "qwen3-vl-plus", "not a known image edit model"),
])
def test_retired_or_unknown_model_names_fail_at_load(tmp_path, key, name, message):
    with pytest.raises(ConfigError, match=f"{key}: .*{message}"):
        load_config(instance=str(tmp_path), environ={f"XINTU_{key}": name})


def test_models_newer_than_the_list_can_be_declared(tmp_path):
    config = load_config(instance=str(tmp_path), environ={"XINTU_CLASSIFY_LLM_MODEL": "qwen4-vl-plus",
                                                          "XINTU_DASHSCOPE_EXTRA_MODELS": "qwen4-vl-plus"})
    assert config["CLASSIFY_LLM_MODEL"] == "qwen4-vl-plus"
    dated = load_config(instance=str(tmp_path),
                        environ={"XINTU_CLASSIFY_LLM_MODEL": "qwen3-vl-flash-2025-10-15"})
    assert dated["CLASSIFY_LLM_MODEL"] == "qwen3-vl-flash-2025-10-15"


def test_edit_call_timeout_must_stay_below_the_lease(tmp_path):
    with pytest.raises(ConfigError, match="EDIT_CALL_TIMEOUT must be below EDIT_LEASE_SECONDS"):
        load_config(instance=str(tmp_path), environ={"XINTU_EDIT_CALL_TIMEOUT": "150"})


def test_production_with_secrets_forces_sandbox_off_and_internal_header_on(tmp_path):
    config = load_config(instance=str(tmp_path), environ=_production_env())
    assert config["SANDBOX"] is False and config["REQUIRE_INTERNAL_HEADER"] is True


def test_verify_mode_is_one_of_three_everywhere(tmp_path):
    with pytest.raises(ConfigError, match="WECHATPAY_VERIFY_MODE must be one of public_key, certificate, both"):
        load_config(instance=str(tmp_path), environ={"XINTU_WECHATPAY_VERIFY_MODE": "auto"})
    config = load_config(instance=str(tmp_path), environ={})
    assert config["WECHATPAY_VERIFY_MODE"] == "public_key"
    assert config["WECHATPAY_CERT_DIR"] == str(tmp_path / "wechatpay-certs")


def test_production_needs_what_the_verify_mode_uses(tmp_path):
    no_key = {"XINTU_WECHATPAY_PUBLIC_KEY": "", "XINTU_WECHATPAY_PUBLIC_KEY_ID": ""}
    # certificate mode: no public key needed, the APIv3 key (required anyway) and a writable cert dir
    config = load_config(instance=str(tmp_path), environ=_production_env(XINTU_WECHATPAY_VERIFY_MODE="certificate",
                                                                         **no_key))
    assert config["WECHATPAY_VERIFY_MODE"] == "certificate"
    for mode in ("public_key", "both"):
        with pytest.raises(ConfigError, match="WECHATPAY_PUBLIC_KEY, WECHATPAY_PUBLIC_KEY_ID"):
            load_config(instance=str(tmp_path), environ=_production_env(XINTU_WECHATPAY_VERIFY_MODE=mode, **no_key))
    (tmp_path / "a-file").write_text("x")
    for mode in ("certificate", "both"):
        with pytest.raises(ConfigError, match="WECHATPAY_CERT_DIR .*is not a folder"):
            load_config(instance=str(tmp_path), environ=_production_env(
                XINTU_WECHATPAY_VERIFY_MODE=mode, XINTU_WECHATPAY_CERT_DIR=str(tmp_path / "a-file" / "certs")))
    # public-key mode never touches the cert dir
    config = load_config(instance=str(tmp_path), environ=_production_env(
        XINTU_WECHATPAY_CERT_DIR=str(tmp_path / "a-file" / "certs")))
    assert config["WECHATPAY_VERIFY_MODE"] == "public_key"


def test_production_cli_start_fails_with_one_readable_line(tmp_path):
    env = {"XINTU_ENV": "production", "XINTU_INSTANCE_PATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "xintu_cli.main", "db", "status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: production needs these settings")
    assert "Traceback" not in result.stderr
