"""ModelClient: classification by Qwen-VL through the dashscope SDK, with a validated JSON answer.

The model is asked for strict JSON; anything else — prose, unknown category, confidence outside 0–1,
missing fields, HTTP errors, time-outs — is a failure (``LlmFailure``) that the service turns into a
local-model fallback. Nothing from here is cached unless it validated. Upstream errors are sorted by
``xintu.upstreams.classify_error``: only transient ones are retried (backoff with jitter); quota, key,
billing and missing-model errors open the breaker so nobody calls again for a while.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass

from xintu.classify.rules import CATEGORIES
from xintu.upstreams import DEFAULT_VISION_MODEL, STOP, TRANSIENT, backoff_delay, classify_error

log = logging.getLogger(__name__)

PROMPT = (
    "你是相册分类助手。请把这张图片归入且仅归入下列一个类别：\n"
    "social_activities（多人聚会、合影、社交活动）、pets（宠物）、single_person（单人照片、自拍）、"
    "foods（美食、饮品）、travel_scenery（旅行、风景、建筑）、screenshot（手机或电脑屏幕截图）、"
    "idcard（身份证、护照、银行卡等证件卡片）、other（其他）。\n"
    '只输出一个 JSON 对象，不要输出其他文字：{"category": "类别英文名", "confidence": 0到1之间的小数, '
    '"description": "不超过30个字的中文描述"}'
)
#: Part of the cache key: bump ANSWER_RULES when the answer validation changes; the prompt text is
#: hashed in, and ``prompt_version(model)`` adds the model, so a new model never reuses old answers.
ANSWER_RULES = "v2"
PROMPT_VERSION = f"{ANSWER_RULES}-{hashlib.sha256(PROMPT.encode()).hexdigest()[:6]}"  # ≤ 9 characters
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def prompt_version(model: str) -> str:
    """The cache key's prompt part for ``model`` (≤ 16 characters, the column's size): answers of
    another model or prompt never match."""
    return f"{PROMPT_VERSION}-{hashlib.sha256(model.encode()).hexdigest()[:6]}"


class LlmFailure(Exception):
    """The LLM gave no usable answer; ``reason`` is a short stable tag for logs and metrics, ``kind``
    the class of ``xintu.upstreams.classify_error`` (``bad_answer`` for a reply we could not use)."""

    def __init__(self, reason: str, detail: str = "", kind: str = "bad_answer", code: str = "",
                 why: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.kind, self.code, self.why = reason, kind, code, why or reason


@dataclass
class LlmAnswer:
    category: str
    confidence: float
    description: str


def parse_answer(text: str) -> LlmAnswer:
    """Strictly validate the model's text. Tolerates only a Markdown code fence around the JSON."""
    m = _FENCE.match(text or "")
    try:
        obj = json.loads(m.group(1) if m else text)
    except (TypeError, ValueError):
        raise LlmFailure("bad_json", (text or "")[:80]) from None
    if not isinstance(obj, dict):
        raise LlmFailure("bad_json", "not an object")
    category, confidence, description = obj.get("category"), obj.get("confidence"), obj.get("description")
    if category not in CATEGORIES:
        raise LlmFailure("bad_category", str(category)[:40])
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise LlmFailure("bad_confidence", str(confidence)[:20])
    if not isinstance(description, str) or not description.strip():
        raise LlmFailure("bad_description")
    return LlmAnswer(category, round(float(confidence), 3), description.strip()[:30])


class ModelClient:
    def __init__(self, api_key: str, model: str = DEFAULT_VISION_MODEL, base_url: str | None = None,
                 timeout: float = 20.0, retries: int = 1, backoff: float = 0.3, breaker=None):
        self.api_key, self.model, self.base_url = api_key, model, base_url
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.breaker = breaker  # xintu.upstreams.Breaker or None

    @property
    def version(self) -> str:
        return self.model

    def _call_once(self, data: bytes, mime: str) -> LlmAnswer:
        from dashscope import MultiModalConversation
        uri = f"data:{mime};base64,{base64.b64encode(data).decode()}"
        messages = [{"role": "user", "content": [{"image": uri}, {"text": PROMPT}]}]
        kwargs = {"base_address": self.base_url} if self.base_url else {}  # per call: no global state
        try:
            resp = MultiModalConversation.call(model=self.model, messages=messages, api_key=self.api_key,
                                               request_timeout=self.timeout, temperature=0.1, **kwargs)
        except Exception as exc:  # the SDK raises requests' errors (time-outs, refused) as they are
            raise LlmFailure("transport", type(exc).__name__, kind=TRANSIENT) from exc
        status = getattr(resp, "status_code", None)
        if status != 200:
            code = str(getattr(resp, "code", "") or "")
            kind, why = classify_error(status, code)
            raise LlmFailure(f"http_{status}", code, kind=kind, code=code, why=why)
        try:
            content = resp.output.choices[0].message.content
            text = "".join(p.get("text", "") for p in content if isinstance(p, dict)) \
                if isinstance(content, list) else str(content)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise LlmFailure("bad_shape") from None
        return parse_answer(text)

    def classify(self, data: bytes, mime: str = "image/jpeg") -> LlmAnswer:
        """One answer, retrying transient errors (transport, Throttling.RateQuota, 5xx) a bounded number
        of times with jittered backoff — not bad answers (asking again for the same image rarely fixes a
        model that did not follow the format), and never quota/key/billing/model errors, which open the
        breaker instead."""
        if self.breaker is not None and self.breaker.is_open():
            raise LlmFailure("breaker_open", kind=STOP)
        attempt = 0
        while True:
            try:
                return self._call_once(data, mime)
            except LlmFailure as exc:
                if exc.kind == STOP and self.breaker is not None:
                    self.breaker.open(exc.why, exc.code, f"{self.model}: {exc}")
                if exc.kind != TRANSIENT or attempt >= self.retries:
                    raise
                attempt += 1
                log.info("qwen-vl retry %d after %s", attempt, exc)
                time.sleep(backoff_delay(attempt - 1, self.backoff))
