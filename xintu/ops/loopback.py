"""Settings for a whole deployment on one machine's loopback, in a folder of its own.

The end-to-end test, the config checks and `scripts/bench/stack.py` all run the real servers with the
real rendered configs; this builds the settings they render from: every path under ``base``, every
port picked free at run time (several suites share the machine), TLS with a self-signed certificate.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from xintu.ops.procs import free_port
from xintu.ops.settings import load_settings

LOOPBACK_HOSTS = {"official": "www.xintu.test", "admin": "admin.xintu.test", "aifuture": "www.aifuture.test"}


def self_signed_cert(folder: Path, hostname: str, *more: str) -> tuple[Path, Path]:
    """A throwaway certificate for ``hostname``, ``more`` names and 127.0.0.1 (generated, never committed)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = ",".join(f"DNS:{name}" for name in (hostname, *more))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={hostname}",
         "-addext", f"subjectAltName={names},IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def loopback_settings(base: Path, *, tls: bool = True, extra_proxy_paths: list[str] | None = None,
                      gunicorn_workers: int = 2, worker_class: str = "sync",
                      gunicorn: dict | None = None, wechat_paths: dict | None = None,
                      wechat_callback_on_http: bool = False) -> dict:
    """Validated settings for a loopback deployment under ``base``; folders and certificate created."""
    base = Path(base).resolve()
    paths = {name: base / name for name in ("root", "logs", "run", "sites")}
    for folder in paths.values():
        folder.mkdir(parents=True, exist_ok=True)
    (paths["root"] / "shared/nginx-tmp").mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_cert(base / "tls", "api.xintu.test", *LOOPBACK_HOSTS.values())
    app_port = free_port()
    raw = {
        "name": "xintu",
        "paths": {**{k: str(v) for k, v in paths.items()}, "tls_cert": str(cert), "tls_key": str(key)},
        "app": {"domain": "api.xintu.test", "listen": "127.0.0.1", "http_port": free_port(),
                "https_port": free_port(), "tls": tls, "llm_timeout": 20, "user": "root",
                # Started as root, nginx workers would run as www-data, which cannot enter a private
                # temp folder: request bodies above 16 KB (spooled to disk) would fail with 500.
                "nginx_user": "root" if os.geteuid() == 0 else None, "nginx_workers": "1"},
        "gunicorn": {"host": "127.0.0.1", "port": app_port, "workers": gunicorn_workers,
                     "worker_class": worker_class, **(gunicorn or {})},
        "web": {"listen": "127.0.0.1", "port": free_port(), "https_port": free_port(), "tls": tls,
                "wechat_callback_on_http": wechat_callback_on_http, "upstream_host": "127.0.0.1",
                "upstream_port": app_port, "wechat_paths": wechat_paths or {},
                "vhosts": {key: {"host": host, "site": key} for key, host in LOOPBACK_HOSTS.items()}},
        "db": {"durable": False, "buffer_pool_mb": 64,
               "primary": _db_node(base / "db-primary", 1), "replica": _db_node(base / "db-replica", 2)},
    }
    if extra_proxy_paths:
        raw["web"]["extra_proxy_paths"] = extra_proxy_paths
    # Written out and read back like an operator's file, so the TOML path is exercised too.
    (base / "deploy.toml").write_text(to_toml(raw), encoding="utf-8")
    return load_settings(base / "deploy.toml")


def to_toml(table: dict, prefix: str = "") -> str:
    """Just enough TOML for settings: scalars, lists of strings, nested tables; None means absent."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v), ensure_ascii=False)

    lines = [f"{k} = {value(v)}" for k, v in table.items() if v is not None and not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            lines.append(f"\n[{prefix}{k}]")
            lines.append(to_toml(v, f"{prefix}{k}."))
    return "\n".join(lines).strip() + "\n"


def _db_node(folder: Path, server_id: int) -> dict:
    return {"host": "127.0.0.1", "port": free_port(), "server_id": server_id, "datadir": str(folder / "data"),
            "socket": str(folder / "mysqld.sock"), "pid_file": str(folder / "mysqld.pid"),
            "log_error": str(folder / "error.log"), "tmpdir": str(folder / "tmp")}
