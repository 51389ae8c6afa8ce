"""Configuration: defaults < instance file (``<instance>/xintu.toml``) < ``XINTU_*`` environment < explicit.

Keys are Flask-style upper-case names.  In the TOML file tables flatten with ``_``:
``[wechat] app_id = "wx…"`` is ``WECHAT_APP_ID``; the environment spells it ``XINTU_WECHAT_APP_ID``.
Environment strings are coerced to the type of the default (bool, int, float, list = comma separated).

``ENV=production`` refuses to start unless every secret in ``PRODUCTION_REQUIRED`` is set for real and the
sandbox is off.  In development a random ``SECRET_KEY`` is created once in the instance folder, so the
embedded default needs no setup and still keeps sessions across restarts.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path

from xintu.errors import ConfigError

ENV_PREFIX = "XINTU_"
INSTANCE_FILE = "xintu.toml"

DEFAULTS: dict = {
    "ENV": "development",
    "SECRET_KEY": None,
    "LOG_LEVEL": "INFO",
    # Databases.  None → SQLite file in the instance folder (the embedded default).
    "DATABASE_URL": None,
    "REPLICA_URL": None,
    "REPLICA_MAX_LAG": 30,            # seconds; a replica further behind is not used
    "REPLICA_CHECK_INTERVAL": 5.0,    # seconds a replica health verdict is reused per process
    "DB_MAX_CONNECTIONS": 16,
    "DB_STALE_TIMEOUT": 300,
    # Public addresses (used to build OAuth redirects, pay notify URL, download links).
    "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
    "H5_BASE_URL": None,              # CDN origin of the member page; None → served by the app itself
    # Embedded sandbox of WeChat / WeChat Pay / DashScope (development only).
    "SANDBOX": True,
    # WeChat official account.
    "WECHAT_APP_ID": None,
    "WECHAT_APP_SECRET": None,
    "WECHAT_TOKEN": None,
    "WECHAT_AES_KEY": None,
    "WECHAT_API_BASE_URL": None,      # None → https://api.weixin.qq.com/
    "WECHAT_OAUTH_BASE_URL": None,    # None → https://open.weixin.qq.com/connect/
    # OAuth landing and pay notify as WeChat reaches them: web-tier URLs in production (Lighttpd proxies
    # them with the shared secret); None → PUBLIC_BASE_URL + /wechat/oauth, /wechat/pay/notify.
    "WECHAT_OAUTH_REDIRECT_URL": None,
    "WECHATPAY_NOTIFY_URL": None,
    # WeChat Pay v3.
    "WECHATPAY_MCHID": None,
    "WECHATPAY_PRIVATE_KEY": None,    # PEM text or a path to it
    "WECHATPAY_CERT_SERIAL_NO": None,
    "WECHATPAY_APIV3_KEY": None,
    "WECHATPAY_PUBLIC_KEY": None,     # platform public key, PEM text or path
    "WECHATPAY_PUBLIC_KEY_ID": None,
    "WECHATPAY_BASE_URL": None,       # None → https://api.mch.weixin.qq.com
    "SANDBOX_DEMO_URL": None,          # set by the sandbox: a page that plays the PC client's QR login
    "SANDBOX_PAY_CASHIER_URL": None,  # set by the sandbox: the H5 page pays there instead of WeixinJSBridge
    # Price table (fen). Credit packages as "credits:fen".
    "PRICE_MEMBER_FEN": 2990,
    "PRICE_MEMBER_DAYS": 30,
    "PRICE_MEMBER_BONUS": 10,
    "PRICE_CREDITS": ["10:990", "20:1800", "50:3900"],
    # DashScope (Qwen-VL classification, image edit).
    "DASHSCOPE_API_KEY": None,
    "DASHSCOPE_BASE_URL": None,       # None → the SDK default
    # Classification (xintu.classify). The operator switch inference.mode (auto|llm|local) lives in the DB
    # (`xintu config set`); INFERENCE_MODE is its value until someone sets it.
    "INFERENCE_MODE": "auto",
    "CLASSIFY_MODEL_DIR": None,       # None → <instance>/models (ONNX built there at first use)
    "CLASSIFY_THREADS": 2,            # onnxruntime intra-op threads per worker
    "CLASSIFY_LOCAL_CONCURRENCY": 2,  # local inferences at once per worker (CPU bound)
    "CLASSIFY_BATCH_CONCURRENCY": 20,  # items of one batch in flight: all 20, LLM calls are I/O bound
    "CLASSIFY_CACHE_LOCAL": False,    # cache local-model answers too (LLM answers always are)
    "CLASSIFY_LLM_MODEL": "qwen-vl-plus",
    "CLASSIFY_LLM_TIMEOUT": 20.0,     # seconds per attempt; gunicorn's timeout must exceed 2 attempts
    "CLASSIFY_LLM_RETRIES": 1,
    # auto mode with a key: the path tried first ("llm" | "local"); the other one is its fallback
    "CLASSIFY_AUTO_FIRST": "llm",
    "SANDBOX_LLM": False,             # `xintu serve`: also start the fake Qwen-VL (else local-only)
    # Image edit (xintu worker). EDIT_DASHSCOPE_* fall back to DASHSCOPE_*.
    "EDIT_MODEL": "qwen-image-edit",  # or wanx2.1-imageedit / wan2.5-i2i-preview (submit + poll)
    "EDIT_DASHSCOPE_API_KEY": None,
    "EDIT_DASHSCOPE_BASE_URL": None,
    "EDIT_TASK_TIMEOUT": 900,         # seconds from submit until unfinished images are refunded
    "EDIT_LEASE_SECONDS": 120,        # a worker silent this long loses its task to another
    "EDIT_POLL_INTERVAL": 2.0,        # seconds between polls of one task
    "EDIT_MAX_ATTEMPTS": 5,           # transient upstream errors per image before it fails
    "EDIT_CACHE_TTL": 30 * 86400,     # identical edits served free this long (results are stored by us)
    "EDIT_RESULT_MAX_BYTES": 30 * 1024 * 1024,  # a bigger upstream result fails (and is refunded)
    "EDIT_RESULT_TIMEOUT": 60,        # seconds to download one upstream result
    # Location: load the geodata when the app is created (gunicorn preload_app) instead of on first use.
    "LOCATION_PRELOAD": False,
    # Web tier → app internal calls (WeChat callback, OAuth landing, pay notify).
    "INTERNAL_SHARED_SECRET": None,
    "INTERNAL_ALLOWED_ADDRS": ["127.0.0.1", "::1"],
    "REQUIRE_INTERNAL_HEADER": False,  # production forces it on
    # Request limits.
    "MAX_CONTENT_LENGTH": 60 * 1024 * 1024,
    "CLIENT_REGISTRATIONS_PER_HOUR": 30,
    "CLIENT_REQUESTS_PER_MINUTE": 600,  # per client token and worker process; 0 = no limit
    "TRUSTED_PROXIES": 1,             # X-Forwarded-For hops to trust (nginx in front)
    # 管理后台 (admin dashboard): login throttling, session lifetime, SPA origins allowed by CORS.
    "ADMIN_MAX_FAILURES": 5,
    "ADMIN_LOCKOUT_MINUTES": 15,
    "ADMIN_LOGIN_ATTEMPTS_PER_10MIN": 20,
    "ADMIN_SESSION_IDLE_MINUTES": 30,
    "ADMIN_SESSION_MAX_HOURS": 12,
    "ADMIN_ALLOWED_ORIGINS": [],
    # APP installers: stored here (None → <instance>/releases); downloads redirect to the CDN if set.
    "RELEASES_DIR": None,
    "RELEASES_PUBLIC_URL": None,
    # /metrics is answered only to these addresses (Prometheus on the internal network).
    "METRICS_ALLOWED_ADDRS": ["127.0.0.1", "::1"],
    # Mail for `xintu report daily --mail-to`.
    "SMTP_HOST": None,
    "SMTP_PORT": 25,
    "SMTP_STARTTLS": False,
    "SMTP_USER": None,
    "SMTP_PASSWORD": None,
    "SMTP_FROM": None,
}

PRODUCTION_REQUIRED = (
    "SECRET_KEY",
    "DATABASE_URL",
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECHAT_TOKEN",
    "WECHATPAY_MCHID",
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_CERT_SERIAL_NO",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_PUBLIC_KEY",
    "WECHATPAY_PUBLIC_KEY_ID",
    "WECHATPAY_NOTIFY_URL",
    "WECHAT_OAUTH_REDIRECT_URL",
    "INTERNAL_SHARED_SECRET",
)


def instance_path(explicit: str | os.PathLike | None = None, environ=os.environ) -> Path:
    return Path(explicit or environ.get("XINTU_INSTANCE_PATH") or Path.cwd() / "instance").resolve()


def _flatten(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}".upper()
        if isinstance(value, dict):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def _coerce(raw: str, default):
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"expected a boolean, got {raw!r}")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def read_instance_file(path: Path) -> dict:
    file = path / INSTANCE_FILE
    if not file.exists():
        return {}
    try:
        return _flatten(tomllib.loads(file.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def load_config(overrides: dict | None = None, *, environ=os.environ, instance: str | None = None) -> dict:
    """Build the effective configuration and validate it; raises ConfigError with one readable line."""
    overrides = dict(overrides or {})
    ipath = instance_path(overrides.pop("INSTANCE_PATH", None) or instance, environ)
    config = dict(DEFAULTS)
    config.update(read_instance_file(ipath))
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and name != "XINTU_INSTANCE_PATH":
            key = name[len(ENV_PREFIX):]
            try:
                config[key] = _coerce(raw, DEFAULTS.get(key))
            except ValueError:
                raise ConfigError(f"{name}: cannot read {raw!r}") from None
    config.update(overrides)
    config["INSTANCE_PATH"] = str(ipath)
    if config.get("CLASSIFY_AUTO_FIRST") not in ("llm", "local"):
        raise ConfigError(f"CLASSIFY_AUTO_FIRST must be llm or local, not {config['CLASSIFY_AUTO_FIRST']!r}")
    if config["ENV"] == "production":
        check_production(config)
        config["SANDBOX"] = False
        config["REQUIRE_INTERNAL_HEADER"] = True
    else:
        if not config.get("DATABASE_URL"):
            config["DATABASE_URL"] = f"sqlite:///{ipath / 'xintu.sqlite3'}"
        if not config.get("SECRET_KEY"):
            config["SECRET_KEY"] = _development_secret(ipath)
    return config


def check_production(config: dict) -> None:
    missing = [key for key in PRODUCTION_REQUIRED if not config.get(key)]
    if missing:
        raise ConfigError("production needs these settings (env XINTU_<NAME> or instance file): "
                          + ", ".join(missing))
    if len(str(config["SECRET_KEY"])) < 32 or str(config["SECRET_KEY"]).startswith("dev"):
        raise ConfigError("production SECRET_KEY must be a random string of at least 32 characters")
    if str(config["DATABASE_URL"]).startswith("sqlite"):
        raise ConfigError("production DATABASE_URL must point to MariaDB/MySQL, not SQLite")
    if config.get("SANDBOX") is True and os.environ.get("XINTU_SANDBOX"):
        raise ConfigError("the WeChat/DashScope sandbox cannot run in production")


def _development_secret(ipath: Path) -> str:
    ipath.mkdir(parents=True, exist_ok=True)
    file = ipath / "secret_key"
    if not file.exists():
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
    return file.read_text().strip()
