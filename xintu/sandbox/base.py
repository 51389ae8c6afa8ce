"""A tiny threaded HTTP server that the WeChat and DashScope fakes are built on.

The fakes must be reachable by the real SDKs over real sockets, so each one is an
``http.server.ThreadingHTTPServer`` on a port picked by the OS and served from a daemon thread. Routes are
``(method, regex) -> handler(request) -> Response``; handlers never see the raw socket. A subclass can
narrow ``methods`` (others get the stdlib's 501) and override ``not_found`` to answer unrouted requests
in its upstream's own error format.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    target: str = ""          # the raw request target (path + query) as the client signed it
    match: re.Match | None = None

    def header(self, name, default=None):
        """Case-insensitive, as HTTP header names are (``headers`` keeps the client's spelling)."""
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), default)

    def arg(self, name, default=None):
        return self.query.get(name, [default])[0]

    def json(self):
        return json.loads(self.body or b"{}")

    def form(self):
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8")).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, data, status=200, headers=None, content_type="application/json; charset=utf-8"):
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        return cls(status, body, {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def html(cls, text, status=200):
        return cls(status, text.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})

    @classmethod
    def redirect(cls, location):
        return cls(302, b"", {"Location": location})


class SandboxServer:
    """Base class: subclasses fill ``self.routes`` and get start/stop/base_url."""

    methods = ("GET", "POST", "HEAD")

    def __init__(self, host="127.0.0.1", port=0):
        self.routes: list[tuple[str, re.Pattern, callable]] = []
        self.requests: list[tuple[str, str]] = []   # (method, path) of every request received, in order
        self._host, self._port = host, port
        self._httpd = None
        self._thread = None

    def route(self, method, pattern, handler):
        self.routes.append((method, re.compile(pattern + r"\Z"), handler))

    @property
    def base_url(self):
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # the fakes are noisy enough through their callers
                pass

            def _dispatch(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                              {k: v for k, v in self.headers.items()}, body, self.path)
                resp = server.dispatch(req)
                try:
                    self.send_response(resp.status)
                    for key, value in resp.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(resp.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(resp.body)
                except (BrokenPipeError, ConnectionResetError):
                    # the client gave up first (its time-out is shorter than the fake's latency): as a real
                    # server, drop the answer without a traceback
                    self.close_connection = True

        for method in self.methods:
            setattr(Handler, "do_" + method, Handler._dispatch)
        self._httpd = ThreadingHTTPServer((self._host, self._port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc):
        self.stop()

    def dispatch(self, req: Request) -> Response:
        self.requests.append((req.method, req.path))
        for method, pattern, handler in self.routes:
            match = pattern.match(req.path)
            if match and method == req.method:
                req.match = match
                try:
                    return handler(req)
                except Exception as exc:  # noqa: BLE001  a fake must answer like a server, not hang the SDK
                    return Response.json({"code": "SYSTEM_ERROR", "message": repr(exc)}, status=500)
        return self.not_found(req)

    def not_found(self, req: Request) -> Response:
        return Response.json({"errcode": 404, "errmsg": "not found"}, status=404)
