"""ModelClient: classification by Qwen-VL through the dashscope SDK, with a validated JSON answer.

The model is asked for strict JSON; anything else — prose, unknown category, confidence outside 0–1,
missing fields, HTTP errors, time-outs — is a failure (``LlmFailure``) that the service turns into a
local-model fallback. Nothing from here is cached unless it validated.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import time
from dataclasses import dataclass

from xintu.classify.rules import CATEGORIES

log = logging.getLogger(__name__)

#: Part of the cache key: bump when the prompt or the answer validation changes.
PROMPT_VERSION = "p1"
PROMPT = (
    "你是相册分类助手。请把这张图片归入且仅归入下列一个类别：\n"
    "social_activities（多人聚会、合影、社交活动）、pets（宠物）、single_person（单人照片、自拍）、"
    "foods（美食、饮品）、travel_scenery（旅行、风景、建筑）、screenshot（手机或电脑屏幕截图）、"
    "idcard（身份证、护照、银行卡等证件卡片）、other（其他）。\n"
    '只输出一个 JSON 对象，不要输出其他文字：{"category": "类别英文名", "confidence": 0到1之间的小数, '
    '"description": "不超过30个字的中文描述"}'
)
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


class LlmFailure(Exception):
    """The LLM gave no usable answer; ``reason`` is a short stable tag for logs and metrics."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


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
        raise LlmFailure("bad_json", (text or "")[:80])
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
    def __init__(self, api_key: str, model: str = "qwen-vl-plus", base_url: str | None = None,
                 timeout: float = 20.0, retries: int = 1, backoff: float = 0.3):
        self.api_key, self.model, self.base_url = api_key, model, base_url
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

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
            raise LlmFailure("transport", type(exc).__name__)
        status = getattr(resp, "status_code", None)
        if status != 200:
            raise LlmFailure(f"http_{status}", str(getattr(resp, "code", "")))
        try:
            content = resp.output.choices[0].message.content
            text = "".join(p.get("text", "") for p in content if isinstance(p, dict)) \
                if isinstance(content, list) else str(content)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise LlmFailure("bad_shape")
        return parse_answer(text)

    def classify(self, data: bytes, mime: str = "image/jpeg") -> LlmAnswer:
        """One answer, retrying transport errors and 429/5xx a bounded number of times (not bad answers:
        asking again for the same image rarely fixes a model that did not follow the format)."""
        attempt = 0
        while True:
            try:
                return self._call_once(data, mime)
            except LlmFailure as exc:
                retryable = exc.reason == "transport" or exc.reason.removeprefix("http_") in \
                    {str(s) for s in RETRYABLE_STATUS}
                if not retryable or attempt >= self.retries:
                    raise
                attempt += 1
                log.info("qwen-vl retry %d after %s", attempt, exc)
                time.sleep(self.backoff * attempt)
