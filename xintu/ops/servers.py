"""nginx, lighttpd, gunicorn and sshd as plain local processes running our rendered configs.

Used by the topology tests, the deploy test and `scripts/bench/stack.py`. Each server runs in the
foreground under our own process (so stopping it is a signal to a PID we started), logs to a file in
its folder, and is "up" once its ports accept connections.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1", proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class ServerProcess:
    """One foreground server process; ``with`` starts it and stops it again."""

    def __init__(self, name: str, argv: list[str], ports: list[int], log: Path,
                 env: dict | None = None, cwd: Path | None = None, stop_signal=signal.SIGTERM):
        self.name, self.argv, self.ports, self.log = name, argv, ports, Path(log)
        self.env, self.cwd, self.stop_signal = env, cwd, stop_signal
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                         env={**os.environ, **(self.env or {})}, start_new_session=True)
        try:
            for port in self.ports:
                wait_port(port, timeout, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}: {self.log_tail()}") from None
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def nginx(conf: Path, ports: list[int], log: Path) -> ServerProcess:
    # QUIT is nginx's graceful stop: workers finish the requests they hold.
    return ServerProcess("nginx", ["nginx", "-c", str(Path(conf).resolve()), "-g", "daemon off;"],
                         ports, log, stop_signal=signal.SIGQUIT)


def lighttpd(conf: Path, port: int, log: Path) -> ServerProcess:
    # INT is lighttpd's graceful shutdown.
    return ServerProcess("lighttpd", ["lighttpd", "-D", "-f", str(Path(conf).resolve())], [port], log,
                         stop_signal=signal.SIGINT)


def gunicorn(conf: Path, app: str, port: int, log: Path, env: dict | None = None,
             python: str = sys.executable) -> ServerProcess:
    return ServerProcess("gunicorn", [python, "-m", "gunicorn", "-c", str(Path(conf).resolve()), app],
                         [port], log, env=env)


SSHD_CONFIG = """Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid}
AuthorizedKeysFile {authorized}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
Subsystem sftp internal-sftp
"""


def sshd(folder: Path, port: int) -> tuple[ServerProcess, Path]:
    """An sshd on 127.0.0.1:``port`` trusting one fresh client key; returns (server, client key path)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)   # privilege separation directory
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    conf = folder / "sshd_config"
    conf.write_text(SSHD_CONFIG.format(port=port, host_key=host_key, pid=folder / "sshd.pid",
                                       authorized=authorized))
    return ServerProcess("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], [port],
                         folder / "sshd.log"), client_key
