"""request_log rows and cache hit counts, written in batches so they never dominate a cache hit.

A cache hit is one indexed SELECT (~0.2 ms); an INSERT with its commit per request would cost more than
the hit itself (an fsync on SQLite). Rows are buffered per process and flushed with one multi-row INSERT
when 100 are waiting, when the oldest is a second old, by a small daemon thread, and at exit. Each row
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

from xintu import db
from xintu.models import ClassifyCache, RequestLog
from xintu.timeutil import utcnow

log = logging.getLogger(__name__)
MAX_ROWS = 100
MAX_AGE = 1.0


class StatsBuffer:
    def __init__(self):
        self.lock = threading.Lock()
        self.rows: list[tuple[object, dict]] = []
        self.hits: Counter = Counter()
        self.oldest = 0.0
        self._flusher_pid = None

    def _db(self):
        return db.primary.obj

    def log(self, *, endpoint: str, client: str | None, method: str | None, category: str | None,
            latency_ms: int, ok: bool = True, status: int = 200, batch_size: int | None = None) -> None:
        row = {"ts": utcnow(), "endpoint": endpoint[:64], "client": (client or "")[:64] or None,
               "method": method, "category": category, "latency_ms": int(latency_ms), "ok": ok,
               "status": status, "batch_size": batch_size}
        with self.lock:
            if not self.rows:
                self.oldest = time.monotonic()
            self.rows.append((self._db(), row))
            due = len(self.rows) >= MAX_ROWS or time.monotonic() - self.oldest >= MAX_AGE
        self._ensure_flusher()
        if due:
            self.flush()

    def hit(self, cache_id: int) -> None:
        self.hit_many([cache_id])

    def hit_many(self, cache_ids: list[int]) -> None:
        if not cache_ids:
            return
        database = self._db()
        with self.lock:
            for cache_id in cache_ids:
                self.hits[(database, cache_id)] += 1

    def flush(self) -> int:
        """Write everything buffered; returns the number of log rows written. Never raises."""
        from peewee import Case

        with self.lock:
            rows, self.rows = self.rows, []
            hits, self.hits = self.hits, Counter()
        written = 0
        for database in {d for d, _ in rows} | {d for d, _ in hits}:
            mine = [r for d, r in rows if d is database]
            counts = {cid: n for (d, cid), n in hits.items() if d is database}
            opened = database.is_closed()  # on a request thread the connection is the request's: keep it
            try:
                if opened:
                    database.connect()
                with database.atomic():
                    if mine:
                        RequestLog.insert_many(mine).execute(database)
                    if counts:
                        bump = Case(ClassifyCache.id, [(cid, n) for cid, n in counts.items()], 0)
                        (ClassifyCache.update(hits=ClassifyCache.hits + bump, last_hit_at=utcnow())
                         .where(ClassifyCache.id.in_(list(counts))).execute(database))
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
            time.sleep(MAX_AGE)
            if self.rows or self.hits:
                self.flush()


buffer = StatsBuffer()
atexit.register(buffer.flush)
