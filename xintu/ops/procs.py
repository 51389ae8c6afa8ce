"""Run servers from Debian's packages as plain local processes (no systemd): for development stacks,
benchmarks and the test suite.  Every instance lives in its own folder and on its own loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


MARIADB_CNF = """[mariadbd]
port = {port}
bind-address = 127.0.0.1
socket = {socket}
pid-file = {pid}
datadir = {datadir}
log_error = {log}
server_id = {server_id}
log_bin = mysql-bin
binlog_format = ROW
gtid_strict_mode = ON
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
skip-name-resolve
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
{extra}"""


class MariaDBServer:
    """A mariadbd with its own datadir; ``replica=True`` starts it read_only."""

    def __init__(self, base: str | os.PathLike, *, server_id: int, port: int | None = None,
                 replica: bool = False, cnf_text: str | None = None):
        self.base = Path(base)
        self.server_id = server_id
        self.port = port or free_port()
        self.replica = replica
        self.datadir = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.cnf = self.base / "my.cnf"
        self.log = self.base / "error.log"
        self._cnf_text = cnf_text
        self.proc: subprocess.Popen | None = None

    def url(self, user: str = "root", password: str = "", database: str = "") -> str:
        auth = f"{user}:{password}" if password else user
        return f"mysql://{auth}@127.0.0.1:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return self.url("root")

    def config_text(self) -> str:
        if self._cnf_text is not None:
            return self._cnf_text
        return MARIADB_CNF.format(port=self.port, socket=self.socket, pid=self.base / "mysqld.pid",
                                  datadir=self.datadir, log=self.log, server_id=self.server_id,
                                  extra="read_only = ON\n" if self.replica else "")

    def install(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.cnf.write_text(self.config_text())
        if (self.datadir / "mysql").exists():
            return
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self, timeout: float = 30.0) -> "MariaDBServer":
        self.install()
        self.proc = subprocess.Popen(["mariadbd", f"--defaults-file={self.cnf}", "--user=root"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited ({self.proc.returncode}): {self._log_tail()}")
            ping = subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot",
                                   "ping"], capture_output=True)
            if ping.returncode == 0:
                return self
            time.sleep(0.05)
        raise TimeoutError(f"mariadbd not ready after {timeout}s: {self._log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot",
                            "shutdown"], capture_output=True, timeout=30)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"
