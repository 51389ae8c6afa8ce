"""DashScope as it is today: the models we know, what its error codes mean, and a circuit breaker.

Classification (xintu.classify) and image editing (xintu.edit) both call Alibaba Model Studio. This
module is what they share:

- ``MODELS``: the names we know, whether Model Studio lists them as current, legacy or retired, and
  which wire shape they use. ``check_model`` turns a configured name into ok / warn / fail with one
  line of advice (config load and ``xintu doctor`` use it).
- ``classify_error(status, code)``: one mapping of DashScope's HTTP status + error code to what we do:
  ``transient`` (retry with backoff and jitter), ``stop`` (quota gone, bad key, arrears, model
  missing: open the breaker), ``moderation`` (tell the user, stable code), ``bad_request`` (fail that
  item).
- ``Breaker``: after a ``stop`` error nobody calls that upstream for ``DASHSCOPE_BREAKER_SECONDS``.
  Its state is a row in ``settings`` (key ``breaker.<name>``), so every worker on every host stops,
  the admin dashboard can show it, and it is logged once per process and counted in /metrics.
"""
from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import dataclass

from prometheus_client import Counter

from xintu.models import Setting
from xintu.settings_store import clear_cache, get_setting, set_setting

log = logging.getLogger(__name__)

# -- models --------------------------------------------------------------------------------------
# api: "multimodal" = MultiModalConversation (synchronous, POST services/aigc/multimodal-generation/
# generation); "image2image" = submit + poll on services/aigc/image2image/image-synthesis (wanx2.1,
# wan2.5); "image-generation" = submit + poll on services/aigc/image-generation/generation with a
# messages input (wan2.6-image, wan2.7-image).


@dataclass(frozen=True)
class ModelInfo:
    kind: str                 # "vision" (classification) | "edit"
    status: str               # "current" | "legacy" | "retired"
    api: str = "multimodal"
    use: str | None = None    # what to move to when not current


MODELS: dict[str, ModelInfo] = {
    "qwen3-vl-plus": ModelInfo("vision", "current"),
    "qwen3-vl-flash": ModelInfo("vision", "current"),
    "qwen-vl-max": ModelInfo("vision", "retired", use="qwen3-vl-plus"),
    "qwen-vl-plus": ModelInfo("vision", "retired", use="qwen3-vl-plus"),
    "qwen-vl-max-latest": ModelInfo("vision", "retired", use="qwen3-vl-plus"),
    "qwen-vl-plus-latest": ModelInfo("vision", "retired", use="qwen3-vl-plus"),
    "qwen-image-2.0": ModelInfo("edit", "current"),
    "qwen-image-2.0-pro": ModelInfo("edit", "current"),
    "qwen-image-edit-max": ModelInfo("edit", "current"),
    "qwen-image-edit-plus": ModelInfo("edit", "current"),
    "wan2.6-image": ModelInfo("edit", "current", api="image-generation"),
    "wan2.7-image": ModelInfo("edit", "current", api="image-generation"),
    "wan2.7-image-pro": ModelInfo("edit", "current", api="image-generation"),
    "qwen-image-edit": ModelInfo("edit", "legacy", use="qwen-image-2.0"),
    "wanx2.1-imageedit": ModelInfo("edit", "legacy", api="image2image", use="wan2.6-image"),
    "wan2.5-i2i-preview": ModelInfo("edit", "legacy", api="image2image", use="wan2.6-image"),
}
DEFAULT_VISION_MODEL = "qwen3-vl-plus"
DEFAULT_EDIT_MODEL = "qwen-image-2.0"
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")  # dated snapshots: qwen3-vl-plus-2025-09-23


def model_info(name: str) -> ModelInfo | None:
    name = (name or "").strip()
    return MODELS.get(name) or MODELS.get(_SNAPSHOT.sub("", name))


def check_model(name: str, kind: str, extra=()) -> tuple[str, str]:
    """(level, message) with level ok / warn / fail. ``extra`` names are accepted as current (the
    DASHSCOPE_EXTRA_MODELS escape hatch for a model newer than this list)."""
    what = "classification" if kind == "vision" else "image edit"
    if name in (extra or ()):
        return "ok", f"{name} (declared in DASHSCOPE_EXTRA_MODELS)"
    info = model_info(name)
    known = ", ".join(n for n, i in MODELS.items() if i.kind == kind and i.status == "current")
    if info is None or info.kind != kind:
        return "fail", (f"{name!r} is not a known {what} model; current: {known} "
                        "(or list it in DASHSCOPE_EXTRA_MODELS)")
    if info.status == "retired":
        return "fail", f"{name} is retired by Model Studio (answers 404 ModelNotFound); use {info.use}"
    if info.status == "legacy":
        return "warn", f"{name} is a legacy model on Model Studio; move to {info.use}"
    return "ok", f"{name} is current"


def edit_api(model: str) -> str:
    info = model_info(model)
    return info.api if info else "multimodal"


# -- errors --------------------------------------------------------------------------------------
TRANSIENT, STOP, MODERATION, BAD_REQUEST = "transient", "stop", "moderation", "bad_request"
_STOP_CODES = {
    "Throttling.AllocationQuota": "quota", "AllocationQuota.FreeTierOnly": "quota",
    "InvalidApiKey": "auth", "AccessDenied": "auth", "AccessDenied.Unpurchased": "auth",
    "Arrearage": "billing",
    "ModelNotFound": "model", "Model.AccessDenied": "model",
}
_MODERATION_CODES = {"DataInspectionFailed", "data_inspection_failed", "IPInfringementSuspect"}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def classify_error(status: int | None, code: str | None) -> tuple[str, str]:
    """(class, reason) for an upstream answer that was not a success. ``status`` None = no answer
    (time-out, refused connection)."""
    code = code or ""
    if code in _STOP_CODES:
        return STOP, _STOP_CODES[code]
    if code in _MODERATION_CODES:
        return MODERATION, "moderation"
    if status is None:
        return TRANSIENT, "transport"
    if status in (401, 403):
        return STOP, "auth"
    if status in _TRANSIENT_STATUS:
        return TRANSIENT, f"http_{status}"
    return BAD_REQUEST, f"http_{status}"


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^attempt)] so retrying callers spread out."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt))))


# -- circuit breaker -----------------------------------------------------------------------------
BREAKER_OPENED = Counter("xintu_upstream_breaker_opened", "Times an upstream breaker opened",
                         ["upstream", "reason"])
BREAKER_SHORT_CIRCUITS = Counter("xintu_upstream_breaker_short_circuits",
                                 "Calls not made because the upstream breaker was open", ["upstream"])
BREAKERS = ("dashscope.classify", "dashscope.edit")
PREFIX = "breaker."
_local: dict[str, dict] = {}      # per process: the last state set (also works without a DB)
_lock = threading.Lock()


class Breaker:
    def __init__(self, name: str, seconds: float = 600):
        self.name, self.seconds = name, float(seconds)

    def state(self) -> dict | None:
        """The open state ``{reason, code, message, until (epoch s)}`` or None when closed. The row in
        the database rules; without a database (a bare CLI call) the process-local state does."""
        try:
            st = get_setting(PREFIX + self.name, {}) or None
        except Exception:  # noqa: BLE001
            with _lock:
                st = _local.get(self.name)
        return st if st and float(st.get("until", 0)) > time.time() else None

    def is_open(self) -> bool:
        if self.state() is None:
            return False
        BREAKER_SHORT_CIRCUITS.labels(self.name).inc()
        return True

    def open(self, reason: str, code: str = "", message: str = "") -> None:
        now = time.time()
        st = {"reason": reason, "code": code, "message": message[:200], "until": now + self.seconds}
        with _lock:  # logged once per opening in this process (20 items of a batch fail together)
            prev = _local.get(self.name)
            first = prev is None or prev["until"] <= now
            _local[self.name] = st
        BREAKER_OPENED.labels(self.name, reason).inc()
        if first:
            log.error("%s: %s %s — no calls for %d s (xintu doctor tells more)", self.name, code or reason,
                      message, self.seconds)
        try:
            set_setting(PREFIX + self.name, st, by="breaker")
        except Exception:  # noqa: BLE001  still open in this process
            log.warning("%s: breaker state not stored in the database", self.name)

    def close(self) -> None:
        with _lock:
            _local.pop(self.name, None)
        try:
            Setting.delete().where(Setting.key == PREFIX + self.name).execute()
            clear_cache()
        except Exception:  # noqa: BLE001
            pass


def breaker_states() -> list[dict]:
    """For the admin dashboard: every breaker, open or not."""
    out = []
    for name in BREAKERS:
        st = Breaker(name).state()
        out.append({"name": name, "open": st is not None, "reason": (st or {}).get("reason"),
                    "code": (st or {}).get("code"), "message": (st or {}).get("message"),
                    "seconds_left": max(0, int(st["until"] - time.time())) if st else 0})
    return out

