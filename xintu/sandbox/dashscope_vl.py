"""A fake DashScope MultiModalConversation endpoint (Qwen-VL), speaking the real HTTP wire format.

The real ``dashscope`` SDK reaches it with only ``dashscope.base_http_api_url`` changed, so tests and
offline demos exercise the same request/response code as production. Behaviour is switchable at run time
(Python attributes or ``POST /_fake/config`` with JSON): added latency, HTTP errors, garbage answers,
or a fixed answer; every call is counted (``/_fake/stats``), which is how tests prove singleflight.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid

from .base import Request, Response, SandboxServer

PATH = "/api/v1/services/aigc/multimodal-generation/generation"
MODES = ("ok", "error500", "error429", "garbage", "bad_category", "not_json", "hang")


class FakeState:
    def __init__(self):
        self.mode = "ok"
        self.latency = 0.0
        self.answer = {"category": "other", "confidence": 0.8, "description": "一张照片"}
        self.answers_by_sha: dict[str, dict] = {}   # sha256 of the image bytes → answer
        self.answer_fn = None       # image bytes → answer, when set (the embedded demo uses the local model)
        self.calls = 0
        self.inflight = 0
        self.max_inflight = 0       # most generation calls served at the same time (batch concurrency)
        self.lock = threading.Lock()

    def configure(self, **kw) -> None:
        if "mode" in kw and kw["mode"] not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        for key in ("mode", "latency", "answer", "answers_by_sha"):
            if key in kw:
                setattr(self, key, kw[key])
        if kw.get("reset_calls"):
            self.calls = self.max_inflight = 0


def _image_bytes(body: dict) -> bytes | None:
    for msg in body.get("input", {}).get("messages", []):
        for part in msg.get("content", []) if isinstance(msg.get("content"), list) else []:
            uri = part.get("image", "") if isinstance(part, dict) else ""
            if uri.startswith("data:") and "," in uri:
                return base64.b64decode(uri.split(",", 1)[1])
    return None


def _json(status: int, payload) -> Response:
    return Response.json(payload, status, content_type="application/json")


class FakeDashScope(SandboxServer):
    """``with FakeDashScope() as fake: dashscope.base_http_api_url = fake.base_url``."""

    methods = ("GET", "POST")   # like the real gateway as the SDK sees it: no HEAD

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.state = FakeState()
        self.route("GET", "/_fake/stats", self._stats)
        self.route("POST", "/_fake/config", self._config)
        self.route("POST", PATH, self._generation)

    @property
    def base_url(self) -> str:
        return super().base_url + "/api/v1"

    def not_found(self, req: Request) -> Response:
        return _json(404, {"code": "NotFound", "message": "no such path"})

    def _stats(self, req: Request) -> Response:
        st = self.state
        return _json(200, {"calls": st.calls, "mode": st.mode, "max_inflight": st.max_inflight})

    def _config(self, req: Request) -> Response:
        try:
            self.state.configure(**json.loads(req.body or b"{}"))
        except (ValueError, TypeError) as exc:
            return _json(400, {"code": "InvalidParameter", "message": str(exc)})
        return _json(200, {"ok": True})

    def _generation(self, req: Request) -> Response:
        st = self.state
        rid = str(uuid.uuid4())
        auth = req.header("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) < len("Bearer ") + 8:  # real keys are long: sk-…
            return _json(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided.",
                               "request_id": rid})
        with st.lock:
            st.calls += 1
            st.inflight += 1
            st.max_inflight = max(st.max_inflight, st.inflight)
            mode, latency = st.mode, st.latency
        try:
            time.sleep(latency if mode != "hang" else 3600)
        finally:
            with st.lock:
                st.inflight -= 1
        if mode == "error500":
            return _json(500, {"code": "InternalError", "message": "An internal error has occured.",
                               "request_id": rid})
        if mode == "error429":
            return _json(429, {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded.",
                               "request_id": rid})
        if mode == "not_json":
            return Response(200, b"<html>gateway</html>", {"Content-Type": "application/json"})
        try:
            request = json.loads(req.body)
        except ValueError:
            return _json(400, {"code": "InvalidParameter", "message": "bad json", "request_id": rid})
        image = _image_bytes(request)
        answer = st.answers_by_sha.get(hashlib.sha256(image).hexdigest() if image else "", st.answer)
        if st.answer_fn is not None and image:
            try:
                answer = st.answer_fn(image)
            except Exception as exc:
                return _json(400, {"code": "InvalidParameter.DataInspection", "message": str(exc)[:200],
                                   "request_id": rid})
        if mode == "garbage":
            text = "这张图片看起来像是一只猫，可能在睡觉。{category: cat"
        elif mode == "bad_category":
            text = json.dumps({**answer, "category": "landscape_painting"}, ensure_ascii=False)
        else:
            text = "```json\n" + json.dumps(answer, ensure_ascii=False) + "\n```"
        return _json(200, {
            "output": {"choices": [{"finish_reason": "stop",
                                    "message": {"role": "assistant", "content": [{"text": text}]}}]},
            "usage": {"input_tokens": 1250, "output_tokens": 40, "image_tokens": 1200},
            "request_id": rid,
        })


def start_embedded(config: dict) -> dict:
    """For `xintu serve`: start the fake only when asked (SANDBOX_LLM), else classification stays local-only.
    Returns the config overrides that point the classifier at it."""
    if not config.get("SANDBOX_LLM"):
        return {}
    import os
    model_dir = config.get("CLASSIFY_MODEL_DIR") or os.path.join(config["INSTANCE_PATH"], "models")
    fake = FakeDashScope().start()
    fake.state.answer_fn = lambda image: _local_answer(model_dir, image)
    return {"DASHSCOPE_BASE_URL": fake.base_url, "DASHSCOPE_API_KEY": config.get("DASHSCOPE_API_KEY")
            or "sk-sandbox-key"}


def _local_answer(model_dir: str, image: bytes) -> dict:
    """The demo's 'LLM' answers with the local model, so answers look right while the wire path is real."""
    from xintu.classify.intake import decode
    from xintu.classify.local import get_local
    r = get_local(model_dir).classify(decode(image))
    return {"category": r.category, "confidence": r.confidence, "description": r.description}
