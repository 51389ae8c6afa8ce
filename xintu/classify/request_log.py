"""request_log rows and cache hit counts, written in batches so they never dominate a cache hit.

A cache hit is one indexed SELECT (~0.2 ms); an INSERT with its commit per request would cost more than
the hit itself (an fsync on SQLite). Rows are buffered per process and flushed with one multi-row INSERT
when 500 are waiting or the oldest is a second old, by a small daemon thread (never on the request's own
thread: a request only wakes it), and at exit. Each row
remembers the database it belongs to, so a flush never writes into another app's database (tests build
many apps in one process). Losing at most a second of log rows in a crash is the accepted price.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from functools import lru_cache

from xintu import db
from xintu.models import ClassifyCache, RequestLog
from xintu.timeutil import utcnow

log = logging.getLogger(__name__)
MAX_ROWS = 500    # a flush per 500 rows or per second: one INSERT and one commit for many requests
MAX_AGE = 1.0


class StatsBuffer:
    def __init__(self):
        self.lock = threading.Lock()
        self.rows: list[tuple[object, dict]] = []
        self.hits: dict[object, Counter] = {}   # database → cache row id → hits since the last flush
        self.oldest = 0.0
        self._flusher_pid = None
        self._due = threading.Event()

    def _db(self):
        return db.primary.obj

    def log(self, *, endpoint: str, client: str | None, method: str | None, category: str | None,
            latency_ms: int, ok: bool = True, status: int = 200, batch_size: int | None = None) -> None:
        row = {"ts": time.time(), "endpoint": endpoint[:64], "client": (client or "")[:64] or None,
               "method": method, "category": category, "latency_ms": int(latency_ms), "ok": ok,
               "status": status, "batch_size": batch_size}
        with self.lock:
            if not self.rows:
                self.oldest = time.monotonic()
            self.rows.append((self._db(), row))
            due = len(self.rows) >= MAX_ROWS or time.monotonic() - self.oldest >= MAX_AGE
        self._ensure_flusher()
        if due:
            self._due.set()

    def hit(self, cache_id: int) -> None:
        self.hit_many([cache_id])

    def hit_many(self, cache_ids: list[int]) -> None:
        if not cache_ids:
            return
        database = self._db()
        with self.lock:
            counts = self.hits.get(database)
            if counts is None:
                counts = self.hits[database] = Counter()
            counts.update(cache_ids)

    def flush(self) -> int:
        """Write everything buffered; returns the number of log rows written. Never raises."""
        with self.lock:
            rows, self.rows = self.rows, []
            hits, self.hits = self.hits, {}
        written = 0
        for database in {d for d, _ in rows} | set(hits):
            mine = [r for d, r in rows if d is database]
            counts = hits.get(database, {})
            opened = database.is_closed()  # on a request thread the connection is the request's: keep it
            try:
                if opened:
                    database.connect()
                with database.atomic():
                    if mine:
                        _insert_rows(database, mine)
                    pairs = list(counts.items())
                    for chunk in (pairs[i:i + 500] for i in range(0, len(pairs), 500)):
                        database.execute_sql(_bump_sql(len(chunk), database.param),
                                             [x for pair in chunk for x in pair] + [_db_now()]
                                             + [cid for cid, _ in chunk])
                written += len(mine)
            except Exception as exc:  # stats must never break classification
                log.warning("dropped %d request_log rows and %d hit counts: %s", len(mine), len(counts), exc)
            finally:
                if opened and not database.is_closed():
                    database.close()
        return written

    def _ensure_flusher(self) -> None:
        if self._flusher_pid == os.getpid():  # one thread per process, restarted after a fork
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._run, name="request-log-flusher", daemon=True).start()

    def _run(self) -> None:
        pid = os.getpid()
        while self._flusher_pid == pid:
            self._due.wait(MAX_AGE)
            self._due.clear()
            if self.rows or self.hits:
                self.flush()


# Flushing is raw SQL made once per shape: building peewee's multi-row INSERT was most of a flush's cost,
# and a flush runs in the same process as the requests it logs.
_LOG_FIELDS = ("ts", "endpoint", "client", "method", "category", "latency_ms", "ok", "status", "batch_size")


def _insert_rows(database, rows: list[dict]) -> None:
    fields = [RequestLog._meta.fields[name] for name in _LOG_FIELDS]
    sql = (f"INSERT INTO {RequestLog._meta.table_name} ({', '.join(f.column_name for f in fields)}) "
           f"VALUES ({', '.join([database.param] * len(fields))})")
    # "ts" was logged as time.time() (cheaper on the request's thread) and is stored as naive UTC
    stamped = ({**row, "ts": datetime.fromtimestamp(row["ts"], UTC).replace(tzinfo=None)} for row in rows)
    database.cursor().executemany(sql, [tuple(f.db_value(row[f.name]) for f in fields) for row in stamped])


@lru_cache(maxsize=64)
def _bump_sql(n: int, param: str) -> str:
    meta = ClassifyCache._meta
    id_col, hits_col = meta.fields["id"].column_name, meta.fields["hits"].column_name
    cases = " ".join([f"WHEN {param} THEN {param}"] * n)
    return (f"UPDATE {meta.table_name} SET {hits_col} = {hits_col} + CASE {id_col} {cases} ELSE 0 END, "
            f"{meta.fields['last_hit_at'].column_name} = {param} WHERE {id_col} IN ({', '.join([param] * n)})")


def _db_now():
    return ClassifyCache._meta.fields["last_hit_at"].db_value(utcnow())


buffer = StatsBuffer()
atexit.register(buffer.flush)
