"""Fake DashScope image-edit service speaking the real wire protocol, for tests and offline use.

It answers the three calls our worker makes through the real ``dashscope`` SDK (only
``dashscope.base_http_api_url`` points here):
- ``POST /api/v1/services/aigc/image2image/image-synthesis`` with ``X-DashScope-Async: enable``
  (wanx2.1-imageedit / wan2.5-i2i, legacy) → a PENDING task;
- ``POST /api/v1/services/aigc/image-generation/generation`` with ``X-DashScope-Async: enable``
  (wan2.6-image / wan2.7-image, a messages input) → a PENDING task;
- ``GET /api/v1/tasks/{id}`` → PENDING / RUNNING / SUCCEEDED / FAILED (image-generation results come as
  ``choices[0].message.content[0].image``, image2image ones as ``results[0].url``);
- ``POST /api/v1/services/aigc/multimodal-generation/generation`` (``MultiModalConversation.call``,
  qwen-image-2.0 / qwen-image-edit*, synchronous) → the result image in ``choices[0].message.content``;
- ``GET /compatible-mode/v1/models`` → the models offered (``xintu doctor``).
A model that ``xintu.upstreams`` lists as retired or does not know gets 404 ``ModelNotFound``;
``refuse_next = [(status, code, message), …]`` makes the next submissions fail with those (the real codes
are in ``dashscope_vl.ERRORS``).
Result images (the input, colour-inverted, so a test can tell) are served by the fake itself at
``/results/{id}.png``, like the short-lived OSS URLs upstream. Latency and failures are switchable
on the instance: ``latency`` seconds, ``fail_sha256`` (images whose SHA-256 fails), ``fail_rate``,
``throttle_next`` (the next N submissions get 429 Throttling), ``result_body`` (served instead of
every result image: a broken or huge download), ``result_redirect`` (result URLs answer 302 there).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import threading
import time
import uuid

from .base import Request, Response, SandboxServer
from .dashscope_vl import MODELS_PATH, models_listing, offered_models

SUBMIT_PATH = "/api/v1/services/aigc/image2image/image-synthesis"
IMAGE_GENERATION_PATH = "/api/v1/services/aigc/image-generation/generation"
GENERATION_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.DOTALL)


class DashScopeEditFake(SandboxServer):
    methods = ("GET", "POST")   # like the real gateway as the SDK sees it: no HEAD

    def __init__(self, api_key: str, latency: float = 0.0, fail_rate: float = 0.0, seed: int = 0):
        super().__init__()
        self.api_key = api_key
        self.latency = latency
        self.fail_rate = fail_rate
        self.fail_sha256: set[str] = set()
        self.throttle_next = 0
        self.refuse_next: list[tuple[int, str, str]] = []
        self.models_seen: list[str] = []
        self.result_body: bytes | None = None
        self.result_redirect: str | None = None
        self.submissions = 0  # accepted edit requests, async or sync: what upstream would bill
        self.tasks: dict[str, dict] = {}
        self.results: dict[str, bytes] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.route("GET", r"/results/([\w-]+)\.png", self._result)  # OSS-style URLs need no key
        self.route("GET", r"/api/v1/tasks/([\w-]+)", self._authorized(lambda req: self._fetch(req.match[1])))
        paths = (SUBMIT_PATH, GENERATION_PATH, IMAGE_GENERATION_PATH)
        edit_paths = "(" + "|".join(map(re.escape, paths)) + ")"
        self.route("POST", edit_paths, self._authorized(self._edit))
        self.route("GET", MODELS_PATH, lambda req: models_listing(req, self.api_key))

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        """The value for ``dashscope.base_http_api_url``."""
        return self.base_url + "/api/v1"

    def start(self, host: str = "127.0.0.1", port: int = 0):
        self._host, self._port = host, port
        return super().start()

    # -- protocol --------------------------------------------------------------------------------
    def _authorized(self, handler):
        """Upstream checks the key before it looks at the path: a bad key is a 401 even on a wrong URL."""
        def checked(req: Request) -> Response:
            if req.headers.get("Authorization") != f"Bearer {self.api_key}":
                return _error(401, "InvalidApiKey", "Invalid API-key provided.")
            return handler(req)
        return checked

    def not_found(self, req: Request) -> Response:
        return self._authorized(lambda _: _error(404, "NotFound", f"{req.method} {req.path}"))(req)

    def _result(self, req: Request) -> Response:
        data = self.results.get(req.match[1])
        if data and self.result_redirect:
            return Response.redirect(self.result_redirect)
        if data and self.result_body is not None:
            data = self.result_body
        if not data:
            return _error(404, "NotFound", "no such object")
        return Response(200, data, {"Content-Type": "image/png"})

    def _edit(self, req: Request) -> Response:
        try:
            request = json.loads(req.body or b"{}")
        except ValueError:
            return _error(400, "InvalidParameter", "body is not JSON")
        self.models_seen.append(str(request.get("model")))
        if request.get("model") not in offered_models():
            return _error(404, "ModelNotFound", "Model not exist.")
        if req.path == GENERATION_PATH:
            return self._generate(request)
        if req.headers.get("X-DashScope-Async") != "enable":
            return _error(403, "AccessDenied", "current user api does not support synchronous calls")
        return self._submit(request, req.path == IMAGE_GENERATION_PATH)

    def _admit(self, image: bytes | None, prompt):
        """Common checks of a new edit; returns an error response or None."""
        if not prompt:
            return _error(400, "InvalidParameter", "prompt is required")
        if image is None:
            return _error(400, "InvalidParameter", "the image must be a data: URI or a URL")
        with self._lock:
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return _error(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
            if self.refuse_next:
                return _error(*self.refuse_next.pop(0))
            self.submissions += 1
        return None

    def _will_fail(self, image: bytes) -> bool:
        with self._lock:
            return hashlib.sha256(image).hexdigest() in self.fail_sha256 or self._random.random() < self.fail_rate

    def _submit(self, request: dict, messages: bool = False):
        payload = request.get("input") or {}
        if messages:  # image-generation: the image and the text are parts of one user message
            image, prompt = _message_parts(payload.get("messages") or [])
        else:
            url = payload.get("base_image_url") or (payload.get("images") or [None])[0]
            image, prompt = _decode(url), payload.get("prompt")
        refused = self._admit(image, prompt)
        if refused:
            return refused
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = {"submitted": time.monotonic(), "submit_time": _now(), "image": image,
                               "fail": self._will_fail(image), "messages": messages}
        return _json(200, {"request_id": str(uuid.uuid4()),
                           "output": {"task_id": task_id, "task_status": "PENDING"}})

    def _fetch(self, task_id: str):
        task = self.tasks.get(task_id)
        output = {"task_id": task_id, "task_status": "UNKNOWN"}
        if task is not None:
            age = time.monotonic() - task["submitted"]
            output.update(task_status="PENDING" if age < self.latency / 2 else "RUNNING",
                          submit_time=task["submit_time"])
            if age >= self.latency:
                output.update(end_time=_now(), scheduled_time=task["submit_time"])
                if task["fail"]:
                    output.update(task_status="FAILED", code="DataInspectionFailed",
                                  message="Output data may contain inappropriate content.")
                elif task["messages"]:
                    output.update(task_status="SUCCEEDED", finished=True, choices=[{
                        "finish_reason": "stop", "message": {"role": "assistant", "content": [
                            {"type": "image", "image": self._result_url(task_id, task)}]}}])
                    return _json(200, {"request_id": str(uuid.uuid4()), "output": output,
                                       "usage": {"image_count": 1}})
                else:
                    output.update(task_status="SUCCEEDED", results=[{"url": self._result_url(task_id, task)}],
                                  task_metrics={"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0})
                    return _json(200, {"request_id": str(uuid.uuid4()), "output": output,
                                       "usage": {"image_count": 1}})
        return _json(200, {"request_id": str(uuid.uuid4()), "output": output})

    def _generate(self, request: dict):
        image, prompt = _message_parts((request.get("input") or {}).get("messages") or [])
        refused = self._admit(image, prompt)
        if refused:
            return refused
        time.sleep(self.latency)
        if self._will_fail(image):
            return _error(400, "DataInspectionFailed", "Output data may contain inappropriate content.")
        result_id = str(uuid.uuid4())
        url = self._result_url(result_id, {"image": image})
        return _json(200, {"request_id": str(uuid.uuid4()), "output": {"choices": [{
            "finish_reason": "stop", "message": {"role": "assistant", "content": [{"image": url}]}}]},
            "usage": {"image_count": 1, "width": 0, "height": 0}})

    def _result_url(self, key: str, task: dict) -> str:
        if key not in self.results:
            self.results[key] = _inverted_png(task["image"])
        return f"{self.base_url}/results/{key}.png"


def _message_parts(messages: list) -> tuple[bytes | None, str | None]:
    content = messages[-1].get("content", []) if messages and isinstance(messages[-1], dict) else []
    image = next((_decode(c["image"]) for c in content if isinstance(c, dict) and "image" in c), None)
    prompt = next((c["text"] for c in content if isinstance(c, dict) and "text" in c), None)
    return image, prompt


def _decode(url) -> bytes | None:
    match = _DATA_URI.match(url or "")
    if not match:
        return None
    try:
        return base64.b64decode(match.group(1), validate=True)
    except ValueError:
        return None


def _inverted_png(image: bytes) -> bytes:
    from PIL import Image, ImageOps

    out = io.BytesIO()
    try:
        with Image.open(io.BytesIO(image)) as img:
            ImageOps.invert(img.convert("RGB")).save(out, "PNG")
    except OSError:  # not an image we can read: still answer like the service would
        Image.new("RGB", (16, 16), "black").save(out, "PNG")
    return out.getvalue()


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S.000")


def _json(status: int, data: dict) -> Response:
    return Response.json(data, status, content_type="application/json")


def _error(status: int, code: str, message: str):
    return _json(status, {"request_id": str(uuid.uuid4()), "code": code, "message": message})


def start_for_worker(config) -> tuple[DashScopeEditFake, dict]:
    """For sandbox mode of `xintu worker` / `xintu edit run` (the only callers of the edit endpoints,
    so the fake lives in their process): start it; returns it and the config overrides that
    point image editing (only) at it."""
    import secrets

    key = config.get("EDIT_DASHSCOPE_API_KEY") or "sk-sandbox-" + secrets.token_hex(8)
    fake = DashScopeEditFake(api_key=key, latency=float(config.get("SANDBOX_EDIT_LATENCY", 2.0)),
                             fail_rate=float(config.get("SANDBOX_EDIT_FAIL_RATE", 0.0))).start()
    # SANDBOX: result URLs on the fake's own (http, loopback) origin are admitted (xintu.edit.results).
    return fake, {"EDIT_DASHSCOPE_API_KEY": fake.api_key, "EDIT_DASHSCOPE_BASE_URL": fake.api_base,
                  "SANDBOX": True}
