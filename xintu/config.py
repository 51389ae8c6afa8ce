"""Configuration: defaults < instance file (``<instance>/xintu.toml``) < ``XINTU_*`` environment < explicit.

Keys are Flask-style upper-case names.  In the TOML file tables flatten with ``_``:
``[wechat] app_id = "wx…"`` is ``WECHAT_APP_ID``; the environment spells it ``XINTU_WECHAT_APP_ID``.
Environment strings are coerced to the type of the default (bool, int, float, list = comma separated).

``ENV=production`` refuses to start unless every secret in ``PRODUCTION_REQUIRED`` is set for real and the
sandbox is off.  In development a random ``SECRET_KEY`` is created once in the instance folder, so the
embedded default needs no setup and still keeps sessions across restarts.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
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
    # Public addresses (used to build OAuth redirects, pay notify URL, download links). Required (https)
    # in production; None elsewhere → DEV_PUBLIC_BASE_URL.
    "PUBLIC_BASE_URL": None,
    "H5_BASE_URL": None,              # CDN origin of the member page; None → served by the app itself
    # Embedded sandbox of WeChat / WeChat Pay / DashScope (development only).
    "SANDBOX": True,
    # WeChat official account.
    "WECHAT_APP_ID": None,
    "WECHAT_APP_SECRET": None,
    "WECHAT_TOKEN": None,
    "WECHAT_AES_KEY": None,           # EncodingAESKey: safe mode, only encrypted events (production needs it)
    "WECHAT_ALLOW_PLAINTEXT": False,  # with an AES key: also accept plaintext events (compatible mode)
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
    # How WeChat Pay's signatures (answers, notifications) are verified: "public_key" (the WeChat Pay public
    # key, PUB_KEY_ID_…), "certificate" (platform certificates the SDK downloads from /v3/certificates into
    # WECHATPAY_CERT_DIR) or "both" (the transition: a signature by either is accepted, by its serial).
    "WECHATPAY_VERIFY_MODE": "public_key",
    "WECHATPAY_PUBLIC_KEY": None,     # platform public key, PEM text or path
    "WECHATPAY_PUBLIC_KEY_ID": None,
    "WECHATPAY_CERT_DIR": None,       # None → <instance>/wechatpay-certs (certificate and both modes)
    "WECHATPAY_CERT_REFRESH_SECONDS": 300,  # a notification with an unknown certificate serial re-downloads
                                            # at most this often (an answer of the gateway: at once)
    "WECHATPAY_BASE_URL": None,       # None → https://api.mch.weixin.qq.com
    "RECONCILE_MAX_BILL_BYTES": 64 * 1024 * 1024,  # a bigger (unzipped) trade bill is refused
    "SANDBOX_DEMO_URL": None,          # set by the sandbox: a page that plays the PC client's QR login
    "SANDBOX_PAY_CASHIER_URL": None,  # set by the sandbox: the H5 page pays there instead of WeixinJSBridge
    # Price table (fen). Credit packages as "credits:fen".
    "PRICE_MEMBER_FEN": 2990,
    "PRICE_MEMBER_DAYS": 30,
    "PRICE_MEMBER_BONUS": 10,
    "PRICE_CREDITS": ["10:990", "20:1800", "50:3900"],
    # Orders: WeChat refuses payment after time_expire (created + this); a payment for an order we already
    # closed is granted if made by time_expire + the grace, else refunded automatically.
    "PAY_ORDER_EXPIRE_MINUTES": 30,
    "PAY_LATE_GRACE_MINUTES": 10,
    # DashScope (Qwen3-VL classification, image edit). Model names are checked against
    # xintu.upstreams.MODELS; a newer one Model Studio offers can be declared in DASHSCOPE_EXTRA_MODELS.
    "DASHSCOPE_API_KEY": None,
    "DASHSCOPE_BASE_URL": None,       # None → the SDK default
    "DASHSCOPE_EXTRA_MODELS": [],
    "DASHSCOPE_BREAKER_SECONDS": 600,  # quota / key / billing / missing-model errors: no calls this long
    # Classification (xintu.classify). The operator switch inference.mode (auto|llm|local) lives in the DB
    # (`xintu config set`); INFERENCE_MODE is its value until someone sets it.
    "INFERENCE_MODE": "auto",
    "CLASSIFY_MODEL_DIR": None,       # None → <instance>/models (ONNX built there at first use)
    "CLASSIFY_THREADS": 2,            # onnxruntime intra-op threads per worker
    "CLASSIFY_LOCAL_CONCURRENCY": 2,  # local inferences at once per worker (CPU bound)
    "CLASSIFY_BATCH_CONCURRENCY": 20,  # items of one batch in flight: all 20, LLM calls are I/O bound
    # Full-size image decodes at once per process (classify, edit uploads, edit results); each holds
    # at most ~100 MB of pixels (xintu.classify.intake.MAX_DECODED_BYTES).
    "IMAGE_DECODE_CONCURRENCY": 2,
    "CLASSIFY_CACHE_LOCAL": False,    # cache local-model answers too (LLM answers always are)
    "CLASSIFY_LLM_MODEL": "qwen3-vl-plus",  # or qwen3-vl-flash
    "CLASSIFY_CACHE_ACCEPT_MODELS": [],  # earlier models whose cached answers are still served
    # An upload whose perceptual hash is within this Hamming distance of a cached LLM answer is answered
    # from it (near_duplicate); 0–3 (the banded index finds every match up to 3), -1 = off.
    "CLASSIFY_NEAR_DUPLICATE_DISTANCE": 3,
    # Cached answers found are also remembered per worker (LRU; 0 = off) for this many seconds: an answer
    # never changes once stored, so this only saves the SELECT of repeated hashes. Misses always ask.
    "CLASSIFY_CACHE_MEMORY_ENTRIES": 20000,
    "CLASSIFY_CACHE_MEMORY_SECONDS": 300.0,
    # check-cache skips the database for hashes a per-worker filter of every stored hash says are absent
    # (xintu/classify/known.py); it polls for other workers' rows at most this often, seconds (0 = off).
    "CLASSIFY_CHECK_FILTER_SECONDS": 0.5,
    "CLASSIFY_LLM_TIMEOUT": 20.0,     # seconds per attempt; gunicorn's timeout must exceed 2 attempts
    "CLASSIFY_LLM_RETRIES": 1,
    # auto mode with a key: the path tried first ("llm" | "local"); the other one is its fallback
    "CLASSIFY_AUTO_FIRST": "llm",
    "SANDBOX_LLM": False,             # `xintu serve`: also start the fake Qwen-VL (else local-only)
    # Image edit (xintu worker). EDIT_DASHSCOPE_* fall back to DASHSCOPE_*.
    "EDIT_MODEL": "qwen-image-2.0",   # synchronous; wan2.6-image / wan2.7-image are submit + poll
    "EDIT_CALL_TIMEOUT": 90.0,        # seconds for one synchronous edit call; must stay below the lease
    "EDIT_DASHSCOPE_API_KEY": None,
    "EDIT_DASHSCOPE_BASE_URL": None,
    "EDIT_TASK_TIMEOUT": 900,         # seconds from submit until unfinished images are refunded
    "EDIT_LEASE_SECONDS": 120,        # a worker silent this long loses its task to another
    "EDIT_POLL_INTERVAL": 2.0,        # seconds between polls of one task
    "EDIT_MAX_ATTEMPTS": 5,           # transient upstream errors per image before it fails
    "EDIT_CACHE_TTL": 30 * 86400,     # identical edits served free this long (results are stored by us)
    "EDIT_RESULT_MAX_BYTES": 30 * 1024 * 1024,  # a bigger upstream result fails (and is refunded)
    "EDIT_RESULT_TIMEOUT": 60,        # seconds to download one upstream result, all of it
    # Hosts (fnmatch patterns) upstream result URLs may point at; https only, no redirects. With SANDBOX
    # on, the edit endpoint's own origin (the fake) is admitted as well.
    "EDIT_RESULT_HOSTS": ["dashscope-result-*.aliyuncs.com"],
    # Location: load the geodata when the app is created (gunicorn preload_app) instead of on first use.
    "LOCATION_PRELOAD": False,
    # Web tier → app internal calls (WeChat callback, OAuth landing, pay notify).
    "INTERNAL_SHARED_SECRET": None,
    "INTERNAL_ALLOWED_ADDRS": ["127.0.0.1", "::1"],
    "REQUIRE_INTERNAL_HEADER": False,  # production forces it on
    # Request limits.
    "MAX_CONTENT_LENGTH": 60 * 1024 * 1024,
    "CLIENT_REGISTRATIONS_PER_HOUR": 30,      # per address
    "CLIENT_REGISTRATIONS_PER_NET_HOUR": 60,  # per IPv6 /64 (an IPv4 address is its own network)
    "CLIENT_REQUESTS_PER_MINUTE": 600,  # per client token and worker process; 0 = no limit
    # Abuse budgets, shared by all workers through the DB (xintu.budgets); 0 = no limit.
    # Qwen-VL calls per Asia/Shanghai day: over any of them the local model answers (method "local").
    "LLM_BUDGET_PER_DEVICE_DAY": 300,
    "LLM_BUDGET_PER_USER_DAY": 1000,
    "LLM_BUDGET_GLOBAL_DAY": 50000,
    # Follow-QR codes (each costs the official account's QR quota): per device per 10 minutes, per
    # address (/64 for IPv6) per hour, and for the whole service per hour.
    "QR_PER_CLIENT": 20,
    "QR_PER_ADDRESS_HOUR": 60,
    "QR_GLOBAL_HOUR": 3000,
    # Proxies: X-Forwarded-For/-Proto are honoured only when the TCP peer is one of these (addresses or
    # CIDR networks), and then for TRUSTED_PROXIES hops.  Anyone else is taken at its TCP address.
    "TRUSTED_PROXY_ADDRS": ["127.0.0.1", "::1"],
    "TRUSTED_PROXIES": 1,             # X-Forwarded-For hops to trust (nginx in front)
    # Client sessions (xintu.auth): a token dies after this many days without use (sliding) or after the
    # absolute age, whichever comes first; 0 = no limit. Bound tokens name a WeChat user, device tokens not.
    "SESSION_BOUND_IDLE_DAYS": 30,
    "SESSION_BOUND_MAX_DAYS": 180,
    "SESSION_DEVICE_IDLE_DAYS": 180,
    "SESSION_DEVICE_MAX_DAYS": 730,
    # A worker keeps a token's session row in memory this many seconds (0 = ask the database every time):
    # a revoke in the same process drops it at once, one in another worker or host is seen within this time.
    "SESSION_CACHE_SECONDS": 2.0,
    # A follower's SCAN binds a client only while its QR code is this young (seconds); a new follower's
    # subscribe event may use the whole QR lifetime (10 min).
    "QR_SCAN_FRESH_SECONDS": 120,
    # Retention (`xintu users retention`, a daily job): request_log rows and stored edit images (uploads
    # left behind and results) older than this many days are deleted; 0 = keep.
    "REQUEST_LOG_RETENTION_DAYS": 90,
    "EDIT_IMAGE_RETENTION_DAYS": 90,
    # 管理后台 (admin dashboard): login throttling, session lifetime, SPA origins allowed by CORS.
    # Failed logins within ADMIN_LOGIN_WINDOW_MINUTES, counted per (username, address), per address and per
    # username: after ADMIN_LOGIN_FREE_FAILURES the next try waits 2, 4, 8 … s up to
    # ADMIN_LOGIN_MAX_DELAY_SECONDS (per username from all addresses: 4× the free failures first).
    "ADMIN_LOGIN_FREE_FAILURES": 3,
    "ADMIN_LOGIN_MAX_DELAY_SECONDS": 300,
    "ADMIN_LOGIN_WINDOW_MINUTES": 15,
    "ADMIN_ALLOWED_ADDRS": [],         # addresses / CIDR networks allowed to use /api/v1/admin; [] = any
    "ADMIN_SESSION_IDLE_MINUTES": 30,
    "ADMIN_SESSION_MAX_HOURS": 12,
    "ADMIN_ALLOWED_ORIGINS": [],
    # APP installers: stored here (None → <instance>/releases); downloads redirect to the CDN if set.
    "RELEASES_DIR": None,
    "RELEASES_PUBLIC_URL": None,
    # /metrics and the detailed /readyz are answered only to these TCP peers (Prometheus, the load
    # balancer's probe on the internal network), never on X-Forwarded-For; requests that came through a
    # proxy get the public /readyz (ready / not ready only).
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
    "WECHAT_AES_KEY",
    "WECHATPAY_MCHID",
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_CERT_SERIAL_NO",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_NOTIFY_URL",
    "WECHAT_OAUTH_REDIRECT_URL",
    "INTERNAL_SHARED_SECRET",
)
# What each WECHATPAY_VERIFY_MODE needs on top (certificate mode: the APIv3 key, required anyway, decrypts
# the downloaded certificates, and WECHATPAY_CERT_DIR must be writable).
VERIFY_MODES = {
    "public_key": ("WECHATPAY_PUBLIC_KEY", "WECHATPAY_PUBLIC_KEY_ID"),
    "certificate": (),
    "both": ("WECHATPAY_PUBLIC_KEY", "WECHATPAY_PUBLIC_KEY_ID"),
}


DEV_PUBLIC_BASE_URL = "http://127.0.0.1:5000"


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
    check_models(config)
    if float(config["EDIT_CALL_TIMEOUT"]) >= float(config["EDIT_LEASE_SECONDS"]):
        raise ConfigError("EDIT_CALL_TIMEOUT must be below EDIT_LEASE_SECONDS, or a slow edit call loses "
                          "its task to another worker and is submitted (and billed) twice")
    if config.get("WECHATPAY_VERIFY_MODE") not in VERIFY_MODES:
        raise ConfigError(f"WECHATPAY_VERIFY_MODE must be one of {', '.join(VERIFY_MODES)}, "
                          f"not {config.get('WECHATPAY_VERIFY_MODE')!r}")
    config["WECHATPAY_CERT_DIR"] = str(config.get("WECHATPAY_CERT_DIR") or ipath / "wechatpay-certs")
    if config.get("CLASSIFY_AUTO_FIRST") not in ("llm", "local"):
        raise ConfigError(f"CLASSIFY_AUTO_FIRST must be llm or local, not {config['CLASSIFY_AUTO_FIRST']!r}")
    if config.get("CLASSIFY_NEAR_DUPLICATE_DISTANCE") not in (-1, 0, 1, 2, 3):
        raise ConfigError("CLASSIFY_NEAR_DUPLICATE_DISTANCE must be 0–3 (or -1 = off), not "
                          f"{config.get('CLASSIFY_NEAR_DUPLICATE_DISTANCE')!r}")
    if config["ENV"] == "production":
        check_production(config)
        config["SANDBOX"] = False
        config["REQUIRE_INTERNAL_HEADER"] = True
    else:
        config["PUBLIC_BASE_URL"] = config.get("PUBLIC_BASE_URL") or DEV_PUBLIC_BASE_URL
        if not config.get("DATABASE_URL"):
            config["DATABASE_URL"] = f"sqlite:///{ipath / 'xintu.sqlite3'}"
        if not config.get("SECRET_KEY"):
            config["SECRET_KEY"] = _development_secret(ipath)
    return config


def check_models(config: dict) -> None:
    """A retired or unknown model name fails at load, with the name to use instead."""
    # config is the bottom layer: the model catalogue lives with the upstream adapters, which need the DB
    from xintu.upstreams import check_model

    extra = config.get("DASHSCOPE_EXTRA_MODELS") or ()
    for key, kind in (("CLASSIFY_LLM_MODEL", "vision"), ("EDIT_MODEL", "edit")):
        level, message = check_model(str(config.get(key) or ""), kind, extra)
        if level == "fail":
            raise ConfigError(f"{key}: {message}")


def production_problems(config: dict) -> list[tuple[str, str, str]]:
    """The config-only production checks as (name, level, advice), level ``fail`` or ``warn``; shared by
    ``check_production`` (refuses to start on any fail) and ``xintu doctor``."""
    out = []
    mode = config.get("WECHATPAY_VERIFY_MODE") or "public_key"
    missing = [key for key in PRODUCTION_REQUIRED + VERIFY_MODES.get(mode, ()) if not config.get(key)]
    if missing:
        out.append(("settings.required", "fail", "production needs these settings (env XINTU_<NAME> or "
                    "instance file): " + ", ".join(missing)))
    secret = str(config.get("SECRET_KEY") or "")
    if secret and (len(secret) < 32 or secret.startswith("dev")):
        out.append(("secrets.secret_key", "fail",
                    "production SECRET_KEY must be a random string of at least 32 characters"))
    shared = str(config.get("INTERNAL_SHARED_SECRET") or "")
    if shared and len(shared) < 24:
        out.append(("secrets.internal_shared_secret", "fail",
                    "INTERNAL_SHARED_SECRET must be at least 24 random characters"))
    v3 = str(config.get("WECHATPAY_APIV3_KEY") or "")
    if v3 and len(v3.encode()) != 32:
        out.append(("secrets.wechatpay_apiv3_key", "fail", "WECHATPAY_APIV3_KEY must be exactly 32 bytes"))
    if mode in ("certificate", "both") and (problem := cert_dir_problem(config.get("WECHATPAY_CERT_DIR"))):
        out.append(("wechatpay.cert_dir", "fail", problem))
    for name, problem in (("wechat.callback_token", wechat_token_problem(config.get("WECHAT_TOKEN"))),
                          ("wechat.aes", aes_key_problem(config.get("WECHAT_AES_KEY")))):
        if problem:
            out.append((name, "fail", problem))
    if str(config.get("DATABASE_URL") or "").startswith("sqlite"):
        out.append(("settings.database_url", "fail", "production DATABASE_URL must point to MariaDB/MySQL, "
                    "not SQLite"))
    for key in ("PUBLIC_BASE_URL", "WECHATPAY_NOTIFY_URL", "WECHAT_OAUTH_REDIRECT_URL"):
        url = str(config.get(key) or "")
        if key == "PUBLIC_BASE_URL" and not url:
            out.append(("addresses.public_base_url", "fail", "production needs PUBLIC_BASE_URL (the https "
                        "address users reach; it goes into links and the OAuth allow-list)"))
        elif url and not url.startswith("https://"):
            out.append((f"addresses.{key.lower()}", "fail", f"{key} must be an https:// URL in production"))
        elif "127.0.0.1" in url or "localhost" in url:
            out.append((f"addresses.{key.lower()}", "fail", f"{key} points to this machine ({url})"))
    return out


def cert_dir_problem(path) -> str | None:
    """Certificate mode keeps the downloaded platform certificates in a folder that must be writable (or
    creatable) by the service."""
    if not path:
        return "WECHATPAY_CERT_DIR is not set (certificate mode keeps the platform certificates there)"
    folder = Path(path)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"WECHATPAY_CERT_DIR {path}: {existing} is not a folder"
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        return f"WECHATPAY_CERT_DIR {path} is not writable (the platform certificates are downloaded there)"
    return None


def wechat_token_problem(token) -> str | None:
    """WeChat accepts a callback Token of 3–32 letters or digits only."""
    if token and not re.fullmatch(r"[A-Za-z0-9]{3,32}", str(token)):
        return "WECHAT_TOKEN must be 3–32 letters or digits (WeChat accepts no other Token)"
    return None


def aes_key_problem(key) -> str | None:
    """The EncodingAESKey: 43 characters of base64 that decode to 32 bytes."""
    if not key:
        return None
    try:
        ok = len(str(key)) == 43 and len(base64.b64decode(str(key) + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    return None if ok else "WECHAT_AES_KEY is not a valid EncodingAESKey (43 characters of base64)"


def check_production(config: dict) -> None:
    fails = [msg for _, level, msg in production_problems(config) if level == "fail"]
    if fails:
        raise ConfigError("; ".join(fails))
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
