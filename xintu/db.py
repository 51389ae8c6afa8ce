"""Databases: a primary that takes every write, and an optional read replica for stale-tolerant reads.

Both are deferred (``DatabaseProxy``) and initialised from URLs by ``init_db(config)``:
``mysql://user:pass@host:3306/xintu`` (pymysql, pooled, utf8mb4) or ``sqlite:///path/to/file``.

Reads that tolerate staleness (stats, admin listings, reports) go through exactly one helper::

    with stale_reads():
        rows = list(RequestLog.select()...)

Inside it, model queries run on the replica when it is reachable and its lag is within
``REPLICA_MAX_LAG``; otherwise they run on the primary and the fallback is logged and counted
(``fallback_count()``, the ``xintu_replica_fallback_total`` metric, ``/readyz``).  Models use
``ThreadSafeDatabaseMetadata`` so the re-binding is per thread, not process-global.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from urllib.parse import parse_qsl, unquote, urlsplit

from peewee import DatabaseProxy, InterfaceError, MySQLDatabase, OperationalError, SqliteDatabase
from playhouse.pool import PooledMySQLDatabase

from xintu import metrics
from xintu.errors import ConfigError

log = logging.getLogger(__name__)

primary = DatabaseProxy()
replica = DatabaseProxy()

_state = {"replica_configured": False, "max_lag": 30, "interval": 5.0}
_health_lock = threading.Lock()
_health = {"checked_at": 0.0, "status": None}
_fallbacks = {"count": 0, "last_reason": None}
# The models of xintu.models, registered as they are defined (this module never imports them):
# what stale_reads() binds to the replica.
_models: list = []


def register_model(model) -> None:
    if model not in _models:
        _models.append(model)


def parse_mysql_url(url: str) -> dict:
    """pymysql connect kwargs (+ ``database``) from ``mysql://user:pass@host:port/db?opt=…``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pool"):
        raise ConfigError(f"not a MySQL/MariaDB URL: {parts.scheme}://…")
    options = dict(parse_qsl(parts.query))
    kwargs = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
        "charset": "utf8mb4",
    }
    if "unix_socket" in options:
        kwargs["unix_socket"] = options.pop("unix_socket")
    kwargs["options"] = options
    return kwargs


# A pooled connection handed back less than this many seconds ago is handed out again without a ping.
PING_IDLE_SECONDS = 1.0


class Pool(PooledMySQLDatabase):
    """The pymysql pool, without two round trips per request that peewee's pool makes on every checkout:

    - peewee rolls back every connection at check-in (pymysql has no ``in_transaction``); this one rolls
      back only when the server says a transaction is open (``SERVER_STATUS_IN_TRANS`` of the last reply);
    - peewee pings at every checkout; this one only when the connection has been idle ``PING_IDLE_SECONDS``.
      A server that went away within that second fails the request's first query instead (our JSON 503,
      ``database_unavailable``); pymysql then marks the connection closed and it is never reused.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._returned_at: dict[int, float] = {}

    def _is_closed(self, conn):
        returned = self._returned_at.get(self.conn_key(conn))
        if conn.open and returned is not None and time.monotonic() - returned < PING_IDLE_SECONDS:
            return False
        return super()._is_closed(conn)

    def _can_reuse(self, conn):
        from pymysql.constants.SERVER_STATUS import SERVER_STATUS_IN_TRANS

        if not conn.open:
            return False
        if (conn.server_status or 0) & SERVER_STATUS_IN_TRANS:
            try:
                conn.rollback()
            except Exception:
                return False
        self._returned_at[self.conn_key(conn)] = time.monotonic()
        return True

    def _close_raw(self, conn):
        self._returned_at.pop(self.conn_key(conn), None)
        super()._close_raw(conn)


def database_from_url(url: str, *, max_connections: int = 16, stale_timeout: int = 300,
                      connect_timeout: int = 5):
    """Build (not connect) a peewee database for a URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        path = path[1:] if path.startswith("//") else path  # sqlite:////abs → /abs, sqlite:///rel → rel
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # BEGIN IMMEDIATE: in WAL mode a deferred transaction that reads, then writes after another connection
        # wrote, fails at once with "database is locked" (the busy timeout does not apply to that upgrade);
        # taking the write lock at BEGIN waits up to busy_timeout instead. The request log is written from a
        # background thread, so two writers at once are normal.
        return SqliteDatabase(path or ":memory:", lock_type="IMMEDIATE", pragmas={
            "journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000, "synchronous": "normal"})
    if parts.scheme in ("mysql", "mariadb", "mysql+pool"):
        from pymysql.constants import CLIENT

        kwargs = parse_mysql_url(url)
        options = kwargs.pop("options")
        name = kwargs.pop("database")
        kwargs.update(
            # UPDATE returns matched rows, so a guarded debit's rowcount means "guard held".
            client_flag=CLIENT.FOUND_ROWS,
            connect_timeout=int(options.pop("connect_timeout", connect_timeout)),
            max_connections=int(options.pop("max_connections", max_connections)),
            stale_timeout=int(options.pop("stale_timeout", stale_timeout)),
        )
        return Pool(name, **kwargs)
    raise ConfigError(f"unsupported database URL scheme {parts.scheme!r} (use mysql:// or sqlite:///)")


def init_db(config: dict) -> None:
    primary.initialize(database_from_url(
        config["DATABASE_URL"], max_connections=config["DB_MAX_CONNECTIONS"],
        stale_timeout=config["DB_STALE_TIMEOUT"]))
    if config.get("REPLICA_URL"):
        replica.initialize(database_from_url(
            config["REPLICA_URL"], max_connections=config["DB_MAX_CONNECTIONS"],
            stale_timeout=config["DB_STALE_TIMEOUT"], connect_timeout=2))
        _state["replica_configured"] = True
    else:
        replica.initialize(None)
        _state["replica_configured"] = False
    _state["max_lag"] = config["REPLICA_MAX_LAG"]
    _state["interval"] = float(config["REPLICA_CHECK_INTERVAL"])
    reset_replica_health()


def is_mysql(db=None) -> bool:
    db = db or primary
    return isinstance(getattr(db, "obj", db), MySQLDatabase)


def atomic():
    """A transaction on the primary (nested calls become savepoints)."""
    return primary.atomic()


def close_all() -> None:
    for proxy in (primary, replica):
        if proxy.obj is not None and not proxy.is_closed():
            proxy.close()


def ping(db) -> None:
    db.execute_sql("SELECT 1").fetchone()


def replica_status() -> dict:
    """Ask the replica itself: reachable? threads running? lag in seconds?"""
    if not _state["replica_configured"]:
        return {"configured": False, "healthy": False, "reason": "no replica configured"}
    status = {"configured": True, "healthy": False, "lag": None, "reason": None}
    try:
        with replica.connection_context():
            if is_mysql(replica):
                cursor = replica.execute_sql("SHOW REPLICA STATUS")
                row = cursor.fetchone()
                names = [col[0] for col in cursor.description or ()]
                info = dict(zip(names, row, strict=False)) if row else {}
                lag = info.get("Seconds_Behind_Master")
                status.update(lag=lag, io_running=info.get("Slave_IO_Running"),
                              sql_running=info.get("Slave_SQL_Running"),
                              last_error=info.get("Last_SQL_Error") or info.get("Last_IO_Error") or None)
                if not info:
                    status["reason"] = "replica is not replicating"
                elif lag is None:
                    status["reason"] = "replication stopped"
                elif lag > _state["max_lag"]:
                    status["reason"] = f"lag {lag}s > {_state['max_lag']}s"
                else:
                    status["healthy"] = True
            else:
                ping(replica)
                status.update(lag=0, healthy=True)
    except (OperationalError, InterfaceError) as exc:
        status["reason"] = f"unreachable: {exc.args[-1] if exc.args else exc}"
    return status


def reset_replica_health() -> None:
    with _health_lock:
        _health.update(checked_at=0.0, status=None)


def _cached_replica_status() -> dict:
    now = time.monotonic()
    with _health_lock:
        if _health["status"] is not None and now - _health["checked_at"] < _state["interval"]:
            return _health["status"]
    status = replica_status()
    with _health_lock:
        _health.update(checked_at=now, status=status)
    return status


def fallback_count() -> int:
    return _fallbacks["count"]


def _count_fallback(reason: str) -> None:
    _fallbacks["count"] += 1
    if reason != _fallbacks["last_reason"]:
        log.warning("replica not used for stale reads, falling back to primary: %s", reason)
    _fallbacks["last_reason"] = reason
    metrics.REPLICA_FALLBACKS.inc()


@contextmanager
def stale_reads():
    """Route model queries in this block to the replica if healthy; yields the database used."""
    if not _state["replica_configured"]:
        yield primary
        return
    status = _cached_replica_status()
    if not status["healthy"]:
        _count_fallback(status["reason"])
        yield primary
        return
    _fallbacks["last_reason"] = None
    db = replica.obj
    opened = db.connect(reuse_if_open=True)
    try:
        with db.bind_ctx(tuple(_models), bind_refs=False, bind_backrefs=False):
            yield db
    finally:
        if opened:
            db.close()


def stale_call(fn, *args, **kwargs):
    """Run ``fn`` under ``stale_reads()``; if the replica fails — when connecting (it died inside the
    health-cache window) or mid-query — mark it unhealthy and run ``fn`` again on the primary."""
    used = None
    try:
        with stale_reads() as used:
            return fn(*args, **kwargs)
    except (OperationalError, InterfaceError) as exc:
        # ``used`` is None when stale_reads() failed before yielding: only the replica connects there.
        if used is primary or not _state["replica_configured"]:
            raise
        reason = f"query failed: {exc.args[-1] if exc.args else exc}"
        with _health_lock:
            _health.update(checked_at=time.monotonic(),
                           status={"configured": True, "healthy": False, "lag": None, "reason": reason})
        _count_fallback(reason)
        return fn(*args, **kwargs)
