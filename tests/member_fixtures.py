"""Member-area fixtures: the app served on a real socket with the WeChat / WeChat Pay sandbox wired in.

The sandbox has to reach the app over HTTP (it posts events and payment notifications like WeChat does),
so the app runs in a threaded werkzeug server on a free port, on SQLite (``member_stack``) or on the
real MariaDB primary (``mysql_member_stack``).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from xintu.models import Order
from xintu.sandbox.wechat import Sandbox, start


@dataclass
class MemberStack:
    app: object
    url: str
    sandbox: Sandbox

    def register_device(self) -> str:
        resp = requests.post(self.url + "/api/v1/clients", json={"client_id": "pc-" + _rand(), "platform": "windows"},
                             timeout=10)
        assert resp.status_code == 201, resp.text
        return resp.json()["token"]

    def h5_login(self, openid: str) -> requests.Session:
        """Open the H5 page as WeChat user ``openid``: OAuth via the sandbox, hand-off, session cookie."""
        http = requests.Session()
        start_resp = http.get(self.url + "/wechat/oauth/start", params={"next": self.url + "/h5/"},
                              allow_redirects=False, timeout=10)
        assert start_resp.status_code == 302, start_resp.text
        authorize = start_resp.headers["Location"].split("#")[0]
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        consent = http.post(authorize.split("?")[0], data={**query, "openid": openid}, allow_redirects=False,
                            timeout=10)
        landing = http.get(consent.headers["Location"], allow_redirects=False, timeout=10)
        assert landing.status_code == 302, landing.text
        ticket = parse_qs(urlsplit(landing.headers["Location"]).query)["ticket"][0]
        self.last_ticket = ticket
        assert http.post(self.url + "/api/v1/h5/session", json={"ticket": ticket}, timeout=10).status_code == 200
        return http

    def buy(self, http, kind, package=None) -> dict:
        resp = http.post(self.url + "/api/v1/orders", json={"kind": kind, "package": package}, timeout=10)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def prepay_id(self, order: dict) -> str:
        return order["pay"]["params"]["package"].removeprefix("prepay_id=")

    def cli(self, *args):
        """Run `xintu ARGS` against this stack's app (given to the CLI as its context object)."""
        from click.testing import CliRunner

        from xintu_cli.main import cli

        return CliRunner().invoke(cli, list(args), obj=self.app)

    def in_app(self):
        """An app context whose DB connection is closed on exit (for direct model/service checks)."""
        return _AppCtx(self.app)


class _AppCtx:
    def __init__(self, app):
        self.ctx = app.app_context()

    def __enter__(self):
        self.ctx.push()
        return self

    def __exit__(self, *exc):
        from xintu import db
        db.close_all()
        self.ctx.pop()


def _rand():
    import secrets
    return secrets.token_hex(6)


def _serve(app):
    """Yields the MemberStack of ``app``, then stops the sandbox and the server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    sandbox = start(url)
    app.config.update(sandbox.config, PUBLIC_BASE_URL=url, REQUIRE_INTERNAL_HEADER=False, SANDBOX=True)
    yield MemberStack(app, url, sandbox)
    sandbox.stop()
    server.shutdown()


@pytest.fixture
def member_stack(app):
    yield from _serve(app)


@pytest.fixture
def mysql_member_stack(mysql_app):
    yield from _serve(mysql_app)


def wait_for_order(stack, no: str, status: str, timeout: float = 10):
    """The order ``no`` once it reaches ``status`` (a notification applies it a moment later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.in_app():
            order = Order.get(Order.out_trade_no == no)
        if order.status == status:
            return order
        time.sleep(0.1)
    raise AssertionError(f"order {no} is {order.status}, not {status}")
