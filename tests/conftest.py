"""Test harness: the flaskr-style app fixtures, and real MariaDB servers started once per session.

``mariadb`` starts a primary and a replica (own datadirs, free loopback ports) connected by GTID
replication, with the app's least-privilege accounts: see ``tests/mariadb_pair.py``.
"""

from __future__ import annotations

import secrets

import pytest

from tests.mariadb_pair import MariaDBPair, start_pair  # noqa: F401  (MariaDBPair: the fixture's type)

# Areas add their fixture modules here (e.g. "tests.member_fixtures").
pytest_plugins: list[str] = ["tests.classify_fixtures", "tests.member_fixtures", "tests.stats_fixtures",
                              "tests.edit_fixtures", "tests.wheel_fixtures", "tests.serve_fixtures"]


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    with start_pair(tmp_path_factory.mktemp("mariadb")) as pair:
        yield pair


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
