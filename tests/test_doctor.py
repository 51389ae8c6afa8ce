"""`xintu doctor` against the sandbox as `xintu serve` starts it, on SQLite and on the real MariaDB pair."""
import json

import pytest
from click.testing import CliRunner

from xintu.ops import doctor


@pytest.fixture
def sandboxed(tmp_path):
    """Overrides from the embedded sandbox (WeChat, WeChat Pay, the fake Qwen-VL) and the edit fake."""
    from xintu.sandbox import dashscope_edit, start_embedded, wechat

    overrides = start_embedded({"PUBLIC_BASE_URL": "http://127.0.0.1:5998", "SANDBOX_LLM": True,
                                "INSTANCE_PATH": str(tmp_path / "instance")})
    running = wechat._running.pop()
    edit_fake, edit = dashscope_edit.start_for_worker({})
    yield {**overrides, **edit, "PUBLIC_BASE_URL": "http://127.0.0.1:5998"}, running, edit_fake
    running.stop()
    edit_fake.stop()


def _invoke(app, *args):
    from xintu_cli.main import cli

    return CliRunner().invoke(cli, ["doctor", *args], obj=app)


def _by_name(checks):
    return {c["name"] if isinstance(c, dict) else c.name: c for c in checks}


def test_everything_passes_against_the_running_sandbox(app, sandboxed):
    overrides, running, _ = sandboxed
    app.config.update(overrides)
    result = _invoke(app, "--format", "json")
    assert result.exit_code == 0, result.output
    checks = _by_name(json.loads(result.output))
    assert not [c for c in checks.values() if c["level"] == "fail"]
    for name in ("database.primary", "database.migrations", "wechat.token", "wechat.callback_token",
                 "wechat.aes", "wechatpay.keys", "wechatpay.mode", "wechatpay.public_key",
                 "wechatpay.certificates", "wechatpay.query",
                 "dashscope.classify.model", "dashscope.classify.key", "dashscope.edit.model",
                 "dashscope.edit.key", "secrets", "sdk.versions"):
        assert checks[name]["level"] == "ok", checks[name]
    assert "verification mode both" in checks["wechatpay.mode"]["message"]   # as `xintu serve` runs it
    assert running.pay.certificate["serial_no"] in checks["wechatpay.certificates"]["message"]
    table = _invoke(app)
    assert table.exit_code == 0
    assert table.output.splitlines()[0].split() == ["level", "name", "message", "advice"]


@pytest.mark.mariadb
def test_primary_and_replica_privileges_read_only_and_lag(mysql_app, sandboxed):
    mysql_app.config.update(sandboxed[0])
    with mysql_app.app_context():
        checks = _by_name(doctor.run(mysql_app.config))
    names = ("database.primary", "database.privileges", "database.replica", "database.replica_read_only",
             "database.replica_privileges")
    assert {n: checks[n].level for n in names} == dict.fromkeys(names, "ok")
    assert "lag 0 s" in checks["database.replica"].message


def test_each_wrong_setting_fails_with_advice_and_exit_1(app, sandboxed):
    overrides, running, edit_fake = sandboxed
    from xintu.sandbox.keys import rsa_keypair
    app.config.update(overrides, WECHAT_APP_SECRET="wrong", DASHSCOPE_API_KEY="sk-wrong-key-000000",
                      CLASSIFY_LLM_MODEL="qwen-vl-plus", WECHATPAY_PRIVATE_KEY=rsa_keypair()[0],
                      EDIT_MODEL="qwen-image-edit", WECHAT_AES_KEY="x" * 20, WECHAT_TOKEN="has spaces")
    result = _invoke(app, "--format", "json")
    assert result.exit_code == 1
    checks = _by_name(json.loads(result.output))
    assert checks["wechat.token"]["level"] == "fail" and "40125" in checks["wechat.token"]["message"]
    assert "AppSecret" in checks["wechat.token"]["advice"]
    assert checks["dashscope.classify.model"]["level"] == "fail"
    assert "use qwen3-vl-plus" in checks["dashscope.classify.model"]["message"]
    assert checks["dashscope.edit.model"]["level"] == "warn"  # legacy
    assert checks["dashscope.edit.key"]["level"] == "ok"      # EDIT_DASHSCOPE_API_KEY still right
    assert checks["wechatpay.query"]["level"] == "fail" and "401" in checks["wechatpay.query"]["message"]
    assert checks["wechat.aes"]["level"] == "fail" and checks["wechat.callback_token"]["level"] == "fail"
    app.config.update(CLASSIFY_LLM_MODEL="qwen3-vl-plus")
    with app.app_context():
        key = _by_name(doctor.run(app.config))["dashscope.classify.key"]
    assert key.level == "fail" and "401" in key.message


def test_certificate_mode_without_a_certificate_fails(app, sandboxed, tmp_path):
    overrides, running, _ = sandboxed
    app.config.update(overrides, **running.verify_config("certificate", str(tmp_path / "certs")),
                      WECHATPAY_APIV3_KEY="w" * 32)   # the download cannot be decrypted: no certificate
    with app.app_context():
        checks = _by_name(doctor.run(app.config))
    assert checks["wechatpay.keys"].level == "fail"
    assert "平台证书" in checks["wechatpay.keys"].message and "APIv3" in checks["wechatpay.keys"].advice
    app.config.update(WECHATPAY_APIV3_KEY=overrides["WECHATPAY_APIV3_KEY"])
    with app.app_context():
        checks = _by_name(doctor.run(app.config))
    assert checks["wechatpay.certificates"].level == "ok" and "wechatpay.public_key" not in checks
    assert "verification mode certificate" in checks["wechatpay.mode"].message


def test_production_fails_what_would_refuse_the_start(app, sandboxed):
    config = {**app.config, **sandboxed[0], "ENV": "production", "INTERNAL_SHARED_SECRET": "x" * 30,
              "WECHATPAY_NOTIFY_URL": "http://wx.example.cn/wechat/pay/notify",
              "WECHAT_OAUTH_REDIRECT_URL": "https://wx.example.cn/wechat/oauth",
              "DATABASE_URL": "sqlite:///x"}
    with app.app_context():
        checks = _by_name(doctor.run(config))
    assert checks["addresses.public_base_url"].level == "fail"
    assert checks["addresses.wechatpay_notify_url"].level == "fail"
    assert checks["database.privileges"].level == "fail"  # SQLite
    from xintu.config import check_production
    from xintu.errors import ConfigError
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL must be an https"):
        check_production(config)


def test_rendered_units_run_in_production():
    from pathlib import Path
    golden = Path(__file__).parent / "golden/conf/systemd"
    for unit in ("xintu-gunicorn.service", "xintu-worker@.service", "xintu-daily-report.service"):
        assert "Environment=XINTU_ENV=production" in (golden / unit).read_text(encoding="utf-8")
