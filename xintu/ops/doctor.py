"""``xintu doctor``: one check per external dependency and production setting, before a user finds out.

Each check answers ok / warn / fail with one line of advice. The config-only ones are the very checks
``load_config`` refuses a production start on (``xintu.config.production_problems``); the others talk to
the real thing: the primary and the replica (reachable, privileges, read_only, lag, migrations), the
official account (stable_token in normal mode, callback token, AES mode), WeChat Pay (keys load, public
key, a signed query), DashScope (key valid and the models offered, through the OpenAI-compatible
``/models`` endpoint; the breakers). Nothing here changes state upstream: stable_token in normal mode
hands back the live token, and the pay query reads an order (or a made-up one, answered 404).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from xintu import db, migrations
from xintu.config import aes_key_problem, production_problems, wechat_token_problem
from xintu.errors import XintuError
from xintu.member.pay import certificate_serial, pay_client, verify_mode
from xintu.models import Order
from xintu.upstreams import Breaker, check_model
from xintu.wechat import official_account

LEVELS = ("ok", "warn", "fail")
DEFAULT_DASHSCOPE_API = "https://dashscope.aliyuncs.com/api/v1"
_WECHAT_ADVICE = {
    40013: "WECHAT_APP_ID is not a valid AppID",
    40125: "WECHAT_APP_SECRET is wrong (公众平台 → 基本配置 → AppSecret)",
    40164: "this server's IP is not in the account's IP whitelist (公众平台 → 基本配置 → IP白名单)",
    61004: "this server's IP is not in the account's IP whitelist",
    45009: "stable_token's daily limit is used up; retry tomorrow",
}


@dataclass
class Check:
    name: str
    level: str
    message: str
    advice: str = ""

    def row(self) -> dict:
        return asdict(self)


def run(config: dict) -> list[Check]:
    """Every check, in a stable order; call inside an app context (the databases are the app's)."""
    checks: list[Check] = []
    for group in (_settings, _sdks, _database, _replica, _wechat, _callback, _pay, _dashscope):
        try:
            checks.extend(group(config))
        except Exception as exc:  # noqa: BLE001  a check that breaks is a failed check, not a traceback
            checks.append(Check(group.__name__.strip("_"), "fail", f"{type(exc).__name__}: {exc}"[:200],
                                "run with XINTU_TRACEBACK=1 for details"))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.level == "fail" for c in checks)


def _production(config) -> bool:
    return config.get("ENV") == "production"


# -- settings ------------------------------------------------------------------------------------
def _settings(config) -> list[Check]:
    """The config-only production checks; outside production the policy ones (addresses, secrets,
    settings) are warnings of what would refuse, while a broken WeChat token or AES key fails anywhere."""
    prod = _production(config)
    out = []
    for name, level, message in production_problems(config):
        if not prod and name == "settings.required":
            continue  # development runs without most of them on purpose
        policy = not prod and not name.startswith("wechat.")
        out.append(Check(name, "warn" if policy else level, message,
                         "production would refuse to start with this" if policy else ""))
    if not any(c.name.startswith("addresses.") for c in out):
        out.append(Check("addresses", "ok", f"PUBLIC_BASE_URL {config.get('PUBLIC_BASE_URL')}"))
    if not any(c.name.startswith("secrets.") for c in out):
        out.append(Check("secrets", "ok", "secret lengths are as required"))
    return out


# -- SDKs ----------------------------------------------------------------------------------------
# the versions the code was checked against (setup.cfg pins them): a prefix of the installed version
SDK_VERSIONS = {"dashscope": "2.", "wechatpy": "1.8.18", "wechatpayv3": "2.0.4"}


def _sdks(config) -> list[Check]:
    from importlib.metadata import PackageNotFoundError, version

    found, wrong = [], []
    for name, wanted in SDK_VERSIONS.items():
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "missing"
        found.append(f"{name} {have}")
        if not have.startswith(wanted):
            wrong.append(f"{name} {have} (tested: {wanted}{'x' if wanted.endswith('.') else ''})")
    if wrong:
        return [Check("sdk.versions", "warn", "untested SDK versions: " + ", ".join(wrong),
                      "install the versions setup.cfg pins")]
    return [Check("sdk.versions", "ok", ", ".join(found))]


# -- databases -----------------------------------------------------------------------------------
def _grants(database) -> list[str]:
    return [row[0] for row in database.execute_sql("SHOW GRANTS FOR CURRENT_USER()").fetchall()]


def _database(config) -> list[Check]:
    database = db.primary.obj
    with db.primary.connection_context():
        db.ping(database)
        out = [Check("database.primary", "ok", f"reachable ({_safe_url(config['DATABASE_URL'])})")]
        pending = [m for m in migrations.status(database) if not m["applied_at"]]
        out.append(Check("database.migrations", "warn" if pending else "ok",
                         f"{len(pending)} migrations not applied" if pending else "schema is current",
                         "run `xintu db migrate`" if pending else ""))
        if not db.is_mysql():
            level = "fail" if _production(config) else "ok"
            out.append(Check("database.privileges", level, "SQLite (embedded mode)",
                             "production needs MariaDB/MySQL" if level == "fail" else ""))
            return out
        read_only = database.execute_sql("SELECT @@read_only").fetchone()[0]
        if read_only:
            out.append(Check("database.read_only", "fail", "the primary has read_only=ON: every write fails",
                             "DATABASE_URL must point at the primary, not a replica"))
        grants = " ".join(_grants(database)).upper()
        if "SUPER" in grants or "ALL PRIVILEGES ON *.*" in grants:
            out.append(Check("database.privileges", "warn", "the app user has SUPER / ALL ON *.*",
                             "use a user with privileges on the xintu schema only: read_only on a replica "
                             "does not stop SUPER"))
        elif not re.search(r"GRANT (ALL PRIVILEGES|.*\bINSERT\b.*\bUPDATE\b)", grants):
            out.append(Check("database.privileges", "fail", "the app user cannot INSERT/UPDATE",
                             "GRANT ALL PRIVILEGES ON xintu.* TO the app user"))
        else:
            out.append(Check("database.privileges", "ok", "least-privilege app user"))
    return out


def _replica(config) -> list[Check]:
    if not config.get("REPLICA_URL"):
        return [Check("database.replica", "ok", "no replica configured: stale reads use the primary")]
    status = db.replica_status()
    out = []
    if status["healthy"]:
        out.append(Check("database.replica", "ok", f"replicating, lag {status['lag']} s"))
    else:
        out.append(Check("database.replica", "fail" if "unreachable" in (status["reason"] or "") else "warn",
                         f"replica not usable: {status['reason']}",
                         status.get("last_error") or "reads fall back to the primary until it is fixed"))
    if db.is_mysql(db.replica) and "unreachable" not in (status["reason"] or ""):
        with db.replica.connection_context():
            read_only = db.replica.obj.execute_sql("SELECT @@read_only").fetchone()[0]
            grants = " ".join(_grants(db.replica.obj)).upper()
        if "SUPER" in grants or "ALL PRIVILEGES ON *.*" in grants:
            out.append(Check("database.replica_privileges", "fail", "the replica user has SUPER / ALL ON *.*",
                             "read_only does not stop SUPER: a stray write breaks replication; use SELECT "
                             "+ SLAVE MONITOR"))
        else:
            out.append(Check("database.replica_privileges", "ok", "replica user without SUPER"))
        out.append(Check("database.replica_read_only", "ok" if read_only else "fail",
                         "read_only=ON" if read_only else "the replica accepts writes (read_only=OFF)",
                         "" if read_only else "SET GLOBAL read_only=ON on the replica (and in its my.cnf)"))
    return out


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", str(url))


# -- WeChat official account ---------------------------------------------------------------------
def _wechat(config) -> list[Check]:
    import requests
    from wechatpy.exceptions import WeChatClientException

    try:
        client = official_account(config)
    except XintuError as exc:
        return [Check("wechat.token", "fail" if _production(config) else "warn", exc.message,
                      "set WECHAT_APP_ID and WECHAT_APP_SECRET")]
    try:
        _, expires_in = client.request_stable_token()
    except WeChatClientException as exc:
        return [Check("wechat.token", "fail", f"stable_token refused: {exc.errcode} {exc.errmsg}",
                      _WECHAT_ADVICE.get(exc.errcode, "see WeChat's global return codes"))]
    except requests.RequestException as exc:
        return [Check("wechat.token", "fail", f"WeChat API unreachable: {type(exc).__name__}",
                      "check outbound HTTPS to api.weixin.qq.com (WECHAT_API_BASE_URL)")]
    return [Check("wechat.token", "ok", f"stable_token works (expires in {expires_in} s)")]


def _callback(config) -> list[Check]:
    """Format problems of the token and the AES key are production_problems (in _settings); here the
    remaining verdicts: not set, plain-text mode, or fine."""
    token, aes = config.get("WECHAT_TOKEN"), config.get("WECHAT_AES_KEY")
    out = []
    if not token:
        out.append(Check("wechat.callback_token", "fail" if _production(config) else "warn",
                         "WECHAT_TOKEN is not set: callbacks cannot be verified",
                         "the Token of 公众平台 → 基本配置 → 服务器配置"))
    elif not wechat_token_problem(token):
        out.append(Check("wechat.callback_token", "ok", "callback token configured"))
    if not aes:
        out.append(Check("wechat.aes", "warn", "no WECHAT_AES_KEY: plain-text mode, events unencrypted",
                         "choose 安全模式 and set the EncodingAESKey"))
    elif not aes_key_problem(aes):
        out.append(Check("wechat.aes", "ok", "safe mode (AES key decodes to 32 bytes)"))
    return out


# -- WeChat Pay ----------------------------------------------------------------------------------
def _pay(config) -> list[Check]:
    try:
        wp = pay_client(config)
    except XintuError as exc:
        if exc.code == "pay_certificates_unavailable":
            return [Check("wechatpay.keys", "fail", exc.message,
                          "GET /v3/certificates must answer with a certificate the APIv3 key decrypts: check "
                          "WECHATPAY_APIV3_KEY, MCHID and the merchant key, or use the public key mode")]
        return [Check("wechatpay.keys", "fail" if _production(config) else "warn", exc.message,
                      "set the WECHATPAY_* settings")]
    except Exception as exc:  # noqa: BLE001  the SDK raises plain exceptions for keys it cannot load
        return [Check("wechatpay.keys", "fail", f"keys do not load: {exc}"[:200],
                      "WECHATPAY_PRIVATE_KEY = apiclient_key.pem, WECHATPAY_PUBLIC_KEY = pub_key.pem "
                      "(PEM text or a path)")]
    mode = verify_mode(config)
    out = [Check("wechatpay.keys", "ok", "merchant private key and the keys of the verification mode load"),
           Check("wechatpay.mode", "ok", f"verification mode {mode} (WECHATPAY_VERIFY_MODE): " + {
               "public_key": "the WeChat Pay public key verifies",
               "certificate": "platform certificates verify",
               "both": "transition: the public key and the platform certificates verify, by serial"}[mode])]
    if mode != "certificate":
        key_id = str(config.get("WECHATPAY_PUBLIC_KEY_ID") or "")
        out.append(Check("wechatpay.public_key", "ok" if key_id.startswith("PUB_KEY_ID_") else "warn",
                         f"public key id {key_id}", "" if key_id.startswith("PUB_KEY_ID_") else
                         "WeChat Pay public key ids start with PUB_KEY_ID_ (商户平台 → API安全 → 微信支付公钥)"))
    if mode != "public_key":
        out.append(_pay_certificates(wp, mode))
    out.append(_pay_round_trip(wp))
    return out


def _pay_certificates(wp, mode) -> Check:
    """The platform certificates held (from WECHATPAY_CERT_DIR or downloaded), and how long they last."""
    certs = wp.certificates
    if not certs:
        return Check("wechatpay.certificates", "fail" if mode == "certificate" else "warn",
                     "no platform certificate held: certificate-signed messages are refused",
                     "GET /v3/certificates failed (merchant key / MCHID / APIv3 key) or WECHATPAY_CERT_DIR "
                     "is not writable")
    last = max(cert.not_valid_after_utc for cert in certs)
    listed = ", ".join(f"{certificate_serial(c.serial_number)} until {c.not_valid_after_utc:%Y-%m-%d}"
                       for c in certs)
    if last - datetime.now(UTC) < timedelta(days=30):
        return Check("wechatpay.certificates", "warn", f"platform certificates expire soon: {listed}"[:200],
                     "WeChat publishes the next certificate before the old one expires: restart or wait for "
                     "a refresh; or move to the WeChat Pay public key (docs/MEMBER.md)")
    return Check("wechatpay.certificates", "ok", f"platform certificates: {listed}"[:200])


def _pay_round_trip(wp) -> Check:
    """A signed query: 200 (signature of the answer verified by the SDK) for our latest order, else the
    404 ORDER_NOT_EXIST of a made-up number (our signature was accepted, or it would be 401)."""
    latest = Order.select(Order.out_trade_no).order_by(Order.id.desc()).first()
    number = latest.out_trade_no if latest else "doctor" + secrets.token_hex(8)
    try:
        status, text = wp.query(out_trade_no=number)
    except Exception as exc:  # noqa: BLE001  requests errors, or 'failed to verify the signature'
        return Check("wechatpay.query", "fail", f"query failed: {exc}"[:200],
                     "check WECHATPAY_PUBLIC_KEY / _ID (the answer's signature) and outbound HTTPS")
    if status == 200:
        return Check("wechatpay.query", "ok", "signed query round trip (answer signature verified)")
    if status == 404 and "ORDER_NOT_EXIST" in str(text):
        return Check("wechatpay.query", "ok", "signed query accepted (no order yet to verify an answer)")
    return Check("wechatpay.query", "fail", f"query answered {status}: {str(text)[:120]}",
                 "401 SIGN_ERROR: WECHATPAY_CERT_SERIAL_NO / private key / MCHID do not match")


# -- DashScope -----------------------------------------------------------------------------------
def _compatible_models_url(api_base: str | None) -> str:
    base = (api_base or DEFAULT_DASHSCOPE_API).rstrip("/")
    return re.sub(r"/api/v1$", "", base) + "/compatible-mode/v1/models"


def _offered(key: str, api_base: str | None) -> tuple[int | None, set[str], str]:
    import requests

    try:
        rsp = requests.get(_compatible_models_url(api_base), headers={"Authorization": f"Bearer {key}"},
                           timeout=10)
        data = rsp.json() if rsp.content else {}
    except (requests.RequestException, ValueError) as exc:
        return None, set(), type(exc).__name__
    return rsp.status_code, {m.get("id") for m in data.get("data") or [] if isinstance(m, dict)}, \
        str((data.get("error") or {}).get("message") or data.get("message") or "")


def _dashscope(config) -> list[Check]:
    extra = config.get("DASHSCOPE_EXTRA_MODELS") or ()
    uses = [("classify", config.get("DASHSCOPE_API_KEY"), config.get("DASHSCOPE_BASE_URL"),
             "CLASSIFY_LLM_MODEL", "vision"),
            ("edit", config.get("EDIT_DASHSCOPE_API_KEY") or config.get("DASHSCOPE_API_KEY"),
             config.get("EDIT_DASHSCOPE_BASE_URL") or config.get("DASHSCOPE_BASE_URL"), "EDIT_MODEL", "edit")]
    out = []
    for use, key, base, model_key, kind in uses:
        model = str(config.get(model_key) or "")
        level, message = check_model(model, kind, extra)
        out.append(Check(f"dashscope.{use}.model", level, f"{model_key}: {message}"))
        if not key:
            out.append(Check(f"dashscope.{use}.key", "warn" if _production(config) else "ok",
                             "no DashScope key: " + ("classification uses the local model only" if use ==
                                                     "classify" else "image edit is off")))
            continue
        status, offered, detail = _offered(key, base)
        if status is None:
            out.append(Check(f"dashscope.{use}.key", "fail", f"DashScope unreachable ({detail})",
                             "check outbound HTTPS to dashscope.aliyuncs.com (DASHSCOPE_BASE_URL)"))
            continue
        if status in (401, 403):
            out.append(Check(f"dashscope.{use}.key", "fail", f"key refused ({status} {detail})",
                             "a valid API key of this region (Beijing and Singapore keys differ)"))
            continue
        if status != 200:
            out.append(Check(f"dashscope.{use}.key", "warn", f"model list answered {status} {detail}"))
            continue
        out.append(Check(f"dashscope.{use}.key", "ok", f"key valid ({len(offered)} models offered)"))
        if model not in offered:
            out.append(Check(f"dashscope.{use}.offered", "fail", f"{model} is not offered to this key",
                             "enable the model in Model Studio, or pick one it lists"))
        state = Breaker(f"dashscope.{use}").state()
        if state:
            out.append(Check(f"dashscope.{use}.breaker", "warn",
                             f"breaker open ({state.get('code') or state.get('reason')}): no calls for now",
                             "fix the cause, then it closes by itself after DASHSCOPE_BREAKER_SECONDS"))
    return out
