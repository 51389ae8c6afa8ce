"""ClassifierService: cache → Qwen-VL (when configured and allowed) → local model.

``method`` in every answer says which path produced it: ``cache`` (with ``near_duplicate: true`` when the
stored LLM answer of a near-identical image answered, xintu.classify.cache), ``llm``, ``local``, ``llm_fallback``
(the LLM was wanted but failed or is not configured, so the local model answered) or ``local_fallback``
(auto mode tried the local model first, it failed, the LLM answered). The operator switch
``inference.mode`` (auto | llm | local, DB-backed, `xintu config set`) picks the path for API requests:
auto uses the LLM when a key is configured, llm insists on it (its absence shows up as llm_fallback in the
stats), local never calls out.

Every Qwen-VL call is paid by us, so it spends daily budgets first (xintu.budgets, shared by all workers):
per device token, per WeChat user and for the whole service (``LLM_BUDGET_*``).  Over any of them the
local model answers: ``method: "local"`` with ``details.llm_skipped = "budget_<device|user|global>"``,
counted in ``xintu_classify_llm_budget_total`` and as method ``llm_budget`` in the request log (stats).
"""
from __future__ import annotations

import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Histogram

from xintu import budgets, db
from xintu.classify import intake as image_intake
from xintu.classify import phash as perceptual
from xintu.classify.cache import CacheService, Version
from xintu.classify.imagenet import MODEL_VERSION
from xintu.classify.local import LocalFailure, get_local
from xintu.classify.model_client import LlmFailure, ModelClient, prompt_version
from xintu.classify.request_log import buffer as stats_buffer
from xintu.classify.rules import RULES_VERSION
from xintu.classify.singleflight import SingleFlight
from xintu.errors import BadRequest, XintuError
from xintu.settings_store import get_setting
from xintu.upstreams import Breaker

log = logging.getLogger(__name__)
MODES = ("auto", "llm", "local")
MAX_BATCH = 20

CLASSIFIED = Counter("xintu_classify_total", "Images classified, by method", ["method"])
LLM_FAILURES = Counter("xintu_classify_llm_failures_total", "Qwen-VL calls that gave no usable answer",
                       ["reason"])
LLM_BUDGET = Counter("xintu_classify_llm_budget", "Images answered locally because an LLM budget was spent",
                     ["scope"])
LATENCY = Histogram("xintu_classify_seconds", "Time to classify one image, by method", ["method"],
                    buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))


class ClassifierService:
    def __init__(self, config: dict):
        self.config = config
        self.model_dir = config.get("CLASSIFY_MODEL_DIR") or os.path.join(config["INSTANCE_PATH"], "models")
        key, model = config.get("DASHSCOPE_API_KEY"), config["CLASSIFY_LLM_MODEL"]
        self.breaker = Breaker("dashscope.classify", config.get("DASHSCOPE_BREAKER_SECONDS", 600))
        self.llm = ModelClient(key, model=model, base_url=config.get("DASHSCOPE_BASE_URL"),
                               timeout=config["CLASSIFY_LLM_TIMEOUT"], retries=config["CLASSIFY_LLM_RETRIES"],
                               breaker=self.breaker) if key else None
        self.llm_version = Version(model, prompt_version(model), "llm")
        # Answers of earlier models are reused only when an operator says so (CLASSIFY_CACHE_ACCEPT_MODELS).
        older = [Version(m, prompt_version(m), "llm")
                 for m in config.get("CLASSIFY_CACHE_ACCEPT_MODELS") or [] if m != model]
        self.local_version = Version(f"local-{MODEL_VERSION}", RULES_VERSION, "local")
        self.cache_local = bool(config.get("CLASSIFY_CACHE_LOCAL"))
        self.near_distance = int(config.get("CLASSIFY_NEAR_DUPLICATE_DISTANCE", 3))
        self.cache = CacheService([self.llm_version, *older] + ([self.local_version] if self.cache_local else []),
                                  memory_entries=int(config.get("CLASSIFY_CACHE_MEMORY_ENTRIES") or 0),
                                  memory_seconds=float(config.get("CLASSIFY_CACHE_MEMORY_SECONDS") or 0),
                                  filter_seconds=float(config.get("CLASSIFY_CHECK_FILTER_SECONDS") or 0),
                                  signal_path=os.path.join(config["INSTANCE_PATH"], "known-hashes.signal"))
        self.flights = SingleFlight()
        self._local_slots = threading.BoundedSemaphore(max(1, int(config["CLASSIFY_LOCAL_CONCURRENCY"])))
        self._local = None
        self._local_lock = threading.Lock()

    # -- configuration -------------------------------------------------------------------------
    def mode(self) -> str:
        mode = get_setting("inference.mode", self.config.get("INFERENCE_MODE") or "auto")
        return mode if mode in MODES else "auto"

    @property
    def local(self):
        with self._local_lock:
            if self._local is None:
                self._local = get_local(self.model_dir, int(self.config["CLASSIFY_THREADS"]))
            return self._local

    def warm(self) -> None:
        """Load the local models now (e.g. from gunicorn's post_fork), not in a user's first request."""
        self.local.warm()

    def _versions(self, path: str) -> list[Version]:
        if path == "local":
            return [self.local_version] if self.cache_local else []
        return self.cache.versions

    # -- one image -----------------------------------------------------------------------------
    def classify(self, data: bytes, *, method: str | None = None, endpoint: str | None = None,
                 client: str | None = None, details: bool = False, batch_size: int | None = None,
                 owner: tuple | None = None, original_sha256: str | None = None) -> dict:
        """Classify ``data``; ``method`` overrides the operator mode (the CLI's --method, /classify/local).
        ``owner`` = (client session id, user id or None) whose LLM budgets an upstream call spends.
        ``original_sha256``: the client's hash of the photo ``data`` is a copy of, recorded as a claim of
        ``owner`` (xintu.classify.cache) pointing to the answer given."""
        start = time.perf_counter()
        path = method or self.mode()
        try:
            image_intake.check_size(data)
            sha = image_intake.sha256_hex(data)
            # details = the diagnostic /classify/local: always run the model, a cached answer has no cues
            versions = [] if details else self._versions(path)
            result = self.lookup([sha], versions).get(sha) if versions else None
            if result is not None:
                result = dict(result)   # a remembered answer is shared: this one gets our sha256
            else:
                result, _ = self.flights.do((sha, path, details),
                                            lambda: self._compute(data, sha, path, details, owner))
                result = dict(result)
            answered_by = result.pop("_answered_by", sha)   # a near-duplicate's answer is stored under its hash
            if original_sha256 and owner:
                self.cache.claim(original_sha256, answered_by, owner)
            result["sha256"] = sha
        except XintuError as exc:
            self._record(endpoint, client, None, None, start, ok=False, status=exc.status, batch_size=batch_size)
            raise
        logged = "llm_budget" if (result.get("details") or {}).get("llm_skipped") else result["method"]
        self._record(endpoint, client, logged, result["category"], start, batch_size=batch_size)
        return result

    # -- the cache -----------------------------------------------------------------------------
    def lookup(self, hashes: list[str], versions: list[Version] | None = None,
               claimant: tuple | None = None, *, skip_absent: bool = False,
               normalized: bool = False) -> dict[str, dict]:
        """The one cache lookup (classify and the check-cache endpoints): the best acceptable cached answer
        per hash, keyed by the lower-case hash; hashes without one are absent. ``claimant`` = (session id,
        user id or None) also sees the originals it claimed (xintu.classify.cache). Answers may be shared
        between calls: copy one before changing it. ``skip_absent`` (check-cache only) and ``normalized``:
        as ``CacheService.get_many``."""
        return self.cache.get_many(hashes, versions, claimant, skip_absent=skip_absent, normalized=normalized)

    def check_cache(self, hashes: list[str], *, endpoint: str, client: str | None,
                    batch: bool = False, claimant: tuple | None = None, normalized: bool = False) -> dict[str, dict]:
        """Cached answers for hashes a client already holds; logged in the request log like a classify
        call (a single check with its hit, a batch with its size), not counted as a classified image.
        ``normalized``: ``hashes`` are already distinct, lower-case SHA-256 hex."""
        start = time.perf_counter()
        hits = self.lookup(hashes, claimant=claimant, skip_absent=True, normalized=normalized)
        if batch:
            self._record(endpoint, client, None, None, start, batch_size=len(hashes), count=False)
        else:
            hit = next(iter(hits.values()), None)
            self._record(endpoint, client, "cache" if hit else None, hit["category"] if hit else None, start,
                         count=False)
        return hits

    def _llm_budget(self, owner) -> str | None:
        """Spend one unit of every LLM budget of ``owner``; the scope that said no, else None."""
        session_id, user_id = owner or (None, None)
        wanted = [(f"llm:device:{session_id}", int(self.config["LLM_BUDGET_PER_DEVICE_DAY"]), budgets.DAY)]
        if user_id:
            wanted.append((f"llm:user:{user_id}", int(self.config["LLM_BUDGET_PER_USER_DAY"]), budgets.DAY))
        wanted.append(("llm:all", int(self.config["LLM_BUDGET_GLOBAL_DAY"]), budgets.DAY))
        if session_id is None:
            wanted = wanted[-1:]   # the operator's CLI: only the service-wide budget
        refused = budgets.take_all(wanted)
        return None if refused is None else refused.split(":")[1].replace("all", "global")

    def _compute(self, data: bytes, sha: str, path: str, details: bool, owner=None) -> dict:
        img = image_intake.decode(data)
        versions = [] if details else self._versions(path)
        value = perceptual.fingerprint(img.image) if any(v.source == "llm" for v in versions) else None
        near = self.cache.near_duplicate(value, versions, self.near_distance) if value is not None else None
        if near is not None:
            return {**near[1], "near_duplicate": True, "_answered_by": near[0]}
        llm_allowed = path != "local" and self.llm is not None
        # The fallback goes both ways: the LLM's failure is answered by the local model, and in auto mode
        # the local model's failure (an exception, a working image it cannot read) by the LLM.
        local_first = llm_allowed and path == "auto" and self.config.get("CLASSIFY_AUTO_FIRST") == "local"
        if llm_allowed and not local_first:
            scope = self._llm_budget(owner)
            if scope:
                LLM_BUDGET.labels(scope).inc()
                result = self._run_local(img, details)
                result["method"] = "local"
                result["details"] = {**result.get("details", {}), "llm_skipped": f"budget_{scope}"}
                return result
            answer = self._try_llm(img, sha, "llm", value)
            if answer:
                return answer
        try:
            result = self._run_local(img, details)
        except Exception as exc:
            if local_first:
                scope = self._llm_budget(owner)
                if scope:
                    LLM_BUDGET.labels(scope).inc()
                else:
                    log.warning("local model failed (%r); asking qwen-vl", exc)
                    answer = self._try_llm(img, sha, "local_fallback", value)
                    if answer:
                        return answer
            if isinstance(exc, LocalFailure):
                raise BadRequest("图片过小或过于细长，无法识别", code="image_unreadable") from exc
            raise
        wanted_llm = llm_allowed and not local_first or path == "llm"
        result["method"] = "llm_fallback" if wanted_llm else "local"
        if self.cache_local:
            self.cache.put(sha, self.local_version, result["category"], result["confidence"],
                           result["description"])
        return result

    def _try_llm(self, img, sha: str, method: str, value: tuple[int, int] | None = None) -> dict | None:
        """A validated, cached Qwen-VL answer (stored with the image's perceptual fingerprint ``value``), or
        None when it failed (counted and logged)."""
        try:
            answer = self.llm.classify(_llm_bytes(img), "image/jpeg")
        except LlmFailure as exc:
            LLM_FAILURES.labels(exc.reason).inc()
            if exc.reason != "breaker_open":  # the breaker logged once when it opened
                log.warning("qwen-vl failed (%s); answering with the local model", exc)
            return None
        if value is None:
            value = perceptual.fingerprint(img.image)
        self.cache.put(sha, self.llm_version, answer.category, answer.confidence, answer.description, value)
        return {"category": answer.category, "confidence": answer.confidence,
                "description": answer.description, "method": method}

    def _run_local(self, img, details: bool) -> dict:
        with self._local_slots:  # CPU bound: more at once only thrashes the cores
            r = self.local.classify(img)
        out = {"category": r.category, "confidence": r.confidence, "description": r.description}
        if details:
            out["details"] = {"reason": r.reason, **r.cues}
        return out

    def _record(self, endpoint, client, method, category, start, ok=True, status=200, batch_size=None,
                count=True):
        """The one request-log path; ``count`` also counts the image in the classify metrics."""
        elapsed = time.perf_counter() - start
        if method and count:
            CLASSIFIED.labels(method).inc()
            LATENCY.labels(method).observe(elapsed)
        if endpoint:
            stats_buffer.log(endpoint=endpoint, client=client, method=method, category=category,
                             latency_ms=round(elapsed * 1000), ok=ok, status=status, batch_size=batch_size)

    # -- many images ---------------------------------------------------------------------------
    def classify_many(self, items: list[tuple], *, method: str | None = None,
                      endpoint: str | None = None, client: str | None = None,
                      owner: tuple | None = None) -> list[dict]:
        """Per-item results in input order; a bad item gets an ``error`` and does not fail the others.
        Items run concurrently (bounded), so a batch takes about as long as its slowest item.
        ``items``: (filename, bytes) or (filename, bytes, original_sha256 or None)."""
        path = method or self.mode()  # read once, on the request thread

        def one(item):
            name, data, original = (*item, None)[:3]
            try:
                return {"filename": name, **self.classify(data, method=path, endpoint=endpoint, client=client,
                                                          batch_size=len(items), owner=owner,
                                                          original_sha256=original)}
            except XintuError as exc:
                return {"filename": name, "error": {"code": exc.code, "message": exc.message}}
            except Exception:  # one broken item must not take the other 19 answers down with it
                log.exception("classifying %s failed", name)
                return {"filename": name, "error": {"code": "internal_error", "message": "分类失败"}}

        def in_pool(item):
            try:
                return one(item)
            finally:
                db.close_all()  # the pool thread's own connection

        workers = max(1, min(len(items), int(self.config["CLASSIFY_BATCH_CONCURRENCY"])))
        if workers == 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="classify") as pool:
            return list(pool.map(in_pool, items))


def _llm_bytes(img) -> bytes:
    """The working image (≤ 960 px) as JPEG: a tenth of a phone photo's upload, any input format (HEIC,
    GIF) becomes one the model accepts, and Qwen-VL resizes to about this size anyway."""
    buf = io.BytesIO()
    img.image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def get_service(app=None) -> ClassifierService:
    from flask import current_app
    app = app or current_app
    svc = app.extensions.get("xintu.classify")
    if svc is None:
        svc = app.extensions.setdefault("xintu.classify", ClassifierService(app.config))
    return svc
