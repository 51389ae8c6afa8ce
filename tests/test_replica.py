"""Primary → replica on two real mariadbd processes: routing, read_only, fallback, /readyz."""

import pymysql
import pytest
from peewee import OperationalError

from xintu import db
from xintu.models import User
from xintu.ops import replication


def test_row_written_on_primary_is_read_through_the_replica_helper(mysql_app, mariadb):
    with mysql_app.app_context():
        User.create(openid="o-primary-1", nickname="主库写入")
        mariadb.wait_replica()
        with db.stale_reads() as used:
            assert used is db.replica.obj
            port = used.execute_sql("SELECT @@port").fetchone()[0]
            assert port == mariadb.replica.port
            assert User.get(User.openid == "o-primary-1").nickname == "主库写入"
        # outside the helper, queries are back on the primary
        assert db.primary.execute_sql("SELECT @@port").fetchone()[0] == mariadb.primary.port


def test_app_user_cannot_write_on_the_replica(mariadb, mysql_database):
    mariadb.wait_replica()  # the CREATE DATABASE must have reached the replica first
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.replica.port, user="xintu_app",
                           password=mariadb.app_password, database=mysql_database)
    with conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as info:
            cur.execute("INSERT INTO users (openid, subscribed, credits_balance, created_at, "
                        "last_active_at) VALUES ('o-x', 0, 0, NOW(), NOW())")
    assert info.value.args[0] == 1290  # --read-only


def test_writes_inside_stale_reads_are_refused(mysql_app, mariadb):
    with mysql_app.app_context():
        with db.stale_reads():
            with pytest.raises(OperationalError):
                User.create(openid="o-should-fail")
        assert User.select().where(User.openid == "o-should-fail").count() == 0


def test_stopped_replica_makes_stale_reads_fall_back_and_readyz_say_so(mysql_app, mysql_client, mariadb):
    with mysql_app.app_context():
        User.create(openid="o-fallback")
    before = db.fallback_count()
    mariadb.replica.stop()
    try:
        with mysql_app.app_context():
            with db.stale_reads() as used:
                assert used is db.primary
                assert User.get(User.openid == "o-fallback")
        assert db.fallback_count() == before + 1
        body = mysql_client.get("/readyz").get_json()
        assert body["status"] == "ready"
        assert body["replica"]["used_for_stale_reads"] is False
        assert body["replica"]["reason"].startswith("unreachable")
        assert body["replica"]["fallbacks"] >= before + 1
    finally:
        mariadb.replica.start()
        db.reset_replica_health()
    mariadb.wait_replica()
    assert mysql_client.get("/readyz").get_json()["replica"]["used_for_stale_reads"] is True


def test_stopped_sql_thread_counts_as_lagging(mysql_app, mariadb):
    admin = mariadb.admin(mariadb.replica)
    with admin, admin.cursor() as cur:
        cur.execute("STOP SLAVE SQL_THREAD")
        try:
            with mysql_app.app_context():
                with db.stale_reads() as used:
                    assert used is db.primary
                assert db.replica_status()["reason"] == "replication stopped"
        finally:
            cur.execute("START SLAVE SQL_THREAD")
    mariadb.wait_replica()


def test_lag_over_the_bound_falls_back(mysql_app, mariadb):
    mysql_app.config["REPLICA_MAX_LAG"] = -1  # any lag (even 0 s) is over the bound
    db._state["max_lag"] = -1
    try:
        with mysql_app.app_context():
            with db.stale_reads() as used:
                assert used is db.primary
            assert db.replica_status()["reason"].startswith("lag 0s")
    finally:
        db._state["max_lag"] = 30


def test_replication_setup_is_idempotent(mariadb):
    again = replication.setup(mariadb.primary.admin_url, mariadb.replica.admin_url)
    assert again["changed"] == []
    assert again["replicating"] is True and again["read_only"] == 1
    assert again["canary_ms"] < 10_000


def test_replication_status_reports_gtid_positions(mariadb):
    status = replication.status(mariadb.replica.admin_url)
    assert status["io_running"] == "Yes" and status["sql_running"] == "Yes"
    assert status["using_gtid"] == "Slave_Pos" and status["gtid_slave_pos"]


@pytest.fixture
def cached_health_app(mariadb, mysql_database, tmp_path):
    """Like mysql_app, but the replica's health is cached for a minute, as in production."""
    from tests.conftest import _app

    app = _app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test-" + "k" * 40,
                "DATABASE_URL": mariadb.app_url(mysql_database),
                "REPLICA_URL": mariadb.ro_url(mysql_database), "REPLICA_CHECK_INTERVAL": 60})
    yield app
    db.close_all()
    for proxy in (db.primary, db.replica):
        if proxy.obj is not None and hasattr(proxy.obj, "close_all"):
            proxy.obj.close_all()
    db.reset_replica_health()


def _restart_replica(mariadb):
    if mariadb.replica.proc is None:
        mariadb.replica.start()
    db.reset_replica_health()
    mariadb.wait_replica()


def test_replica_dying_inside_the_health_window_falls_back_to_the_primary(cached_health_app, mariadb):
    from xintu.models import Release

    client = cached_health_app.test_client()
    with cached_health_app.app_context():
        Release.create(platform="windows", version="1.2.3", filename="x.exe", sha256="0" * 64, size=1)
    mariadb.wait_replica()
    first = client.get("/api/v1/releases/latest?platform=windows")
    assert first.status_code == 200 and first.get_json()["version"] == "1.2.3"
    assert db._cached_replica_status()["healthy"] is True  # cached for the next minute
    before = db.fallback_count()
    mariadb.replica.stop()
    try:
        again = client.get("/api/v1/releases/latest?platform=windows")
        assert again.status_code == 200, again.get_json()
        assert again.get_json()["version"] == "1.2.3"
        assert db.fallback_count() == before + 1
        # the failure is remembered: the next reads go straight to the primary
        assert db._cached_replica_status()["healthy"] is False
        assert client.get("/api/v1/releases/latest?platform=windows").status_code == 200
    finally:
        _restart_replica(mariadb)


def test_replica_killed_mid_query_is_retried_on_the_primary(cached_health_app, mariadb):
    ports = []

    def read():
        used = User._meta.database  # the database the models are bound to in this attempt
        ports.append(used.execute_sql("SELECT @@port").fetchone()[0])
        if len(ports) == 1:
            mariadb.replica.stop()  # the replica goes away between two queries of one read
        return User.select().where(User.openid == "o-mid-query").count()

    with cached_health_app.app_context():
        User.create(openid="o-mid-query")
        mariadb.wait_replica()
        before = db.fallback_count()
        try:
            assert db.stale_call(read) == 1
            assert ports == [mariadb.replica.port, mariadb.primary.port]
            assert db.fallback_count() == before + 1
        finally:
            _restart_replica(mariadb)
