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
from dataclasses import dataclass

from peewee import IntegrityError

from xintu.classify.request_log import buffer as stats_buffer
from xintu.models import ClassifyCache

SHA256 = re.compile(r"^[0-9a-f]{64}$")


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

    def get_many(self, hashes: list[str], versions: list[Version] | None = None) -> dict[str, dict]:
        versions = versions or self.versions
        hashes = [h for h in {h.lower() for h in hashes} if SHA256.match(h)]
        if not hashes or not versions:
            return {}
        rank = {(v.model, v.prompt): i for i, v in enumerate(versions)}
        best: dict[str, ClassifyCache] = {}
        query = (ClassifyCache.select().where(ClassifyCache.image_sha256.in_(hashes) & self._where(versions)))
        for row in query:
            cur = best.get(row.image_sha256)
            if cur is None or rank[(row.model_version, row.prompt_version)] < \
                    rank[(cur.model_version, cur.prompt_version)]:
                best[row.image_sha256] = row
        for row in best.values():
            stats_buffer.hit(row.id)
        return {sha: self.as_result(row) for sha, row in best.items()}

    def get(self, sha256: str, versions: list[Version] | None = None) -> dict | None:
        return self.get_many([sha256], versions).get(sha256.lower())

    @staticmethod
    def as_result(row) -> dict:
        return {"category": row.category, "confidence": row.confidence, "description": row.description or "",
                "method": "cache", "source": row.source}

    def put(self, sha256: str, version: Version, category: str, confidence: float, description: str) -> None:
        """Store an answer; the first answer for a key wins (concurrent writers on other hosts are fine)."""
        try:
            (ClassifyCache.insert(image_sha256=sha256, model_version=version.model, prompt_version=version.prompt,
                                  category=category, confidence=confidence, description=description[:64],
                                  source=version.source)
             .on_conflict_ignore().execute())
        except IntegrityError:  # a racing insert of the same key: theirs is as good as ours
            pass
