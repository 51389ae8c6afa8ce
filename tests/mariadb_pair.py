"""A real MariaDB primary + replica with GTID replication and the app's least-privilege accounts.

``start_pair(base)`` is what the session fixture ``mariadb`` runs (tests/conftest.py); a module that has
to stop or lock its servers (tests/test_faults.py) starts a pair of its own with it, so the session's
pair is never disturbed. Replication goes through ``xintu.ops.replication.setup`` — the code path of
``xintu db replication setup``; the app talks through ``xintu_app`` (no SUPER, so ``read_only`` stops it
on the replica) and ``xintu_ro`` (SELECT + replica monitoring), as in production.
"""
from __future__ import annotations

import secrets
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from xintu.ops import replication
from xintu.ops.procs import MariaDBServer


@dataclass
class MariaDBPair:
    primary: MariaDBServer
    replica: MariaDBServer
    app_password: str
    ro_password: str

    def admin(self, server: MariaDBServer):
        return replication.admin_connect(server.admin_url)

    def app_url(self, database: str, server: MariaDBServer | None = None) -> str:
        return (server or self.primary).url("xintu_app", self.app_password, database)

    def ro_url(self, database: str) -> str:
        return self.replica.url("xintu_ro", self.ro_password, database)

    def wait_replica(self, timeout: float = 10.0) -> None:
        replication.wait_for(self.primary.admin_url, self.replica.admin_url, timeout)

    def create_database(self) -> str:
        name = f"xintu_t{secrets.token_hex(5)}"
        with closing(self.admin(self.primary)) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return name

    def drop_database(self, name: str) -> None:
        with closing(self.admin(self.primary)) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")


@contextmanager
def start_pair(base: Path):
    """Start both servers side by side, replicate, create the accounts; destroyed on exit."""
    primary = MariaDBServer(Path(base) / "primary", server_id=1)
    replica = MariaDBServer(Path(base) / "replica", server_id=2, replica=True)
    errors = []

    def start(server):
        try:
            server.start()
        except Exception as exc:  # surfaced below, in the caller's thread
            errors.append(exc)

    _both(start, primary, replica)
    try:
        if errors:
            raise errors[0]
        replication.setup(primary.admin_url, replica.admin_url)
        pair = MariaDBPair(primary, replica, secrets.token_urlsafe(12), secrets.token_urlsafe(12))
        with closing(pair.admin(primary)) as conn, conn.cursor() as cur:
            cur.execute("CREATE USER 'xintu_app'@'127.0.0.1' IDENTIFIED BY %s", (pair.app_password,))
            cur.execute("GRANT ALL PRIVILEGES ON `xintu\\_%`.* TO 'xintu_app'@'127.0.0.1'")
            cur.execute("CREATE USER 'xintu_ro'@'127.0.0.1' IDENTIFIED BY %s", (pair.ro_password,))
            cur.execute("GRANT SELECT ON `xintu\\_%`.* TO 'xintu_ro'@'127.0.0.1'")
            cur.execute("GRANT SLAVE MONITOR ON *.* TO 'xintu_ro'@'127.0.0.1'")
        pair.wait_replica()
        yield pair
    finally:
        _both(MariaDBServer.destroy, replica, primary)


def _both(action, *servers) -> None:
    threads = [threading.Thread(target=action, args=(s,)) for s in servers]
    [t.start() for t in threads]
    [t.join() for t in threads]
