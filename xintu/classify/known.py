"""KnownHashes: which hashes the cache could possibly answer, kept per process, so check-cache skips the
database for the hashes it certainly does not hold.

A client scanning an album asks about 100 hashes at a time, and most of them were never seen: for those
the one SELECT is pure cost (on MariaDB more than the whole rest of the request). This is a Bloom filter
over every ``classify_cache.image_sha256`` and every ``classify_claims.original_sha256``: "absent" is
certain, "present" may be wrong (about 1 in 1 800 at the sizing below), and a present hash still goes to
the database for its answer, its version and its claimant. Keys are SHA-256 digests already, so the bit
positions are slices of the digest itself; no second hash is computed (which is why this is a few numpy
lines rather than a Bloom-filter library, which would hash every key again).

Fresh enough, never wrong in the dangerous direction:
- this process adds what it stores (``add``) at once;
- other workers on this host say they stored something by changing 8 bytes of a shared file
  (``Signal``, ``<instance>/known-hashes.signal``): a worker that sees a change polls before it answers, so
  a check after an upload is answered from what the upload stored whichever worker takes it;
- rows other hosts store are read by a poll of both tables by primary key
  (``id > the highest seen − LOOKBACK``: an insert that committed out of order is read too), run by a
  request at most every ``refresh`` seconds; a filter not polled within ``2 × refresh`` is not used;
- the first full read runs in a background thread; until it is done every lookup asks the database;
- rows are never removed (a deleted row only costs a database miss); when the filter fills past its
  sizing, a larger one is built the same way and swapped in.
So check-cache may call a hash another host stored in the last ``refresh`` seconds missing. The client
then uploads it, and the upload — which never consults this filter — is answered from the cache without
a model call. The classify path itself always asks the database.
"""
from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from functools import lru_cache
from itertools import compress

import numpy as np

log = logging.getLogger(__name__)

HASHES = 4            # bit positions per key: the digest's first four 32-bit words (maybe() relies on 4)
BITS_PER_KEY = 24     # at this sizing, with 4 positions, a false "present" is about 1 in 1 800
MIN_BITS = 1 << 20    # 128 KiB: the smallest filter (it stays in the CPU cache; a full one is rebuilt twice as large)
MAX_BITS = 1 << 32    # 512 MiB: positions are 32-bit slices (about 180 million keys at the sizing above)
LOOKBACK = 256        # ids re-read below the highest seen, for inserts that committed out of order
CHUNK = 50_000        # rows per read
RETRY = 30.0          # seconds before a failed full read is tried again


def _positions(hashes: list[str], mask: np.uint32) -> np.ndarray:
    """(len(hashes), HASHES) bit positions; ``hashes`` are 64 hex digits each."""
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint32).reshape(len(hashes), 8)[:, :HASHES] & mask


class _Filter:
    def __init__(self, capacity: int, min_bits: int = MIN_BITS):
        bits = min_bits
        while bits < capacity * BITS_PER_KEY and bits < MAX_BITS:
            bits <<= 1
        self.capacity, self.mask = bits // BITS_PER_KEY, np.uint32(bits - 1)
        self.words = np.zeros(bits // 32, dtype=np.uint32)
        self.count = 0

    def add(self, hashes: list[str], new: int | None = None) -> None:
        """Set the bits of ``hashes``; ``new``: how many of them were not in it before (default all)."""
        if hashes:
            pos = _positions(hashes, self.mask).ravel()
            np.bitwise_or.at(self.words, pos >> 5, np.left_shift(np.uint32(1), pos & 31))
            self.count += len(hashes) if new is None else new

    def maybe(self, hashes: list[str]) -> np.ndarray:
        pos = _positions(hashes, self.mask)
        bits = ((self.words[pos >> 5] >> (pos & 31)) & 1).astype(np.uint8)   # (n, 4) zeros and ones
        # All four set: the row's four bytes read as one 32-bit word are 0x01010101, in either byte order;
        # half the time of .all(axis=1), whose reduction machinery costs more than the test itself.
        return bits.view(np.uint32).ravel() == 0x01010101


class Signal:
    """8 bytes in a file every worker of a host maps: a writer changes them after its row is committed, a
    reader compares them with what it saw at its last poll (a read of shared memory, no system call).
    Writers race harmlessly: any change means "poll", and every write follows its commit. None of it is
    needed for correctness across hosts, which the timed poll covers; a file that cannot be opened (a
    read-only instance folder) leaves only that."""

    def __init__(self, path: str | None):
        self._map = None
        if not path:
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < 8:
                    os.ftruncate(fd, 8)
                self._map = mmap.mmap(fd, 8)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("known hashes: no shared signal at %s (%s); other workers' rows wait for the poll",
                        path, exc)

    def read(self) -> bytes:
        return self._map[:8] if self._map is not None else b""

    def bump(self) -> None:
        if self._map is not None:
            self._map[:8] = os.urandom(8)


class KnownHashes:
    """One per CacheService (so per app and database). ``sources``: the (model, id field, hash field) of
    each table whose hashes count; ``refresh`` seconds between polls (≤ 0: the filter is off);
    ``signal_path``: the host's shared Signal file (None: timed polls only)."""

    def __init__(self, sources: list[tuple], refresh: float, clock=time.monotonic, min_bits: int = MIN_BITS,
                 signal_path: str | None = None):
        self.sources, self.refresh, self._clock, self.min_bits = sources, refresh, clock, min_bits
        self.signal = Signal(signal_path if refresh > 0 else None)
        self._signalled = b""               # the signal as this worker's last poll began
        self._lock = threading.Lock()        # one poll or load at a time
        self._filter: _Filter | None = None
        self._high: dict[str, int] = {}
        self._polled = 0.0
        self._database = None
        self._loading_pid = None           # the process whose thread is reading a whole filter now
        self._failed_at = float("-inf")
        self._growing = False
        self._recent: set[tuple[str, int]] = set()   # (table, id) read in the last LOOKBACK window
        self._pending: list[str] | None = None   # while a filter is being read: what this process stored

    @property
    def ready(self) -> bool:
        return self._filter is not None

    # -- the request path -----------------------------------------------------------------------
    def maybe_stored(self, hashes: list[str], database) -> list[str]:
        """``hashes`` (lower-case hex) without those certainly not stored in ``database``, in their order; all
        of them while the filter is off, loading, or could not be polled recently."""
        if self.refresh <= 0 or not hashes:
            return hashes
        if self._database is not database or self._filter is None:
            self._start(database)
            return hashes
        if self._clock() - self._polled >= self.refresh or self.signal.read() != self._signalled:
            self._poll(database)
        current = self._filter
        if current is None or self._clock() - self._polled >= 2 * self.refresh:
            return hashes
        return list(compress(hashes, current.maybe(hashes).tolist()))

    def add(self, hashes: list[str], database) -> None:
        """Hashes this process just stored (answers, claims; committed): known at once, before any poll,
        and kept for a filter being read meanwhile (its read may have passed them). Other workers of the
        host are told through the signal."""
        self.signal.bump()
        if self._database is not database:
            return
        hashes = [h.lower() for h in hashes]
        with self._lock:
            if self._filter is not None:
                self._filter.add(hashes)
            if self._pending is not None and len(self._pending) < CHUNK:
                self._pending.extend(hashes)

    # -- reading the tables ---------------------------------------------------------------------
    def _start(self, database) -> None:
        """Begin the full read for ``database`` in a thread: once per process and database, again
        RETRY seconds after a read that failed."""
        with self._lock:
            if self._database is database and (self._filter is not None or self._loading_pid == os.getpid()
                                               or self._clock() - self._failed_at < RETRY):
                return
            self._database, self._filter, self._high, self._polled = database, None, {}, 0.0
            self._recent, self._pending = set(), []
            self._loading_pid = os.getpid()
        threading.Thread(target=self._load, args=(database, None), name="known-hashes", daemon=True).start()

    def _load(self, database, capacity: int | None) -> None:
        """Read every hash into a new filter, then swap it in."""
        try:
            high: dict[str, int] = {}
            with database.connection_context():
                if capacity is None:
                    capacity = sum(model.select().count(database) for model, _, _ in self.sources)
                fresh = _Filter(max(capacity * 2, 1), self.min_bits)
                while self._read(database, fresh, high, lookback=0) >= CHUNK:
                    pass
            with self._lock:
                if self._database is database:
                    fresh.add(self._pending or [], new=0)
                    self._filter, self._high, self._polled = fresh, high, self._clock()
                    self._recent, self._pending = set(), None
                self._growing, self._loading_pid = False, None
            log.info("known hashes: %d read, room for %d", fresh.count, fresh.capacity)
        except Exception as exc:   # the filter is an optimisation: without it every lookup asks the database
            with self._lock:
                self._growing, self._loading_pid, self._failed_at = False, None, self._clock()
                if self._filter is None:
                    self._pending = None
            log.warning("known hashes not loaded (check-cache asks the database): %s", exc)

    def _read(self, database, target: _Filter, high: dict[str, int], lookback: int) -> int:
        """Add rows above each table's high-water mark (minus ``lookback``); returns the most rows one table
        gave (CHUNK = there may be more). Raw SQL made once per table: this runs on a request's thread."""
        most = 0
        for model, id_field, hash_field in self.sources:
            seen = high.get(model.__name__, 0)
            rows = database.execute_sql(_read_sql(model, id_field.column_name, hash_field.column_name,
                                                  database.param), (max(seen - lookback, 0), CHUNK)).fetchall()
            name = model.__name__
            fresh = [h.lower() for i, h in rows if i > seen or (name, i) not in self._recent]
            if fresh:
                target.add(fresh, new=sum(1 for i, _ in rows if i > seen))
            if rows:
                high[model.__name__] = max(seen, rows[-1][0])
                if lookback:   # ids read in the window, so a re-read adds only the late ones
                    self._recent.update((name, i) for i, _ in rows)
            most = max(most, len(rows))
        if len(self._recent) > 4 * LOOKBACK * len(self.sources):
            self._recent = {(name, i) for name, i in self._recent if i > high.get(name, 0) - LOOKBACK}
        return most

    def _poll(self, database) -> None:
        current = self._filter
        if current is None or not self._lock.acquire(blocking=False):
            return                          # loading, or another thread is polling: use what there is
        try:
            signalled = self.signal.read()   # before the read: a store signalled after it is polled again
            self._read(database, current, self._high, LOOKBACK)
            self._polled, self._signalled = self._clock(), signalled
            grow = current.count > current.capacity and not self._growing
            if grow:
                self._growing, self._pending = True, []
        except Exception as exc:
            log.warning("known hashes not polled: %s", exc)
            return
        finally:
            self._lock.release()
        if grow:   # full: build a larger one beside it; this one serves until then
            threading.Thread(target=self._load, args=(database, current.count), name="known-hashes",
                             daemon=True).start()


@lru_cache(maxsize=16)
def _read_sql(model, id_column: str, hash_column: str, param: str) -> str:
    return (f"SELECT {id_column}, {hash_column} FROM {model._meta.table_name} WHERE {id_column} > {param} "
            f"ORDER BY {id_column} LIMIT {param}")
