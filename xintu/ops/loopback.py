"""Settings for a whole deployment on one machine's loopback, in a folder of its own.

The end-to-end test, the config checks and `scripts/bench/stack.py` all run the real servers with the
real rendered configs; this builds the settings they render from: every path under ``base``, every
port picked free at run time (several suites share the machine), TLS with a self-signed certificate.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from xintu.ops.settings import validate_settings

LOOPBACK_HOSTS = {"official": "www.xintu.test", "admin": "admin.xintu.test", "aifuture": "www.aifuture.test"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_cert(folder: Path, hostname: str) -> tuple[Path, Path]:
    """A throwaway certificate for ``hostname`` and 127.0.0.1 (generated, never committed)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={hostname}",
         "-addext", f"subjectAltName=DNS:{hostname},IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def loopback_settings(base: Path, *, tls: bool = True, proxy_paths: list[str] | None = None,
                      gunicorn_workers: int = 2, worker_class: str = "sync") -> dict:
    """Validated settings for a loopback deployment under ``base``; folders and certificate created."""
    base = Path(base).resolve()
    paths = {name: base / name for name in ("root", "logs", "run", "sites")}
    for folder in paths.values():
        folder.mkdir(parents=True, exist_ok=True)
    (paths["root"] / "shared/nginx-tmp").mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_cert(base / "tls", "api.xintu.test")
    app_port = free_port()
    raw = {
        "name": "xintu",
        "paths": {**{k: str(v) for k, v in paths.items()}, "tls_cert": str(cert), "tls_key": str(key)},
        "app": {"domain": "api.xintu.test", "listen": "127.0.0.1", "http_port": free_port(),
                "https_port": free_port(), "tls": tls, "llm_timeout": 20, "user": "root",
                "nginx_user": None, "nginx_workers": "1"},
        "gunicorn": {"host": "127.0.0.1", "port": app_port, "workers": gunicorn_workers,
                     "worker_class": worker_class},
        "web": {"listen": "127.0.0.1", "port": free_port(), "upstream_host": "127.0.0.1",
                "upstream_port": app_port,
                "vhosts": {key: {"host": host, "site": key} for key, host in LOOPBACK_HOSTS.items()}},
        "db": {"durable": False, "buffer_pool_mb": 64,
               "primary": _db_node(base / "db-primary", 1), "replica": _db_node(base / "db-replica", 2)},
    }
    if proxy_paths:
        raw["web"]["proxy_paths"] = proxy_paths
    return validate_settings(raw, "loopback settings")


def _db_node(folder: Path, server_id: int) -> dict:
    return {"host": "127.0.0.1", "port": free_port(), "server_id": server_id, "datadir": str(folder / "data"),
            "socket": str(folder / "mysqld.sock"), "pid_file": str(folder / "mysqld.pid"),
            "log_error": str(folder / "error.log"), "tmpdir": str(folder / "tmp")}
