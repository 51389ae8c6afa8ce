"""MariaDB/MySQL primary → replica replication with GTID: setup, status, promote.

Used by ``xintu db replication …`` and by the test fixtures, so the tests exercise the operator's path.
Connections here are administrative (pymysql, not the app's pooled peewee databases): the URLs carry an
account allowed to create users on the primary and to run CHANGE MASTER on the replica.
"""

from __future__ import annotations

import secrets
import time
from contextlib import closing

import pymysql

from xintu.db import parse_mysql_url
from xintu.errors import Conflict, Unavailable

CANARY_DB = "xintu_meta"


def admin_connect(url: str, **extra):
    kwargs = parse_mysql_url(url)
    kwargs.pop("options")
    kwargs.pop("database")
    kwargs.setdefault("connect_timeout", 5)
    kwargs.update(extra)
    try:
        return pymysql.connect(autocommit=True, cursorclass=pymysql.cursors.DictCursor, **kwargs)
    except pymysql.err.OperationalError as exc:
        raise Unavailable(f"cannot connect to {kwargs['host']}:{kwargs['port']}: {exc.args[-1]}",
                          code="db_unreachable") from None


def _one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def _exec(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)


def replica_info(conn) -> dict:
    row = _one(conn, "SHOW REPLICA STATUS") or {}
    return row


def status(replica_url: str) -> dict:
    with closing(admin_connect(replica_url)) as conn:
        info = replica_info(conn)
        variables = _one(conn, "SELECT @@server_id AS server_id, @@read_only AS read_only, "
                               "@@gtid_slave_pos AS gtid_slave_pos, @@gtid_current_pos AS gtid_current_pos")
    if not info:
        return {"replicating": False, **variables}
    return {
        "replicating": info.get("Slave_IO_Running") == "Yes" and info.get("Slave_SQL_Running") == "Yes",
        "primary": f"{info.get('Master_Host')}:{info.get('Master_Port')}",
        "io_running": info.get("Slave_IO_Running"),
        "sql_running": info.get("Slave_SQL_Running"),
        "lag_seconds": info.get("Seconds_Behind_Master"),
        "using_gtid": info.get("Using_Gtid"),
        "last_io_error": info.get("Last_IO_Error") or None,
        "last_sql_error": info.get("Last_SQL_Error") or None,
        **variables,
    }


def _target(url: str) -> tuple[str, int]:
    kwargs = parse_mysql_url(url)
    return kwargs["host"], int(kwargs["port"])


def setup(primary_url: str, replica_url: str, *, user: str = "repl", replica_host: str | None = None,
          primary_host_for_replica: str | None = None, timeout: float = 10.0) -> dict:
    """Make the replica replicate from the primary; idempotent (a healthy setup is left alone).

    ``replica_host`` is the address the replica connects *from* (the replication account is limited to
    it); ``primary_host_for_replica`` the address the replica reaches the primary at.  Both default to
    what the URLs say.
    """
    started = time.perf_counter()
    p_host, p_port = _target(primary_url)
    r_host, _ = _target(replica_url)
    source_host = primary_host_for_replica or p_host
    account_host = replica_host or r_host
    changed = []
    with closing(admin_connect(primary_url)) as primary, closing(admin_connect(replica_url)) as replica:
        p_id = _one(primary, "SELECT @@server_id AS id")["id"]
        r_id = _one(replica, "SELECT @@server_id AS id")["id"]
        if p_id == r_id:
            raise Conflict(f"primary and replica share server_id {p_id}", code="same_server_id")
        info = replica_info(replica)
        healthy = (info.get("Master_Host") == source_host and int(info.get("Master_Port") or 0) == p_port
                   and info.get("Master_User") == user and info.get("Slave_IO_Running") == "Yes"
                   and info.get("Slave_SQL_Running") == "Yes")
        if not healthy:
            password = secrets.token_urlsafe(24)
            exists = _one(primary, "SELECT COUNT(*) AS n FROM mysql.user WHERE User=%s AND Host=%s",
                          (user, account_host))["n"]
            verb = "ALTER" if exists else "CREATE"
            _exec(primary, f"{verb} USER %s@%s IDENTIFIED BY %s", (user, account_host, password))
            _exec(primary, "GRANT REPLICATION SLAVE ON *.* TO %s@%s", (user, account_host))
            changed.append(f"{verb.lower()}d replication user {user}@{account_host}")
            if info:
                _exec(replica, "STOP SLAVE")
            _exec(replica, "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
                           "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                  (source_host, p_port, user, password))
            _exec(replica, "START SLAVE")
            changed.append(f"replica now follows {source_host}:{p_port} (GTID slave_pos)")
        if not _one(replica, "SELECT @@read_only AS ro")["ro"]:
            _exec(replica, "SET GLOBAL read_only = ON")
            changed.append("replica set read_only=ON")
        canary = verify_canary(primary, replica, timeout)
    return {"changed": changed, "canary_ms": canary,
            "seconds": round(time.perf_counter() - started, 3), **status(replica_url)}


def verify_canary(primary, replica, timeout: float) -> float:
    """Write a token on the primary and wait (MASTER_GTID_WAIT) until the replica has it."""
    started = time.perf_counter()
    token = secrets.token_hex(8)
    _exec(primary, f"CREATE DATABASE IF NOT EXISTS {CANARY_DB} CHARACTER SET utf8mb4")
    _exec(primary, f"CREATE TABLE IF NOT EXISTS {CANARY_DB}.replication_canary "
                   "(id TINYINT PRIMARY KEY, token VARCHAR(32) NOT NULL, written_at DATETIME(6) NOT NULL)")
    _exec(primary, f"REPLACE INTO {CANARY_DB}.replication_canary VALUES (1, %s, NOW(6))", (token,))
    position = _one(primary, "SELECT @@gtid_binlog_pos AS pos")["pos"]
    waited = _one(replica, "SELECT MASTER_GTID_WAIT(%s, %s) AS w", (position, timeout))["w"]
    if waited != 0:
        info = replica_info(replica)
        error = info.get("Last_IO_Error") or info.get("Last_SQL_Error") or "no error reported"
        raise Unavailable(f"canary write did not reach the replica within {timeout}s ({error})",
                          code="replication_not_flowing")
    got = _one(replica, f"SELECT token FROM {CANARY_DB}.replication_canary WHERE id=1")
    if not got or got["token"] != token:
        raise Unavailable("replica returned a different canary token", code="replication_not_flowing")
    return round((time.perf_counter() - started) * 1000, 1)


def wait_for(primary_url: str, replica_url: str, timeout: float = 10.0) -> None:
    """Block until everything written on the primary so far is applied on the replica."""
    with closing(admin_connect(primary_url)) as primary, closing(admin_connect(replica_url)) as replica:
        position = _one(primary, "SELECT @@gtid_binlog_pos AS pos")["pos"]
        if _one(replica, "SELECT MASTER_GTID_WAIT(%s, %s) AS w", (position, timeout))["w"] != 0:
            raise Unavailable(f"replica did not catch up within {timeout}s", code="replication_lagging")


def promote(replica_url: str) -> dict:
    """Stop replicating and make the replica writable; the caller repoints the app at it."""
    with closing(admin_connect(replica_url)) as replica:
        info = replica_info(replica)
        if info:
            _exec(replica, "STOP SLAVE")
            _exec(replica, "RESET SLAVE ALL")
        _exec(replica, "SET GLOBAL read_only = OFF")
        pos = _one(replica, "SELECT @@gtid_current_pos AS pos")["pos"]
    host, port = _target(replica_url)
    return {"promoted": f"{host}:{port}", "gtid_current_pos": pos,
            "was_following": f"{info.get('Master_Host')}:{info.get('Master_Port')}" if info else None,
            "next_steps": [f"set XINTU_DATABASE_URL to mysql://<app user>@{host}:{port}/<db> on app hosts",
                           "set read_only=OFF in this server's my.cnf so a restart keeps it writable",
                           "rebuild a new replica from this server and run `xintu db replication setup`"]}
