"""The application factory."""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import re
import secrets

from apiflask import APIFlask
from flask import g, request
from flask.sessions import SessionInterface
from peewee import InterfaceError, OperationalError

from xintu import __version__, apidoc, db, settings_store
from xintu.classify import intake
from xintu.config import load_config
from xintu.errors import HTTP_CODES, Unavailable, XintuError
from xintu.proxies import TrustedProxyFix, parse_networks

log = logging.getLogger("xintu")

# Each area exposes ``bp`` (an APIBlueprint) in its api module.
BLUEPRINTS = [
    "xintu.home",
    "xintu.health",
    "xintu.docs",
    "xintu.auth",
    "xintu.classify.api",
    "xintu.member.api",
    "xintu.member.callbacks",
    "xintu.wechat.api",
    "xintu.stats.api",
    "xintu.admin.api",
    "xintu.releases.api",
    "xintu.location.api",
    "xintu.edit.api",
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class _RequestIds:
    """Request ids for requests that bring none: 32 hex digits, a random prefix per process and a counter.
    Unique, not secret (a client may send its own), so no random bytes per request; a forked worker draws
    a prefix of its own."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self):
        self.prefix, self.counter = secrets.token_hex(10), itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


_request_ids = _RequestIds()


class App(APIFlask):
    """APIFlask with one memo. Flask asks, on every request and for every hook and view it calls, whether
    the function is a coroutine function (an ``inspect`` call each; about ten per request here): the
    answer for a function never changes, so it is looked up once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync: dict = {}

    def ensure_sync(self, func):
        try:
            return self._sync[func]
        except KeyError:
            if len(self._sync) >= 4096:   # bound it, should anything hand in a new function per request
                self._sync.clear()
            wrapped = self._sync[func] = super().ensure_sync(func)
            return wrapped
        except TypeError:   # unhashable
            return super().ensure_sync(func)

class RequestIdFilter(logging.Filter):
    def filter(self, record):
        try:
            record.request_id = g.get("request_id", "-")
        except RuntimeError:  # outside a request
            record.request_id = "-"
        return True


def configure_logging(level: str) -> None:
    root = logging.getLogger("xintu")
    if not any(getattr(h, "_xintu", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._xintu = True
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


class NoCookieSession(SessionInterface):
    """The app keeps no Flask cookie session: identity is tokens and session rows we issue and can revoke
    (xintu.auth, the H5 and admin sessions). So no request opens, verifies or signs one (that was a
    serializer built per request); ``flask.session`` is Flask's null session, which refuses writes."""

    def open_session(self, app, request):
        return None

    def save_session(self, app, session, response):
        return None


def create_app(config: dict | None = None) -> APIFlask:
    settings = load_config(config)
    app = App("xintu", title="芯图相册 xintu API", version=__version__,
                   spec_path="/api/v1/openapi.json", docs_path="/api/v1/docs",
                   instance_path=settings["INSTANCE_PATH"])
    app.config.update(
        AUTO_SERVERS=False,
        AUTO_OPERATION_ID=True,   # stable names for generated clients: <method>_<blueprint>_<view>
        HTTP_ERROR_SCHEMA=apidoc.ERROR_SCHEMA,
        VALIDATION_ERROR_SCHEMA=apidoc.ERROR_SCHEMA,
        SECURITY_SCHEMES=apidoc.SECURITY_SCHEMES,
        SPEC_PROCESSOR_PASS_OBJECT=True,
        JSON_AS_ASCII=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings["ENV"] == "production",
    )
    app.config.update(settings)
    app.json.ensure_ascii = False
    app.session_interface = NoCookieSession()
    # Forwarded headers only from our own proxies (TRUSTED_PROXY_ADDRS), never from any peer.
    for key in ("METRICS_ALLOWED_ADDRS", "ADMIN_ALLOWED_ADDRS"):   # a typo fails at start, not per request
        parse_networks(settings[key], key)
    app.wsgi_app = TrustedProxyFix(app.wsgi_app, settings["TRUSTED_PROXY_ADDRS"], settings["TRUSTED_PROXIES"])
    configure_logging(settings["LOG_LEVEL"])
    db.init_db(settings)
    settings_store.clear_cache()  # switches (and breaker states) cached from another database are stale

    intake.set_decode_concurrency(settings["IMAGE_DECODE_CONCURRENCY"])
    _register_request_hooks(app)
    _register_errors(app)
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)

    @app.spec_processor
    def _contract(spec):
        return apidoc.finish(app, spec)

    return app


def _register_request_hooks(app: APIFlask) -> None:
    @app.before_request
    def _request_id():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if incoming and _REQUEST_ID.match(incoming) else _request_ids.next()

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.teardown_appcontext
    def _close_db(exc):
        # Connections are per request (pooled on MySQL): give them back however the request ended.
        db.close_all()


def _register_errors(app: APIFlask) -> None:
    @app.error_processor
    def _http_error(error):
        body = {"code": HTTP_CODES.get(error.status_code, f"http_{error.status_code}"),
                "message": error.message}
        if error.detail:
            body["details"] = error.detail
        return {"error": body}, error.status_code, error.headers

    @app.errorhandler(XintuError)
    def _xintu_error(error: XintuError):
        if error.status >= 500:
            log.error("%s: %s", error.code, error.message)
        return error.to_dict(), error.status

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_down(error):
        log.error("database error: %s", error)
        return Unavailable("数据库暂不可用", code="database_unavailable").to_dict(), 503

    @app.errorhandler(Exception)
    def _unexpected(error):
        from werkzeug.exceptions import HTTPException

        if isinstance(error, HTTPException):  # let APIFlask shape it
            return app.error_callback(_as_http_error(error))
        log.exception("unhandled error")
        return XintuError().to_dict(), 500


def _as_http_error(exc):
    from apiflask import HTTPError

    headers = dict(exc.get_headers())
    headers.pop("Content-Type", None)
    return HTTPError(exc.code, message=exc.name, headers=headers)
