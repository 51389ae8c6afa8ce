"""The sandbox of a running `xintu serve`, shared with every other process on the same instance folder.

`xintu serve` starts the fakes in a child process (``xintu sandbox run``), which records where they live
in ``<instance>/sandbox.json`` (mode 0600: it holds the fake merchant's private key and the callback
token) and removes the file when it stops. The server's workers, the edit worker and any CLI command on
the same instance read it with :func:`running_overrides`, so `xintu qrcode issue` in a second shell
reaches the same fake WeChat as the server. `xintu sandbox scan` / `buy` play WeChat's side of a flow
through the fakes' control routes and the server's own public endpoints (:class:`SandboxClient`).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from xintu.errors import ConfigError

STATE_NAME = "sandbox.json"
CONTROL_HEADER = "X-Sandbox-Key"


def state_path(config: dict) -> Path:
    return Path(config["INSTANCE_PATH"]) / STATE_NAME


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: not ours
        return False
    return True


def read_state(config: dict) -> dict | None:
    """The running sandbox's record for this instance, or None (no file, or its process is gone)."""
    path = state_path(config)
    try:
        state = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not _alive(int(state.get("pid") or 0)):
        return None
    return state


def running_overrides(config: dict) -> dict:
    """The running sandbox's settings, and the server's own address (what a refund's notify_url names)."""
    state = read_state(config)
    return {"PUBLIC_BASE_URL": state["server"], **state["overrides"]} if state else {}


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    os.replace(tmp, path)      # readers see the old file or the whole new one


def run(config: dict, ready=None) -> None:
    """Start the fakes for ``config`` (PUBLIC_BASE_URL is the server they call back), record them, and
    serve until SIGTERM/SIGINT; the record is removed on the way out."""
    from xintu.sandbox import start_embedded

    control_key = secrets.token_urlsafe(24)
    overrides = start_embedded({**config, "SANDBOX_CONTROL_KEY": control_key})
    if not overrides:
        raise ConfigError("the sandbox needs PUBLIC_BASE_URL (the server it calls back)")
    path = state_path(config)
    _write_state(path, {"pid": os.getpid(), "server": config["PUBLIC_BASE_URL"].rstrip("/"),
                        "control_key": control_key, "overrides": overrides})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if ready:
            ready(overrides)
        stop.wait()
    finally:
        try:
            if json.loads(path.read_text("utf-8")).get("pid") == os.getpid():
                path.unlink()
        except (FileNotFoundError, ValueError):
            pass


class SandboxClient:
    """WeChat's side of a flow, against the sandbox of a running server (from its state record)."""

    def __init__(self, config: dict, timeout: float = 15):
        state = read_state(config)
        if state is None:
            raise ConfigError(f"no sandbox is running for the instance {config['INSTANCE_PATH']} "
                              "(start `xintu serve` there first)")
        self.state, self.timeout = state, timeout
        self.server = state["server"]
        self.overrides = state["overrides"]
        self.wechat = self.overrides["WECHAT_API_BASE_URL"].rstrip("/")

    def _control(self, path: str, payload: dict) -> dict:
        resp = requests.post(self.wechat + path, json=payload, timeout=self.timeout,
                             headers={CONTROL_HEADER: self.state["control_key"]})
        data = resp.json()
        if resp.status_code != 200:
            raise ConfigError(f"sandbox: {data.get('errmsg') or resp.text}")
        return data

    def change_bill(self, **changes) -> dict:
        """Make the fake WeChat Pay's trade bills disagree with what happened (see PaySandbox.change_bill):
        ``drop=NO``, ``amount=[NO, fen]``, ``stranger=fen``, ``refund=[NO, fen]``, ``reset=True``."""
        pay = self.overrides["WECHATPAY_BASE_URL"].rstrip("/")
        resp = requests.post(pay + "/sandbox/bill", json=changes, timeout=self.timeout,
                             headers={CONTROL_HEADER: self.state["control_key"]})
        data = resp.json()
        if resp.status_code != 200:
            raise ConfigError(f"sandbox: {data.get('message') or resp.text}")
        return data

    def set_signing(self, signer: str) -> dict:
        """Switch who signs the fake WeChat Pay's answers and notifications: ``public_key``,
        ``certificate``, or ``rotate`` (a new platform certificate that signs from now on)."""
        pay = self.overrides["WECHATPAY_BASE_URL"].rstrip("/")
        resp = requests.post(pay + "/sandbox/signing", json={"with": signer}, timeout=self.timeout,
                             headers={CONTROL_HEADER: self.state["control_key"]})
        data = resp.json()
        if resp.status_code != 200:
            raise ConfigError(f"sandbox: {data.get('message') or resp.text}")
        return data

    def scan(self, scene: str, openid: str | None = None) -> dict:
        """A WeChat user scans the QR of ``scene`` and follows (or, already a follower, the SCAN event)."""
        return self._control("/sandbox/scan", {"scene": scene, "openid": openid})

    def buy(self, openid: str, kind: str, package: str | None) -> dict:
        """What the H5 member page does for ``openid``: OAuth, session, order, cashier, notification."""
        http = requests.Session()
        h5 = self.server + "/h5/"
        start = http.get(self.server + "/wechat/oauth/start", params={"next": h5}, allow_redirects=False,
                         timeout=self.timeout)
        authorize = _location(start, "OAuth start")
        form = dict(parse_qsl(urlsplit(authorize).query))
        consent = http.post(authorize.split("?")[0], data={**form, "openid": openid}, allow_redirects=False,
                            timeout=self.timeout)
        landing = http.get(_location(consent, "WeChat OAuth"), allow_redirects=False, timeout=self.timeout)
        back = _location(landing, "OAuth landing")
        ticket = dict(parse_qsl(urlsplit(back).query)).get("ticket")
        if not ticket:
            raise ConfigError(f"sandbox: the OAuth landing sent no ticket ({back})")
        _ok(http.post(self.server + "/api/v1/h5/session", json={"ticket": ticket}, timeout=self.timeout),
            "H5 session")
        order = _ok(http.post(self.server + "/api/v1/orders", json={"kind": kind, "package": package},
                              timeout=self.timeout), "order")
        cashier = order["pay"].get("cashier_url")
        if not cashier:
            raise ConfigError("sandbox: the order did not go to the sandbox cashier")
        params = dict(parse_qsl(urlsplit(cashier).query))
        paid = http.post(cashier.split("?")[0], data=params, allow_redirects=False, timeout=self.timeout)
        if paid.status_code >= 400:
            raise ConfigError(f"sandbox cashier: HTTP {paid.status_code}")
        return _ok(http.get(self.server + "/api/v1/orders/" + order["out_trade_no"], timeout=self.timeout),
                   "order status")


def _location(resp, step: str) -> str:
    if resp.status_code not in (301, 302, 303, 307) or "Location" not in resp.headers:
        raise ConfigError(f"sandbox: {step} answered HTTP {resp.status_code}, not a redirect")
    return urljoin(resp.url, resp.headers["Location"])


def _ok(resp, step: str) -> dict:
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if resp.status_code >= 400:
        error = (data.get("error") or {}).get("message") or resp.text[:200]
        raise ConfigError(f"sandbox: {step} failed: HTTP {resp.status_code} {error}")
    return data
