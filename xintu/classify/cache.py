"""CacheService: answers keyed by the server-computed SHA-256 of the image bytes + model + prompt version.

The key is always computed by the server from the bytes it received; a hash a client sends is used to
*look up* (check-cache), and as an ``original_sha256`` only in a claim its sender alone sees (below), so a
lying client cannot attach its answer to someone else's image. A cache hit is one indexed SELECT; the hit
counter is bumped in batches by ``stats_buffer`` so the fast path does not write.

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
from dataclasses import dataclass

from peewee import IntegrityError, Value

from xintu.classify import phash as perceptual
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


class CacheService:
    def __init__(self, versions: list[Version]):
        """``versions``: the answers acceptable now, in order of preference (LLM before local)."""
        self.versions = versions

    def _where(self, versions):
        cond = None
        for v in versions:
            c = (ClassifyCache.model_version == v.model) & (ClassifyCache.prompt_version == v.prompt)
            cond = c if cond is None else cond | c
        return cond

    def get_many(self, hashes: list[str], versions: list[Version] | None = None,
                 claimant: tuple | None = None) -> dict[str, dict]:
        """The best acceptable answer per asked hash, in ONE query: answers stored under the hash itself
        (server-verified, for anyone), then, with ``claimant`` = (session id, user id or None), answers the
        claimant's own claims of that hash as an original point to."""
        versions = versions or self.versions
        hashes = [h for h in {h.lower() for h in hashes} if SHA256.match(h)]
        if not hashes or not versions:
            return {}
        rank = {(v.model, v.prompt): i for i, v in enumerate(versions)}
        fields = (ClassifyCache.id, ClassifyCache.category, ClassifyCache.confidence, ClassifyCache.description,
                  ClassifyCache.source, ClassifyCache.model_version, ClassifyCache.prompt_version)
        query = (ClassifyCache.select(*fields, ClassifyCache.image_sha256.alias("asked"), Value(0).alias("claim"))
                 .where(ClassifyCache.image_sha256.in_(hashes) & self._where(versions)))
        if claimant is not None:
            session_id, user_id = claimant
            mine = ClassifyClaim.session == session_id
            if user_id:
                mine |= ClassifyClaim.user == user_id
            claimed = (ClassifyCache.select(*fields, ClassifyClaim.original_sha256.alias("asked"),
                                            Value(1).alias("claim"))
                       .join(ClassifyClaim, on=(ClassifyClaim.image_sha256 == ClassifyCache.image_sha256))
                       .where(ClassifyClaim.original_sha256.in_(hashes) & mine & self._where(versions)))
            query = query.union_all(claimed)
        best: dict[str, dict] = {}
        for row in query.dicts():
            key = (row["claim"], rank[(row["model_version"], row["prompt_version"])])
            cur = best.get(row["asked"])
            if cur is None or key < cur[0]:
                best[row["asked"]] = (key, row)
        for _, row in best.values():
            stats_buffer.hit(row["id"])
        return {sha: self.as_result(row) for sha, (_, row) in best.items()}

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

    @staticmethod
    def as_result(row) -> dict:
        if not isinstance(row, dict):
            row = row.__data__
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

