"""Deployment settings, the config renderers (golden files) and the real-binary checks of their output."""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path

import pytest

from xintu.errors import ConfigError
from xintu.ops import check, render
from xintu.ops.loopback import loopback_settings
from xintu.ops.settings import load_settings, validate_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "xintu/conf/deploy.example.toml"
GOLDEN = Path(__file__).parent / "golden/conf"
GOLDEN_SECRET = "golden-shared-secret-0123456789"
TEST_APP = "tests.ops_wsgi:app"


def example_raw() -> dict:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def test_example_settings_render_exactly_the_golden_files():
    files = render.render_all(load_settings(EXAMPLE), GOLDEN_SECRET)
    if os.environ.get("XINTU_UPDATE_GOLDEN"):
        render.write_tree(files, GOLDEN)
    on_disk = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()}
    assert on_disk == set(files)
    for rel, text in files.items():
        assert (GOLDEN / rel).read_text(encoding="utf-8") == text, f"{rel} differs from its golden file"


def test_rendering_is_pure():
    settings = load_settings(EXAMPLE)
    again = render.render_all(copy.deepcopy(settings), GOLDEN_SECRET)
    assert render.render_all(settings, GOLDEN_SECRET) == again


def test_defaults_are_derived_from_the_llm_timeout():
    settings = load_settings(EXAMPLE)
    assert settings["gunicorn"]["timeout"] == settings["app"]["llm_timeout"] + 30
    assert "timeout = 90" in render.render_gunicorn(settings)
    assert "proxy_read_timeout 100s;" in render.render_nginx(settings)
    assert settings["db"]["primary"]["bind"] == settings["db"]["primary"]["host"]


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: raw["app"].update(domian="typo.example"), "app.domian: Unknown field"),
    (lambda raw: raw["gunicorn"].update(timeout=30), "gunicorn.timeout: must exceed app.llm_timeout"),
    (lambda raw: raw["db"]["replica"].update(server_id=1), "db.replica.server_id: must differ"),
    (lambda raw: raw["web"].update(wechat_vhost="shop"), "web.wechat_vhost: no vhost named 'shop'"),
    (lambda raw: raw["web"]["vhosts"]["admin"].update(host="www.xintu.example.com"), "share a host name"),
    (lambda raw: raw["app"].update(body_limit_mb=10), "app.body_limit_mb"),
    (lambda raw: raw["paths"].update(logs="var/log"), "paths.logs: must be an absolute path"),
    (lambda raw: raw["web"].update(wechat_paths={"callback": "no-slash"}), "web.wechat_paths.callback"),
    (lambda raw: raw["web"].update(wechat_paths={"calback": "/x"}),
     "web.wechat_paths.calback: Unknown field"),
    (lambda raw: raw["web"].update(proxy_paths=["/wechat/callback"]), "web.proxy_paths: Unknown field"),
    (lambda raw: raw["web"].update(https_port=80), "web.https_port: must differ"),
    (lambda raw: raw.pop("db"), "db: Missing data"),
])
def test_invalid_settings_are_refused_with_the_field_named(mutate, message):
    raw = example_raw()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        validate_settings(raw, "deploy.toml")
    assert err.value.code == "invalid_settings"
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_broken_toml_is_one_readable_error(tmp_path):
    bad = tmp_path / "deploy.toml"
    bad.write_text("[app\ndomain = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="no such settings file"):
        load_settings(tmp_path / "missing.toml")


def test_web_tier_proxies_exactly_the_wechat_paths_and_holds_no_db_credentials():
    settings = load_settings(EXAMPLE)
    text = render.render_lighttpd(settings, GOLDEN_SECRET)
    proxied = re.findall(r'\$HTTP\["url"\] =~ "\^\((.*)\)\$"', text)
    assert proxied == [r"/wechat/callback|/wechat/oauth|/wechat/pay/notify"]
    assert text.count("proxy.server") == 1 and "map-urlpath" not in text     # defaults: routes as they are
    assert f'setenv.set-request-header = ( "X-Xintu-Internal" => "{GOLDEN_SECRET}" )' in text
    for needle in ("mysql", "3306", settings["db"]["primary"]["host"], "password"):
        assert needle not in text.lower()


def test_secret_with_a_quote_cannot_break_out_of_the_lighttpd_string():
    with pytest.raises(ValueError):
        render.render_lighttpd(load_settings(EXAMPLE), 'abc" ) server.port = 1 #')


# --- the real binaries ---------------------------------------------------------------------------

@pytest.fixture
def rendered(tmp_path):
    settings = loopback_settings(tmp_path / "deploy")
    out = tmp_path / "conf"
    render.write_tree(render.render_all(settings, GOLDEN_SECRET), out)
    return settings, out


def test_rendered_configs_pass_nginx_lighttpd_gunicorn_mariadb_and_systemd(rendered):
    _, out = rendered
    results = check.check_tree(out, app=TEST_APP, app_env={"PYTHONPATH": str(ROOT)})
    tools = {r.tool: r for r in results}
    assert set(tools) == {"nginx -t", "lighttpd -tt", "gunicorn --check-config",
                          "mariadbd --help --verbose", "systemd-analyze verify"}
    assert all(r.ok for r in results), [r.row() for r in results if not r.ok]
    assert "test is successful" in tools["nginx -t"].output
    assert (out / "lighttpd/lighttpd.conf").stat().st_mode & 0o777 == 0o640


def test_gunicorn_config_loads_the_real_app(rendered, tmp_path):
    _, out = rendered
    env = {"XINTU_INSTANCE_PATH": str(tmp_path / "instance"), "XINTU_SANDBOX": "false"}
    result = check.check_gunicorn(out / "gunicorn/gunicorn.conf.py", "xintu:create_app()", env)
    assert result.ok, result.output


def test_lighttpd_check_fails_when_a_module_is_missing(rendered):
    _, out = rendered
    conf = out / "lighttpd/lighttpd.conf"
    conf.write_text(conf.read_text().replace('    "mod_setenv",\n', ""))
    result = check.check_lighttpd(conf)
    assert not result.ok
    assert "unknown config-key: setenv" in result.output


def test_nginx_check_fails_on_a_missing_certificate(rendered):
    settings, out = rendered
    Path(settings["paths"]["tls_key"]).unlink()
    result = check.check_nginx(out / "nginx/nginx.conf")
    assert not result.ok
    assert "[emerg]" in result.output


def test_mariadb_check_fails_on_an_unknown_variable(rendered):
    _, out = rendered
    cnf = out / "mariadb/replica.cnf"
    cnf.write_text(cnf.read_text() + "read_onyl = ON\n")
    result = check.check_mariadb(cnf)
    assert not result.ok
    assert "read_onyl" in result.output


def test_gunicorn_check_fails_when_the_app_cannot_be_imported(rendered):
    _, out = rendered
    result = check.check_gunicorn(out / "gunicorn/gunicorn.conf.py", "tests.no_such_module:app",
                                  {"PYTHONPATH": str(ROOT)})
    assert not result.ok
    assert "no_such_module" in result.output


def test_systemd_check_fails_on_an_unknown_key(rendered):
    _, out = rendered
    unit = out / "systemd/xintu-gunicorn.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=on-failure\nRestartt=always"))
    result = check.check_systemd([unit])
    assert not result.ok
    assert "Restartt" in result.output


def test_extra_proxy_paths_go_through_the_web_tier_without_being_closed_on_the_api_host():
    raw = example_raw()
    raw["web"]["extra_proxy_paths"] = ["/healthz"]
    settings = validate_settings(raw)
    assert "|/wechat/pay/notify|/healthz)$" in render.render_lighttpd(settings, GOLDEN_SECRET)
    nginx = render.render_nginx(settings)
    assert "location = /wechat/pay/notify { return 404; }" in nginx and "location = /healthz" not in nginx
    raw["web"]["extra_proxy_paths"] = ["/wechat/oauth"]
    with pytest.raises(ConfigError, match="web.wechat_paths: the WeChat paths and extra_proxy_paths"):
        validate_settings(raw)


def test_kept_wechat_paths_are_mapped_onto_the_app_routes_and_the_api_host_closes_the_routes():
    raw = example_raw()
    raw["web"]["wechat_paths"] = {"callback": "/api/v1/auth/wechat/verify",
                                  "pay_notify": "/api/v1/payment/notify"}
    settings = validate_settings(raw)
    text = render.render_lighttpd(settings, GOLDEN_SECRET)
    assert r'"^(/api/v1/auth/wechat/verify|/wechat/oauth|/api/v1/payment/notify)$"' in text
    assert '"/api/v1/auth/wechat/verify" => "/wechat/callback",' in text
    assert '"/api/v1/payment/notify" => "/wechat/pay/notify",' in text
    nginx = render.render_nginx(settings)
    assert "location = /wechat/callback { return 404; }" in nginx
    gunicorn = render.render_gunicorn(settings)
    assert '"XINTU_WECHATPAY_NOTIFY_URL=https://www.xintu.example.com/api/v1/payment/notify"' in gunicorn
    assert '"XINTU_WECHAT_OAUTH_REDIRECT_URL=https://www.xintu.example.com/wechat/oauth"' in gunicorn


def test_web_tier_tls_policy_matches_nginx_and_plain_http_redirects():
    settings = load_settings(EXAMPLE)
    text, nginx = render.render_lighttpd(settings, GOLDEN_SECRET), render.render_nginx(settings)
    assert f'"CipherString" => "{render.TLS_CIPHERS}"' in text
    assert f"ssl_ciphers {render.TLS_CIPHERS};" in nginx
    assert '"MinProtocol" => "TLSv1.2"' in text and "ssl_protocols TLSv1.2 TLSv1.3;" in nginx
    assert '$SERVER["socket"] == "0.0.0.0:443"' in text and 'ssl.engine = "enable"' in text
    assert 'url.redirect = ( "" => "https://${url.authority}${url.path}${qsa}" )' in text
    assert '$HTTP["url"] != ' not in text      # the callback is redirected too unless a setting says so
    raw = example_raw()
    raw["web"]["wechat_callback_on_http"] = True
    kept = render.render_lighttpd(validate_settings(raw), GOLDEN_SECRET)
    assert '$HTTP["url"] != "/wechat/callback" {' in kept
    assert "%U" in text and "%r" not in text


def test_job_commands_get_the_paths_of_each_deployment_separately(tmp_path):
    first = load_settings(EXAMPLE)
    other = example_raw()
    other["paths"]["logs"] = "/data/logs"
    second = validate_settings(other)
    assert first["jobs"]["daily-report"]["command"] == "report daily --out /var/log/xintu/daily-report.html"
    assert second["jobs"]["daily-report"]["command"] == "report daily --out /data/logs/daily-report.html"


def test_nginx_answers_upstream_down_in_the_json_error_shape(rendered):
    import requests

    from xintu.ops import procs

    settings, out = rendered  # nothing listens on the gunicorn port: nginx itself answers 502
    app = settings["app"]
    with procs.nginx(out / "nginx/nginx.conf", [app["https_port"], app["http_port"]],
                     Path(settings["paths"]["logs"]) / "nginx.out").start():
        answer = requests.get(f"https://127.0.0.1:{app['https_port']}/healthz", timeout=10,
                              verify=settings["paths"]["tls_cert"], headers={"Host": app["domain"]})
    assert answer.status_code == 502 and answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"]["code"] == "upstream_unavailable"


def test_every_default_job_is_a_real_command_and_is_rendered_for_cron_and_systemd():
    import shlex

    from click.testing import CliRunner

    from xintu_cli.main import cli

    files = render.render_all(load_settings(EXAMPLE), GOLDEN_SECRET)
    settings = load_settings(EXAMPLE)
    assert {"order-reconcile", "edit-sweep", "edit-cache-cleanup"} <= set(settings["jobs"])
    for name, job in settings["jobs"].items():
        args = shlex.split(job["command"])
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, f"{name}: `xintu {job['command']}` is not a command: {result.output}"
        assert f"xintu {job['command']}' >> " in files["cron/xintu"]
        assert f"xintu {job['command']}" in files[f"systemd/xintu-{name}.service"]
        assert job["on_calendar"] in files[f"systemd/xintu-{name}.timer"]
