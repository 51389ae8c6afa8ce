"""Run servers from Debian's packages as plain local processes (no systemd): for development stacks,
benchmarks and the test suite.  Every instance lives in its own folder and on its own loopback port.

MariaDB gets its my.cnf from the same template as production (``conf/mariadb``), with durability
relaxed for speed; nginx, lighttpd, gunicorn and sshd run in the foreground under our own process, so
stopping one is a signal to a PID we started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from xintu.ops.render import render_mariadb_node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# Test and benchmark instances: small buffer pool, no fsync per commit; everything else as in production.
LOCAL_DB = {"max_connections": 200, "buffer_pool_mb": 64, "binlog_expire_days": 1, "durable": False}


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

        node = {"port": self.port, "bind": "127.0.0.1", "socket": self.socket, "server_id": self.server_id,
                "pid_file": self.base / "mysqld.pid", "datadir": self.datadir, "log_error": self.log,
                "tmpdir": self.base / "tmp"}
        return render_mariadb_node(LOCAL_DB, "replica" if self.replica else "primary", node)

    def install(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.cnf.write_text(self.config_text())
        if (self.datadir / "mysql").exists():
            return
        # A private tmpdir: parallel installs sharing /tmp intermittently lose each other's temp tables.
        (self.base / "tmp").mkdir(exist_ok=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                        f"--tmpdir={self.base / 'tmp'}",
                        "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self, timeout: float = 30.0) -> MariaDBServer:
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


# --- web tier, app tier and sshd: foreground processes running our rendered configs -------------

class ServerProcess:
    """One foreground server process; ``with`` starts it and stops it again."""

    def __init__(self, name: str, argv: list[str], ports: list[int], log: Path,
                 env: dict | None = None, cwd: Path | None = None, stop_signal=signal.SIGTERM):
        self.name, self.argv, self.ports, self.log = name, argv, ports, Path(log)
        self.env, self.cwd, self.stop_signal = env, cwd, stop_signal
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> ServerProcess:
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

    def children(self) -> list[int]:
        """PIDs of the processes this one started (gunicorn's workers, nginx's), from Linux's /proc."""
        pid = self.proc.pid
        try:
            return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
        except FileNotFoundError:   # exited
            return []

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


def lighttpd(conf: Path, ports: int | list[int], log: Path) -> ServerProcess:
    # INT is lighttpd's graceful shutdown.
    ports = [ports] if isinstance(ports, int) else list(ports)
    return ServerProcess("lighttpd", ["lighttpd", "-D", "-f", str(Path(conf).resolve())], ports, log,
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
