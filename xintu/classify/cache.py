"""CacheService: answers keyed by the server-computed SHA-256 of the image bytes + model + prompt version.

The key is always computed by the server from the bytes it received; a hash a client sends is used to
*look up* (check-cache), and as an ``original_sha256`` only in a claim its sender alone sees (below), so a
lying client cannot attach its answer to someone else's image. A cache hit is one indexed SELECT; the hit
counter is bumped in batches by ``stats_buffer`` so the fast path does not write; the lookup is raw
parameterised SQL made once per shape, and found server-verified rows are remembered per worker (RowMemory).

Claims (``classify_claims``): the field's clients hash the *original* photo and upload a smaller copy, so an
upload may name its original (``original_sha256``). The answer is stored under our hash of the bytes as
always, and the pair (original → our hash) as a claim of that client: its device session, and its WeChat user
when the session is bound (a device's claims pass to the user when the device binds). A check-cache sees
server-verified answers (our hash) and only its own claims: a lying client can only fool itself. Claims are
never promoted to everyone (docs/classify.md says why).

Near-duplicates: LLM answers carry the upload's perceptual hash (xintu.classify.phash) in four indexed bands;
an upload whose exact hash misses is answered from a stored LLM answer within a small Hamming distance.

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

from xintu.classify import phash as perceptual
from xintu.classify.known import KnownHashes
from xintu.classify.request_log import buffer as stats_buffer
from xintu.models import ClassifyCache, ClassifyClaim

SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Rows a near-duplicate lookup looks at: pigeonhole candidates are few unless a band value is common.
NEAR_CANDIDATES = 64


@dataclass(frozen=True)
class Version:
    model: str
    prompt: str
    source: str          # "llm" or "local"


class RowMemory:
    """Rows found by the exact-hash lookup, remembered per process (``max_entries``, ``ttl`` seconds).

    Only rows of the most preferred version are kept: the first answer for a key wins and is never changed
    (``put`` ignores conflicts) and nothing ranks above it, so a remembered row is what the database would
    return. Misses are never remembered: a new answer is found at once. Keys name the database too (tests
    run many apps in one process). Reads take no lock (a dict lookup is atomic); when full, the oldest
    stored entries go first."""

    def __init__(self, max_entries: int, ttl: float, clock=time.monotonic):
        self.max_entries, self.ttl, self._clock = max_entries, ttl, clock
        self._lock = threading.Lock()
        self._rows: dict[tuple, dict[str, tuple[float, tuple, dict]]] = {}
        self._order: OrderedDict[tuple, None] = OrderedDict()

    def get_many(self, prefix: tuple, hashes: list[str]) -> dict[str, tuple]:
        """(row, its answer) of the remembered ``hashes`` under ``prefix`` (database, model, prompt)."""
        rows = self._rows.get(prefix)
        if not rows:
            return {}
        now = self._clock()
        return {h: entry[1:] for h in hashes if (entry := rows.get(h)) is not None and entry[0] > now}

    def put_many(self, prefix: tuple, rows: dict[str, tuple]) -> None:
        """``rows``: hash → (row, its answer)."""
        if not rows:
            return
        expires = self._clock() + self.ttl
        with self._lock:
            mine = self._rows.setdefault(prefix, {})
            for h, (row, answer) in rows.items():
                mine[h] = (expires, row, answer)
                self._order[(prefix, h)] = None
                self._order.move_to_end((prefix, h))
            while len(self._order) > self.max_entries:
                (old_prefix, old), _ = self._order.popitem(last=False)
                self._rows.get(old_prefix, {}).pop(old, None)


class CacheService:
    def __init__(self, versions: list[Version], memory_entries: int = 0, memory_seconds: float = 300.0,
                 filter_seconds: float = 0.0, signal_path: str | None = None):
        """``versions``: the answers acceptable now, in order of preference (LLM before local);
        ``memory_entries`` > 0 remembers that many found rows in this process (RowMemory);
        ``filter_seconds`` > 0 keeps the filter of stored hashes check-cache uses (KnownHashes), whose
        workers on one host tell each other of new rows through the file ``signal_path``."""
        self.versions = versions
        self.memory = RowMemory(memory_entries, memory_seconds) if memory_entries > 0 else None
        self.known = KnownHashes([(ClassifyCache, ClassifyCache.id, ClassifyCache.image_sha256),
                                  (ClassifyClaim, ClassifyClaim.id, ClassifyClaim.original_sha256)],
                                 filter_seconds, signal_path=signal_path)

    def _where(self, versions):
        cond = None
        for v in versions:
            c = (ClassifyCache.model_version == v.model) & (ClassifyCache.prompt_version == v.prompt)
            cond = c if cond is None else cond | c
        return cond

    def get_many(self, hashes: list[str], versions: list[Version] | None = None,
                 claimant: tuple | None = None, skip_absent: bool = False,
                 normalized: bool = False) -> dict[str, dict]:
        """The best acceptable answer per asked hash, in at most ONE query: answers stored under the hash
        itself (server-verified, for anyone), then, with ``claimant`` = (session id, user id or None), the
        answers the claimant's own claims of that hash as an original point to. Server-verified rows of the
        preferred version come from this worker's memory when it has them; claims never do (they belong to
        one claimant). With ``skip_absent`` (check-cache only: a stale "missing" costs an upload, never a
        model call), hashes the filter of stored hashes rules out are not asked about (KnownHashes).
        ``normalized``: the caller already made ``hashes`` distinct, lower-case and valid.

        A remembered answer is the same dict on every call (encoding it once is what keeps batch-check-cache
        fast): callers copy before they change one."""
        versions = versions or self.versions
        if not normalized:
            hashes = [h for h in {h.lower() for h in hashes} if SHA256.match(h)]
        if not hashes or not versions:
            return {}
        best: dict[str, tuple] = {}
        database = _database()
        top = (id(database), versions[0].model, versions[0].prompt)
        remembered = self.memory.get_many(top, hashes) if self.memory is not None else {}
        answers: dict[str, dict] = {}
        if remembered:
            for h, (row, answer) in remembered.items():
                best[h], answers[h] = row, answer
            hashes = [h for h in hashes if h not in remembered]
        if skip_absent and hashes:
            hashes = self.known.maybe_stored(hashes, database)
        if hashes:   # asked of the database
            rank = {(v.model, v.prompt): i for i, v in enumerate(versions)}
            for row in _lookup_rows(hashes, versions, claimant):
                cur = best.get(row[1])
                if cur is None or (row[8], rank[(row[2], row[3])]) < (cur[8], rank[(cur[2], cur[3])]):
                    best[row[1]] = row
            fresh = {sha: row for sha, row in best.items() if sha not in answers}
            for sha, row in fresh.items():
                answers[sha] = self.as_result(row)
            if self.memory is not None:
                self.memory.put_many(top, {sha: (row, answers[sha]) for sha, row in fresh.items()
                                           if not row[8] and rank[(row[2], row[3])] == 0})
        stats_buffer.hit_many([row[0] for row in best.values()])
        return answers

    def get(self, sha256: str, versions: list[Version] | None = None, claimant: tuple | None = None) -> dict | None:
        return self.get_many([sha256], versions, claimant).get(sha256.lower())

    def near_duplicate(self, fingerprint: tuple[int, int], versions: list[Version],
                       max_distance: int) -> tuple[str, dict] | None:
        """(its hash, the answer) of the stored LLM answer whose perceptual hash is nearest, within
        ``max_distance`` (≤ 3: the bands find all of those) and of the same mean colour, or None.
        ``fingerprint``: (pHash, mean colour) from xintu.classify.phash.fingerprint. One indexed query."""
        value, colour = fingerprint
        versions = [v for v in versions if v.source == "llm"]
        if max_distance < 0 or not versions or not perceptual.informative(value):
            return None
        rank = {(v.model, v.prompt): i for i, v in enumerate(versions)}
        b = perceptual.bands(value)
        near = ((ClassifyCache.phash0 == b[0]) | (ClassifyCache.phash1 == b[1]) | (ClassifyCache.phash2 == b[2])
                | (ClassifyCache.phash3 == b[3]))
        rows = (ClassifyCache.select(ClassifyCache.id, ClassifyCache.image_sha256, ClassifyCache.category,
                                     ClassifyCache.confidence, ClassifyCache.description, ClassifyCache.source,
                                     ClassifyCache.model_version, ClassifyCache.prompt_version,
                                     ClassifyCache.phash0, ClassifyCache.phash1, ClassifyCache.phash2,
                                     ClassifyCache.phash3, ClassifyCache.mean_rgb)
                .where(near & self._where(versions)).limit(NEAR_CANDIDATES).dicts())
        best = None
        for row in rows:
            d = perceptual.distance(value, perceptual.from_bands(row[f"phash{i}"] for i in range(4)))
            if d > max_distance or row["mean_rgb"] is None \
                    or perceptual.colour_diff(colour, row["mean_rgb"]) > perceptual.MAX_COLOUR_DIFF:
                continue
            key = (d, rank[(row["model_version"], row["prompt_version"])])
            if best is None or key < best[0]:
                best = (key, row)
        if best is None:
            return None
        row = best[1]
        stats_buffer.hit(row["id"])
        return row["image_sha256"], self.as_result(row)

    def claim(self, original_sha256: str, image_sha256: str, claimant: tuple) -> None:
        """Record that ``claimant`` (session id, user id or None) uploaded ``image_sha256`` as a copy of
        ``original_sha256``; a later claim of the same original by the same session replaces it."""
        session_id, user_id = claimant
        original = original_sha256.lower()
        if original == image_sha256 or session_id is None:
            return
        updated = (ClassifyClaim.update(image_sha256=image_sha256, user=user_id)
                   .where(ClassifyClaim.original_sha256 == original, ClassifyClaim.session == session_id)
                   .execute())
        if not updated:
            try:
                (ClassifyClaim.insert(original_sha256=original, image_sha256=image_sha256, session=session_id,
                                      user=user_id).on_conflict_ignore().execute())
            except IntegrityError:  # a racing claim of the same original by the same session
                pass
        self.known.add([original], _database())

    @staticmethod
    def as_result(row) -> dict:
        """A cached answer from a row of ``_lookup_rows`` (a tuple) or a dict of the cache's columns."""
        if isinstance(row, tuple):
            return {"category": row[4], "confidence": row[5], "description": row[6] or "", "method": "cache",
                    "source": row[7]}
        return {"category": row["category"], "confidence": row["confidence"],
                "description": row["description"] or "", "method": "cache", "source": row["source"]}

    def put(self, sha256: str, version: Version, category: str, confidence: float, description: str,
            fingerprint: tuple[int, int] | None = None) -> None:
        """Store an answer; the first answer for a key wins (concurrent writers on other hosts are fine).
        ``fingerprint``: the image's (pHash, mean colour), kept on LLM answers for near-duplicate hits."""
        bands = {}
        if fingerprint is not None and version.source == "llm" and perceptual.informative(fingerprint[0]):
            bands = {f"phash{i}": band for i, band in enumerate(perceptual.bands(fingerprint[0]))}
            bands["mean_rgb"] = fingerprint[1]
        try:
            (ClassifyCache.insert(image_sha256=sha256, model_version=version.model, prompt_version=version.prompt,
                                  category=category, confidence=confidence, description=description[:64],
                                  source=version.source, **bands)
             .on_conflict_ignore().execute())
        except IntegrityError:  # a racing insert of the same key: theirs is as good as ours
            pass
        self.known.add([sha256], _database())


def _database():
    """The real database behind the models (their proxy's object)."""
    database = ClassifyCache._meta.database
    return getattr(database, "obj", database)


# The hot path (check-cache, batch-check-cache, every classify): raw parameterised SQL through the models'
# database instead of a peewee query built per call — building the 100-value IN and the OR of versions was
# most of a batch-check-cache request. One statement text per (hash count, version count, claims shape,
# placeholder style), made once; rows come back as tuples in the order of _COLUMNS plus a claim flag
# (0 = stored under the asked hash, 1 = reached through the claimant's claim).
_COLUMNS = ("id", "image_sha256", "model_version", "prompt_version", "category", "confidence",
            "description", "source")


@lru_cache(maxsize=512)
def _lookup_sql(n_hashes: int, n_versions: int, claims: str, param: str) -> str:
    """``claims``: "" (none), "session" or "session+user" (whose claims the lookup may use)."""
    cache, claim = ClassifyCache._meta, ClassifyClaim._meta
    cols = [cache.fields[name].column_name for name in _COLUMNS]
    marks = ", ".join([param] * n_hashes)
    versions = " OR ".join([f"(c.model_version = {param} AND c.prompt_version = {param})"] * n_versions)
    sql = (f"SELECT {', '.join('c.' + col for col in cols)}, 0 AS claim FROM {cache.table_name} c "
           f"WHERE c.image_sha256 IN ({marks}) AND ({versions})")
    if claims:
        asked = claim.fields["original_sha256"].column_name
        mine = f"cl.{claim.fields['session'].column_name} = {param}"
        if claims == "session+user":
            mine = f"({mine} OR cl.{claim.fields['user'].column_name} = {param})"
        picked = ", ".join(f"cl.{asked}" if col == cache.fields["image_sha256"].column_name else "c." + col
                           for col in cols)
        sql += (f" UNION ALL SELECT {picked}, 1 AS claim FROM {claim.table_name} cl "
                f"JOIN {cache.table_name} c ON c.image_sha256 = cl.{claim.fields['image_sha256'].column_name} "
                f"WHERE cl.{asked} IN ({marks}) AND {mine} AND ({versions})")
    return sql


def _lookup_rows(hashes: list[str], versions: list[Version], claimant: tuple | None) -> list[tuple]:
    database = ClassifyCache._meta.database
    pairs = [x for v in versions for x in (v.model, v.prompt)]
    params, claims = [*hashes, *pairs], ""
    if claimant is not None and claimant[0] is not None:
        session_id, user_id = claimant
        claims = "session+user" if user_id else "session"
        params += [*hashes, session_id, *([user_id] if user_id else []), *pairs]
    sql = _lookup_sql(len(hashes), len(versions), claims, database.param)
    return database.execute_sql(sql, params).fetchall()
