"""The deployment of docs/ARCHITECTURE.md ("Deployment") on loopback: gunicorn + nginx (app tier) and lighttpd
(web tier), all running the configs `xintu conf render` produces and the sites `xintu sites render`
builds. The databases come from the caller (the test fixture's primary + replica, or the bench's own).

Used by the end-to-end test and `scripts/bench/stack.py`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from xintu.ops import procs, render, sites
from xintu.ops.loopback import loopback_settings


class LoopbackStack:
    def __init__(self, base: Path, app_env: dict, *, secret: str, extra_proxy_paths: list[str] | None = None,
                 app: str = "xintu:create_app()", workers: int = 2, releases: list[dict] | None = None,
                 gunicorn: dict | None = None, wechat_paths: dict | None = None,
                 wechat_callback_on_http: bool = False):
        self.base = Path(base)
        self.settings = loopback_settings(self.base / "deploy", extra_proxy_paths=extra_proxy_paths,
                                          gunicorn_workers=workers, gunicorn=gunicorn,
                                          wechat_paths=wechat_paths,
                                          wechat_callback_on_http=wechat_callback_on_http)
        self.secret, self.app = secret, app
        self.conf = self.base / "conf"
        self.releases = releases or []
        self.app_env = {"XINTU_INSTANCE_PATH": str(self.base / "instance"), "XINTU_SANDBOX": "false",
                        "XINTU_INTERNAL_SHARED_SECRET": secret, "XINTU_REQUIRE_INTERNAL_HEADER": "true",
                        "XINTU_INTERNAL_ALLOWED_ADDRS": "127.0.0.1", **app_env}
        self.servers: list[procs.ServerProcess] = []
        self.startup_seconds: dict[str, float] = {}

    # Addresses ------------------------------------------------------------------------------------
    @property
    def gunicorn_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['gunicorn']['port']}"

    @property
    def nginx_url(self) -> str:
        return f"https://127.0.0.1:{self.settings['app']['https_port']}"

    @property
    def nginx_http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['app']['http_port']}"

    @property
    def lighttpd_url(self) -> str:
        """The web tier over TLS (certificate: ``cert``, valid for every vhost and 127.0.0.1)."""
        return f"https://127.0.0.1:{self.settings['web']['https_port']}"

    @property
    def lighttpd_http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['web']['port']}"

    @property
    def cert(self) -> str:
        return self.settings["paths"]["tls_cert"]

    def server(self, name: str) -> procs.ServerProcess:
        """A running server of the stack by name: ``gunicorn``, ``nginx`` or ``lighttpd``."""
        return next(s for s in self.servers if s.name == name)

    def host(self, vhost: str) -> str:
        return self.settings["web"]["vhosts"][vhost]["host"]

    # Lifecycle ------------------------------------------------------------------------------------
    def render(self) -> None:
        render.write_tree(render.render_all(self.settings, self.secret), self.conf)
        context = sites.site_context(api_base_url=f"https://{self.settings['app']['domain']}",
                                     releases=self.releases, year=2026,
                                     hosts={k: v["host"] for k, v in self.settings["web"]["vhosts"].items()})
        sites.render_sites(self.settings["paths"]["sites"], context)

    def migrate(self) -> None:
        import subprocess

        subprocess.run([sys.executable, "-m", "xintu_cli.main", "db", "migrate"], check=True,
                       env={**os.environ, **self.app_env}, capture_output=True, timeout=120)

    def start(self) -> LoopbackStack:
        self.render()
        self.migrate()
        logs = Path(self.settings["paths"]["logs"])
        app, web = self.settings["app"], self.settings["web"]
        plan = [
            procs.gunicorn(self.conf / "gunicorn/gunicorn.conf.py", self.app,
                           self.settings["gunicorn"]["port"], logs / "gunicorn.out", env=self.app_env),
            procs.nginx(self.conf / "nginx/nginx.conf", [app["https_port"], app["http_port"]],
                        logs / "nginx.out"),
            procs.lighttpd(self.conf / "lighttpd/lighttpd.conf", [web["port"], web["https_port"]],
                           logs / "lighttpd.out"),
        ]
        try:
            for server in plan:
                started = time.perf_counter()
                self.servers.append(server.start())
                self.startup_seconds[server.name] = round(time.perf_counter() - started, 2)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
