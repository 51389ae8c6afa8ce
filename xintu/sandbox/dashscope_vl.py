"""A fake DashScope MultiModalConversation endpoint (Qwen-VL), speaking the real HTTP wire format.

The real ``dashscope`` SDK reaches it with only ``dashscope.base_http_api_url`` changed, so tests and
offline demos exercise the same request/response code as production. Behaviour is switchable at run time
(Python attributes or ``POST /_fake/config`` with JSON): added latency, HTTP errors, garbage answers,
or a fixed answer; every call is counted (``/_fake/stats``), which is how tests prove singleflight.

Errors use Model Studio's real codes and statuses (``ERRORS``): 429 ``Throttling.RateQuota`` (transient)
and ``Throttling.AllocationQuota`` (quota gone), 401 ``InvalidApiKey``, 403 ``Arrearage``, 404
``ModelNotFound`` (also for any model ``xintu.upstreams`` does not list as current or legacy), 400
``DataInspectionFailed``. ``GET /compatible-mode/v1/models`` lists the models, as the OpenAI-compatible
endpoint does (``xintu doctor`` asks it).
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
MODELS_PATH = "/compatible-mode/v1/models"
# mode → (HTTP status, code, message) as Model Studio answers them
ERRORS = {
    "error500": (500, "InternalError", "An internal error has occured, please try again later."),
    "error429": (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    "quota": (429, "Throttling.AllocationQuota",
              "Allocated quota exceeded, please increase your quota limit."),
    "bad_key": (401, "InvalidApiKey", "Invalid API-key provided."),
    "arrearage": (403, "Arrearage", "Access denied, please make sure your account is in good standing."),
    "model_not_found": (404, "ModelNotFound", "Model not exist."),
    "moderation": (400, "DataInspectionFailed", "Input data may contain inappropriate content."),
}
MODES = ("ok", "garbage", "bad_category", "not_json", "hang", *ERRORS)


def offered_models() -> list[str]:
    """What the fake Model Studio offers: every model xintu.upstreams knows that is not retired."""
    from xintu.upstreams import MODELS
    return [name for name, info in MODELS.items() if info.status != "retired"]


def models_listing(req: Request, api_key: str | None = None) -> Response:
    """GET /compatible-mode/v1/models in the OpenAI-compatible shape (its errors too)."""
    auth = req.header("Authorization", "")
    if not auth.startswith("Bearer ") or len(auth) < 15 or (api_key and auth != f"Bearer {api_key}"):
        return _json(401, {"error": {"message": "Incorrect API key provided.",
                                     "type": "invalid_request_error", "code": "invalid_api_key"}})
    return _json(200, {"object": "list", "data": [{"id": name, "object": "model", "created": 1760000000,
                                                   "owned_by": "system"} for name in offered_models()]})


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
        self.api_key: str | None = None   # None: any key that looks real (sk-…); else only this one
        self.route("GET", "/_fake/stats", self._stats)
        self.route("POST", "/_fake/config", self._config)
        self.route("POST", PATH, self._generation)
        self.route("GET", MODELS_PATH, lambda req: models_listing(req, self.api_key))

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
        if not auth.startswith("Bearer ") or len(auth) < len("Bearer ") + 8 or (  # real keys are long: sk-…
                self.api_key and auth != f"Bearer {self.api_key}"):
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
        if mode in ERRORS:
            status, code, message = ERRORS[mode]
            return _json(status, {"code": code, "message": message, "request_id": rid})
        if mode == "not_json":
            return Response(200, b"<html>gateway</html>", {"Content-Type": "application/json"})
        try:
            request = json.loads(req.body)
        except ValueError:
            return _json(400, {"code": "InvalidParameter", "message": "bad json", "request_id": rid})
        if request.get("model") not in offered_models():
            status, code, message = ERRORS["model_not_found"]
            return _json(status, {"code": code, "message": message, "request_id": rid})
        image = _image_bytes(request)
        answer = st.answers_by_sha.get(hashlib.sha256(image).hexdigest() if image else "", st.answer)
        if st.answer_fn is not None and image:
            try:
                answer = st.answer_fn(image)
            except Exception:  # noqa: BLE001  an image the demo's model cannot read: refuse it like upstream
                status, code, message = ERRORS["moderation"]
                return _json(status, {"code": code, "message": message, "request_id": rid})
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
    fake.api_key = config.get("DASHSCOPE_API_KEY") or "sk-sandbox-key"
    return {"DASHSCOPE_BASE_URL": fake.base_url, "DASHSCOPE_API_KEY": fake.api_key}


def _local_answer(model_dir: str, image: bytes) -> dict:
    """The demo's 'LLM' answers with the local model, so answers look right while the wire path is real."""
    from xintu.classify.intake import decode
    from xintu.classify.local import get_local
    r = get_local(model_dir).classify(decode(image))
    return {"category": r.category, "confidence": r.confidence, "description": r.description}
