"""Test harness: the flaskr-style app fixtures, and real MariaDB servers started once per session.

``mariadb`` starts a primary and a replica (own datadirs, free loopback ports) and connects them with
GTID replication through ``xintu.ops.replication.setup`` — the code path of ``xintu db replication setup``.
The app then talks to them through least-privilege accounts, as in production: ``xintu_app`` (no SUPER,
so ``read_only`` stops it on the replica) and ``xintu_ro`` (SELECT + replica monitoring).
"""

from __future__ import annotations

import secrets
import threading
from contextlib import closing
from dataclasses import dataclass

import pytest

from xintu.ops import replication
from xintu.ops.procs import MariaDBServer

# Areas add their fixture modules here (e.g. "tests.member_fixtures").
pytest_plugins: list[str] = ["tests.classify_fixtures", "tests.member_fixtures", "tests.stats_fixtures",
                              "tests.edit_fixtures", "tests.wheel_fixtures"]


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


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    base = tmp_path_factory.mktemp("mariadb")
    primary = MariaDBServer(base / "primary", server_id=1)
    replica = MariaDBServer(base / "replica", server_id=2, replica=True)
    errors = []

    def start(server):
        try:
            server.start()
        except Exception as exc:  # surfaced below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in (primary, replica)]
    [t.start() for t in threads]
    [t.join() for t in threads]
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
        for server in (replica, primary):
            server.destroy()


def _app(config: dict):
    from xintu import db, migrations
    from xintu.app import create_app

    app = create_app({"ENV": "testing", "SANDBOX": False, "REPLICA_CHECK_INTERVAL": 0, **config})
    migrations.migrate(db.primary.obj)
    return app


@pytest.fixture
def app(tmp_path):
    """The app on a fresh SQLite file in a temp instance folder (the embedded default)."""
    app = _app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test-" + "k" * 40})
    yield app
    from xintu import db

    db.close_all()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def mysql_database(mariadb):
    name = mariadb.create_database()
    yield name
    mariadb.drop_database(name)


@pytest.fixture
def mysql_app(mariadb, mysql_database, tmp_path):
    """The app on a fresh database on the real MariaDB primary, stale reads on the real replica."""
    app = _app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test-" + "k" * 40,
                "DATABASE_URL": mariadb.app_url(mysql_database),
                "REPLICA_URL": mariadb.ro_url(mysql_database)})
    yield app
    from xintu import db

    db.close_all()
    for proxy in (db.primary, db.replica):
        if proxy.obj is not None and hasattr(proxy.obj, "close_all"):
            proxy.obj.close_all()


@pytest.fixture
def mysql_client(mysql_app):
    return mysql_app.test_client()


@pytest.fixture
def device_token(app):
    """A registered device's bearer token on the SQLite app."""
    return _register(app.test_client())


@pytest.fixture
def mysql_device_token(mysql_app):
    return _register(mysql_app.test_client())


def _register(test_client) -> str:
    response = test_client.post("/api/v1/clients", json={"client_id": "test-" + secrets.token_hex(6),
                                                        "platform": "windows"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]
