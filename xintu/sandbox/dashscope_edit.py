"""Fake DashScope image-edit service speaking the real wire protocol, for tests and offline use.

It answers the three calls our worker makes through the real ``dashscope`` SDK (only
``dashscope.base_http_api_url`` points here):
- ``POST /api/v1/services/aigc/image2image/image-synthesis`` with ``X-DashScope-Async: enable``
  (``ImageSynthesis.async_call``: wanx2.1-imageedit / wan2.5-i2i) → a PENDING task;
- ``GET /api/v1/tasks/{id}`` (``ImageSynthesis.fetch``) → PENDING / RUNNING / SUCCEEDED / FAILED;
- ``POST /api/v1/services/aigc/multimodal-generation/generation`` (``MultiModalConversation.call``,
  qwen-image-edit, synchronous) → the result image in ``choices[0].message.content``.
Result images (the input, colour-inverted, so a test can tell) are served by the fake itself at
``/results/{id}.png``, like the short-lived OSS URLs upstream. Latency and failures are switchable
on the instance: ``latency`` seconds, ``fail_sha256`` (images whose SHA-256 fails), ``fail_rate``,
``throttle_next`` (the next N submissions get 429 Throttling).
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUBMIT_PATH = "/api/v1/services/aigc/image2image/image-synthesis"
GENERATION_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
_TASK_PATH = re.compile(r"^/api/v1/tasks/([\w-]+)$")
_RESULT_PATH = re.compile(r"^/results/([\w-]+)\.png$")
_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.DOTALL)


class DashScopeEditFake:
    def __init__(self, api_key: str, latency: float = 0.0, fail_rate: float = 0.0, seed: int = 0):
        self.api_key = api_key
        self.latency = latency
        self.fail_rate = fail_rate
        self.fail_sha256: set[str] = set()
        self.throttle_next = 0
        self.submissions = 0  # accepted edit requests, async or sync: what upstream would bill
        self.tasks: dict[str, dict] = {}
        self.results: dict[str, bytes] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._httpd = None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        """The value for ``dashscope.base_http_api_url``."""
        return self.base_url + "/api/v1"

    def start(self, host: str = "127.0.0.1", port: int = 0):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, ctype, payload = fake.handle(self.command, self.path.split("?")[0],
                                                     dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="dashscope-edit-fake", daemon=True).start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc):
        self.stop()

    # -- protocol --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict, body: bytes):
        result = _RESULT_PATH.match(path)
        if method == "GET" and result:  # OSS-style URLs need no key
            data = self.results.get(result.group(1))
            return (200, "image/png", data) if data else _error(404, "NotFound", "no such object")
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        task = _TASK_PATH.match(path)
        if method == "GET" and task:
            return self._fetch(task.group(1))
        if method == "POST" and path in (SUBMIT_PATH, GENERATION_PATH):
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                return _error(400, "InvalidParameter", "body is not JSON")
            if path == SUBMIT_PATH:
                if headers.get("X-DashScope-Async") != "enable":
                    return _error(403, "AccessDenied", "current user api does not support synchronous calls")
                return self._submit(request)
            return self._generate(request)
        return _error(404, "NotFound", f"{method} {path}")

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
            self.submissions += 1
        return None

    def _will_fail(self, image: bytes) -> bool:
        with self._lock:
            return hashlib.sha256(image).hexdigest() in self.fail_sha256 or self._random.random() < self.fail_rate

    def _submit(self, request: dict):
        payload = request.get("input") or {}
        url = payload.get("base_image_url") or (payload.get("images") or [None])[0]
        image = _decode(url)
        refused = self._admit(image, payload.get("prompt"))
        if refused:
            return refused
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = {"submitted": time.monotonic(), "submit_time": _now(), "image": image,
                               "fail": self._will_fail(image)}
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
                else:
                    output.update(task_status="SUCCEEDED", results=[{"url": self._result_url(task_id, task)}],
                                  task_metrics={"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0})
                    return _json(200, {"request_id": str(uuid.uuid4()), "output": output,
                                       "usage": {"image_count": 1}})
        return _json(200, {"request_id": str(uuid.uuid4()), "output": output})

    def _generate(self, request: dict):
        messages = (request.get("input") or {}).get("messages") or []
        content = messages[-1].get("content", []) if messages else []
        image = next((_decode(c["image"]) for c in content if isinstance(c, dict) and "image" in c), None)
        prompt = next((c["text"] for c in content if isinstance(c, dict) and "text" in c), None)
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


def _json(status: int, data: dict):
    return status, "application/json", json.dumps(data, ensure_ascii=False).encode("utf-8")


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
    return fake, {"EDIT_DASHSCOPE_API_KEY": fake.api_key, "EDIT_DASHSCOPE_BASE_URL": fake.api_base}
