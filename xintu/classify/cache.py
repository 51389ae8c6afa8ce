"""CacheService: answers keyed by the server-computed SHA-256 of the image bytes + model + prompt version.

The key is always computed by the server from the bytes it received; a hash a client sends is only ever
used to *look up* (check-cache), never to store, so a lying client cannot attach its answer to someone
else's image. A cache hit is one indexed SELECT; the hit counter is bumped in batches by ``stats_buffer``
so the fast path does not write.

Trade-off of the check-cache endpoints: whoever already holds an image's exact bytes can learn the category
stored for it, and so that someone classified the same image before. The category of a photo you already
have is no secret, and the answer never includes who asked or when, so we accept that for the upload it saves.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from peewee import IntegrityError

from xintu.classify.request_log import buffer as stats_buffer
from xintu.models import ClassifyCache

SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Version:
    model: str
    prompt: str
    source: str          # "llm" or "local"


class RowMemory:
    """Rows found by the exact-hash lookup, remembered per process (LRU, ``max_entries``, ``ttl`` seconds).

    Only rows of the most preferred version are kept: the first answer for a key wins and is never changed
    (``put`` ignores conflicts) and nothing ranks above it, so a remembered row is what the database would
    return. Misses are never remembered: a new answer is found at once. Keys name the database too (tests
    run many apps in one process)."""

    def __init__(self, max_entries: int, ttl: float, clock=time.monotonic):
        self.max_entries, self.ttl, self._clock = max_entries, ttl, clock
        self._lock = threading.Lock()
        self._rows: OrderedDict[tuple, tuple[float, tuple]] = OrderedDict()

    def get_many(self, prefix: tuple, hashes: list[str]) -> dict[str, tuple]:
        """The remembered rows of ``hashes`` under ``prefix`` (database, model, prompt), one lock for all."""
        found, now = {}, self._clock()
        with self._lock:
            for h in hashes:
                entry = self._rows.get((*prefix, h))
                if entry is None:
                    continue
                if now - entry[0] >= self.ttl:
                    del self._rows[(*prefix, h)]
                    continue
                self._rows.move_to_end((*prefix, h))
                found[h] = entry[1]
        return found

    def put_many(self, prefix: tuple, rows: dict[str, tuple]) -> None:
        now = self._clock()
        with self._lock:
            for h, row in rows.items():
                self._rows[(*prefix, h)] = (now, row)
                self._rows.move_to_end((*prefix, h))
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)


class CacheService:
    def __init__(self, versions: list[Version], memory_entries: int = 0, memory_seconds: float = 300.0):
        """``versions``: the answers acceptable now, in order of preference (LLM before local);
        ``memory_entries`` > 0 remembers that many found rows in this process (RowMemory)."""
        self.versions = versions
        self.memory = RowMemory(memory_entries, memory_seconds) if memory_entries > 0 else None

    def get_many(self, hashes: list[str], versions: list[Version] | None = None) -> dict[str, dict]:
        """Exact-hash lookup: the best acceptable answer per hash (one indexed SELECT)."""
        versions = versions or self.versions
        hashes = [h for h in {h.lower() for h in hashes} if SHA256.match(h)]
        if not hashes or not versions:
            return {}
        rank = {(v.model, v.prompt): i for i, v in enumerate(versions)}
        best: dict[str, tuple] = {}
        database = ClassifyCache._meta.database
        top = (id(getattr(database, "obj", database)), versions[0].model, versions[0].prompt)
        remembered = self.memory.get_many(top, hashes) if self.memory is not None else {}
        if remembered:
            best.update(remembered)
            hashes = [h for h in hashes if h not in remembered]
        for row in _exact_rows(hashes, versions) if hashes else ():
            cur = best.get(row[1])
            if cur is None or rank[(row[2], row[3])] < rank[(cur[2], cur[3])]:
                best[row[1]] = row
        stats_buffer.hit_many([row[0] for row in best.values()])
        if self.memory is not None:
            self.memory.put_many(top, {sha: row for sha, row in best.items()
                                       if sha not in remembered and rank[(row[2], row[3])] == 0})
        return {sha: self.as_result(row) for sha, row in best.items()}

    def get(self, sha256: str, versions: list[Version] | None = None) -> dict | None:
        return self.get_many([sha256], versions).get(sha256.lower())

    @staticmethod
    def as_result(row: tuple) -> dict:
        """A cached answer from a row of ``_exact_rows``."""
        return {"category": row[4], "confidence": row[5], "description": row[6] or "", "method": "cache",
                "source": row[7]}

    def put(self, sha256: str, version: Version, category: str, confidence: float, description: str) -> None:
        """Store an answer; the first answer for a key wins (concurrent writers on other hosts are fine)."""
        try:
            (ClassifyCache.insert(image_sha256=sha256, model_version=version.model, prompt_version=version.prompt,
                                  category=category, confidence=confidence, description=description[:64],
                                  source=version.source)
             .on_conflict_ignore().execute())
        except IntegrityError:  # a racing insert of the same key: theirs is as good as ours
            pass


# The hot path (check-cache, batch-check-cache, every classify): raw parameterised SQL through the models'
# database instead of a peewee query built per call — building the 100-value IN and the OR of versions was
# most of a batch-check-cache request. One statement text per (hash count, version count, placeholder
# style), made once; the rows come back as tuples in this column order.
_EXACT_COLUMNS = ("id", "image_sha256", "model_version", "prompt_version", "category", "confidence",
                  "description", "source")


@lru_cache(maxsize=256)
def _exact_sql(n_hashes: int, n_versions: int, param: str) -> str:
    meta = ClassifyCache._meta
    columns = ", ".join(meta.fields[name].column_name for name in _EXACT_COLUMNS)
    versions = " OR ".join([f"(model_version = {param} AND prompt_version = {param})"] * n_versions)
    return (f"SELECT {columns} FROM {meta.table_name} "
            f"WHERE image_sha256 IN ({', '.join([param] * n_hashes)}) AND ({versions})")


def _exact_rows(hashes: list[str], versions: list[Version]) -> list[tuple]:
    database = ClassifyCache._meta.database
    params = [*hashes, *(x for v in versions for x in (v.model, v.prompt))]
    return database.execute_sql(_exact_sql(len(hashes), len(versions), database.param), params).fetchall()
