"""The deployment settings file (TOML): one description of a deployment, read and validated here.

Every config the ops toolkit renders comes from this one dict, so a typo must fail loudly here rather
than produce a config that a server silently accepts: unknown keys are errors, and cross-field rules
(gunicorn timeout above the LLM timeout, distinct MariaDB server ids, …) are checked after the schema.
Secrets never live in this file: the web tier's shared secret comes from the environment at render time
and the app's own secrets from its instance file / environment on the server.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from xintu.errors import ConfigError

SECRET_ENV = "XINTU_INTERNAL_SHARED_SECRET"


def Port(**kw):
    return fields.Integer(validate=validate.Range(1, 65535), **kw)


def AbsPath(**kw):
    # Paths reach shell commands (deploy, quoted) and every config language we render into: an allow-list,
    # so quotes, spaces, `$`, backticks, `|`, `;`, `&`, globs and braces are refused outright.
    return fields.String(validate=validate.Regexp(
        r"^/[A-Za-z0-9._/@+,:=-]*$",
        error="must be an absolute path of letters, digits and ._/@+,:=- (no spaces or shell characters)"), **kw)


def MemorySize(**kw):
    # systemd's MemoryMax= syntax: bytes with an optional K/M/G/T suffix, or "infinity".
    return fields.String(validate=validate.Regexp(r"^([1-9][0-9]*[KMGT]?|infinity)$",
                                                  error="must be like 4G, 512M or infinity"), **kw)


def Host(**kw):
    return fields.String(validate=validate.Regexp(r"^[A-Za-z0-9.:-]+$", error="not a host name"), **kw)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class PathsSchema(_Strict):
    root = AbsPath(load_default="/srv/xintu")          # releases/<id>, current → releases/<id>, shared/
    logs = AbsPath(load_default="/var/log/xintu")
    run = AbsPath(load_default="/run/xintu")
    sites = AbsPath(load_default="/srv/xintu/sites")   # output of `xintu sites render`
    tls_cert = AbsPath(load_default="/etc/ssl/xintu/fullchain.pem")
    tls_key = AbsPath(load_default="/etc/ssl/xintu/privkey.pem")
    nginx_mime_types = AbsPath(load_default="/etc/nginx/mime.types")


class AppSchema(_Strict):
    domain = Host(required=True)
    listen = Host(load_default="0.0.0.0")
    http_port = Port(load_default=80)
    https_port = Port(load_default=443)
    tls = fields.Boolean(load_default=True)
    # Whole request body, nginx and the app (MAX_CONTENT_LENGTH) alike: a batch may carry 20 photos of
    # ≤ 10 MB each, but not more than this in total (clients split bigger sets).
    body_limit_mb = fields.Integer(load_default=60, validate=validate.Range(50, 1024))
    # nginx limit_req per client address: the API as a whole, and POST /api/v1/clients (registration).
    api_rate_per_second = fields.Integer(load_default=20, validate=validate.Range(1, 10000))
    api_burst = fields.Integer(load_default=60, validate=validate.Range(0, 100000))
    register_rate_per_minute = fields.Integer(load_default=6, validate=validate.Range(1, 6000))
    register_burst = fields.Integer(load_default=10, validate=validate.Range(0, 1000))
    llm_timeout = fields.Integer(load_default=60, validate=validate.Range(1, 600))
    user = fields.String(load_default="xintu")
    nginx_user = fields.String(load_default="www-data", allow_none=True)
    nginx_workers = fields.String(load_default="auto")


class GunicornSchema(_Strict):
    host = Host(load_default="127.0.0.1")
    port = Port(load_default=8000)
    workers = fields.Integer(load_default=0, validate=validate.Range(0, 256))  # 0 → 2×CPU+1 at start
    worker_class = fields.String(load_default="gthread", validate=validate.OneOf(["sync", "gthread"]))
    threads = fields.Integer(load_default=4, validate=validate.Range(1, 64))
    max_requests = fields.Integer(load_default=1000, validate=validate.Range(0))
    max_requests_jitter = fields.Integer(load_default=100, validate=validate.Range(0))
    timeout = fields.Integer(load_default=0, validate=validate.Range(0))        # 0 → llm_timeout + 30
    graceful_timeout = fields.Integer(load_default=30, validate=validate.Range(1))
    keepalive = fields.Integer(load_default=75, validate=validate.Range(1))     # above nginx's idle
    preload = fields.Boolean(load_default=False)
    app = fields.String(load_default="xintu:create_app()")
    # systemd MemoryMax of the whole unit (all workers). A worker holds ~600 MB of models plus up to
    # IMAGE_DECODE_CONCURRENCY × ~110 MB of decodes: size it as workers × 0.9 GB.
    memory_max = MemorySize(load_default="6G")


def _network(value: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(f"not an address or CIDR network: {value!r}") from None


class VhostSchema(_Strict):
    host = Host(required=True)
    site = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_-]+$"))
    title = fields.String(load_default="")
    # Optional allow-list (addresses / CIDR networks): everyone else gets 403 (e.g. the admin vhost).
    allow = fields.List(fields.String(validate=_network), load_default=list)


def UrlPath(**kw):
    return fields.String(validate=validate.Regexp(r"^/[A-Za-z0-9/_.-]*$", error="must be a URL path"), **kw)


# The app's own routes for the three WeChat-initiated endpoints (xintu.member.callbacks).
WECHAT_ROUTES = {"callback": "/wechat/callback", "oauth": "/wechat/oauth", "pay_notify": "/wechat/pay/notify"}


class WechatPathsSchema(_Strict):
    # The public paths the WeChat platform calls on the web tier (kept from an older system if need be);
    # lighttpd maps each onto the app's route, and the OAuth / pay notify URLs the app sends follow.
    callback = UrlPath(load_default=WECHAT_ROUTES["callback"])
    oauth = UrlPath(load_default=WECHAT_ROUTES["oauth"])
    pay_notify = UrlPath(load_default=WECHAT_ROUTES["pay_notify"])


class WebSchema(_Strict):
    listen = Host(load_default="0.0.0.0")
    port = Port(load_default=80)                        # plain HTTP: redirects to https when tls is on
    https_port = Port(load_default=443)
    tls = fields.Boolean(load_default=True)
    tls_cert = AbsPath(load_default=None)               # None → paths.tls_cert (must cover every vhost)
    tls_key = AbsPath(load_default=None)
    # WeChat's official-account callback may be configured as http://…:80; only then keep it off the
    # redirect (the URL signature and safe-mode encryption protect it, not TLS).
    wechat_callback_on_http = fields.Boolean(load_default=False)
    upstream_host = Host(load_default="127.0.0.1")
    upstream_port = Port(load_default=8000)
    internal_header = fields.String(load_default="X-Xintu-Internal",
                                    validate=validate.Regexp(r"^[A-Za-z0-9-]+$"))
    wechat_paths = fields.Nested(WechatPathsSchema, load_default=lambda: WechatPathsSchema().load({}))
    # More paths for the web tier to proxy as they are (e.g. /healthz, to monitor the web → app path);
    # unlike the WeChat paths these stay open on the API host too.
    extra_proxy_paths = fields.List(UrlPath(), load_default=list)
    wechat_vhost = fields.String(load_default="official")
    admin_vhost = fields.String(load_default="admin")   # gets frame-ancestors 'none' (no framing)
    html_max_age = fields.Integer(load_default=300, validate=validate.Range(0))
    asset_max_age = fields.Integer(load_default=31536000, validate=validate.Range(0))
    hsts_max_age = fields.Integer(load_default=63072000, validate=validate.Range(0))
    vhosts = fields.Dict(keys=fields.String(), values=fields.Nested(VhostSchema), required=True)


class DbNodeSchema(_Strict):
    host = Host(required=True)
    port = Port(load_default=3306)
    bind = Host(load_default=None)                      # None → host
    server_id = fields.Integer(required=True, validate=validate.Range(1, 2**32 - 1))
    datadir = AbsPath(load_default="/var/lib/mysql")
    socket = AbsPath(load_default="/run/mysqld/mysqld.sock")
    pid_file = AbsPath(load_default="/run/mysqld/mysqld.pid")
    log_error = AbsPath(load_default="/var/log/mysql/error.log")
    tmpdir = AbsPath(load_default=None, allow_none=True)  # None → the server's default


class DbSchema(_Strict):
    name = fields.String(load_default="xintu", validate=validate.Regexp(r"^[A-Za-z0-9_]+$"))
    binlog_expire_days = fields.Integer(load_default=7, validate=validate.Range(1, 99))
    buffer_pool_mb = fields.Integer(load_default=256, validate=validate.Range(8))
    max_connections = fields.Integer(load_default=200, validate=validate.Range(10))
    durable = fields.Boolean(load_default=True)         # false only for throwaway test instances
    primary = fields.Nested(DbNodeSchema, required=True)
    replica = fields.Nested(DbNodeSchema, required=True)


class JobSchema(_Strict):
    command = fields.String(required=True)              # arguments after `xintu`
    on_calendar = fields.String(required=True)          # systemd timer
    cron = fields.String(required=True, validate=validate.Regexp(r"^(\S+\s+){4}\S+$"))


# The periodic CLI jobs (docs/ARCHITECTURE.md, "Deployment"). "{logs}"/"{root}" stand for paths.logs/paths.root.
DEFAULT_JOBS = {
    "order-sweep": {"command": "orders sweep", "on_calendar": "*:0/5", "cron": "*/5 * * * *"},
    # Bills for a day are ready after 10:00 (Beijing) the next day; without --date: yesterday.
    "order-reconcile": {"command": "orders reconcile --format json", "on_calendar": "*-*-* 10:30",
                        "cron": "30 10 * * *"},
    "edit-sweep": {"command": "edit sweep --no-cache", "on_calendar": "*:2/5", "cron": "2-59/5 * * * *"},
    "edit-cache-cleanup": {"command": "edit expire-cache", "on_calendar": "*-*-* 03:40",
                           "cron": "40 3 * * *"},
    "stats-rollup": {"command": "stats rollup --keep-days 90", "on_calendar": "*-*-* 00:20",
                     "cron": "20 0 * * *"},
    "daily-report": {"command": "report daily --out {logs}/daily-report.html", "on_calendar": "*-*-* 08:00",
                     "cron": "0 8 * * *"},
    # request_log and stored edit images past REQUEST_LOG_RETENTION_DAYS / EDIT_IMAGE_RETENTION_DAYS
    "privacy-retention": {"command": "users retention", "on_calendar": "*-*-* 03:40", "cron": "40 3 * * *"},
}


class SettingsSchema(_Strict):
    name = fields.String(load_default="xintu", validate=validate.Regexp(r"^[a-z][a-z0-9-]*$"))
    paths = fields.Nested(PathsSchema, load_default=lambda: PathsSchema().load({}))
    app = fields.Nested(AppSchema, required=True)
    gunicorn = fields.Nested(GunicornSchema, load_default=lambda: GunicornSchema().load({}))
    web = fields.Nested(WebSchema, required=True)
    db = fields.Nested(DbSchema, required=True)
    workers = fields.Integer(load_default=1, validate=validate.Range(0, 64))   # `xintu worker` units
    worker_memory_max = MemorySize(load_default="1G")   # MemoryMax of each `xintu worker` unit
    jobs = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9-]*$")),
                       values=fields.Nested(JobSchema), load_default=lambda: copy.deepcopy(DEFAULT_JOBS))

    @validates_schema
    def _cross_checks(self, data, **kwargs):
        app, guni, web, db = data["app"], data["gunicorn"], data["web"], data["db"]
        errors = {}
        timeout = guni["timeout"] or app["llm_timeout"] + 30
        if timeout <= app["llm_timeout"]:
            errors["gunicorn.timeout"] = [f"must exceed app.llm_timeout ({app['llm_timeout']} s)"]
        if db["primary"]["server_id"] == db["replica"]["server_id"]:
            errors["db.replica.server_id"] = ["must differ from db.primary.server_id"]
        if web["wechat_vhost"] not in web["vhosts"]:
            errors["web.wechat_vhost"] = [f"no vhost named {web['wechat_vhost']!r}"]
        hosts = [v["host"] for v in web["vhosts"].values()]
        if len(set(hosts)) != len(hosts):
            errors["web.vhosts"] = ["two vhosts share a host name"]
        proxied = list(web["wechat_paths"].values()) + web["extra_proxy_paths"]
        if len(set(proxied)) != len(proxied):
            errors["web.wechat_paths"] = ["the WeChat paths and extra_proxy_paths must be distinct"]
        if web["tls"] and web["port"] == web["https_port"]:
            errors["web.https_port"] = ["must differ from web.port"]
        if errors:
            raise ValidationError(errors)


def _flatten_errors(messages, prefix="") -> list[str]:
    out = []
    for key, value in messages.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten_errors(value, name + "."))
        else:
            out.append(f"{name}: {' '.join(str(v) for v in value)}")
    return out


def validate_settings(raw: dict, source: str = "settings") -> dict:
    """Validate a parsed settings dict and fill in defaults; raises ConfigError with every problem."""
    try:
        data = SettingsSchema().load(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(sorted(_flatten_errors(exc.messages))),
                          code="invalid_settings") from None
    guni = data["gunicorn"]
    guni["timeout"] = guni["timeout"] or data["app"]["llm_timeout"] + 30
    web = data["web"]
    web["tls_cert"] = web["tls_cert"] or data["paths"]["tls_cert"]
    web["tls_key"] = web["tls_key"] or data["paths"]["tls_key"]
    for node in (data["db"]["primary"], data["db"]["replica"]):
        node["bind"] = node["bind"] or node["host"]
    for job in data["jobs"].values():
        job["command"] = job["command"].replace("{logs}", data["paths"]["logs"]).replace(
            "{root}", data["paths"]["root"])
    return data


def load_settings(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such settings file", code="invalid_settings") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", code="invalid_settings") from None
    return validate_settings(raw, str(path))


def internal_secret(environ=os.environ) -> str:
    """The web tier → app shared secret, taken from the environment so it never enters a settings file."""
    secret = environ.get(SECRET_ENV, "")
    if len(secret) < 24:
        raise ConfigError(f"set {SECRET_ENV} (at least 24 characters) to render the web tier config",
                          code="missing_secret")
    return secret
