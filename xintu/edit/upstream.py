"""EditModelClient: one photo + one instruction → one edited image on DashScope.

Three upstream shapes exist (``xintu.upstreams.MODELS`` says which a model uses):
- ``multimodal`` — qwen-image-2.0(-pro), qwen-image-edit(-plus/-max): synchronous, through the SDK's
  public ``dashscope.MultiModalConversation.call``; the result URL comes back at once. The call has our
  own time-out (EDIT_CALL_TIMEOUT, below the worker's lease; the SDK's default is 300 s).
- ``image-generation`` — wan2.6-image, wan2.7-image(-pro): submit-and-poll on
  ``services/aigc/image-generation/generation`` with a messages input;
- ``image2image`` — wanx2.1-imageedit, wan2.5-i2i-preview (legacy): submit-and-poll on
  ``services/aigc/image2image/image-synthesis``.
The two async shapes are small documented HTTP calls (POST with ``X-DashScope-Async: enable``, then
``GET tasks/{id}``) made with requests here: the SDK's public ``ImageSynthesis.fetch`` cannot be pointed
at another endpoint per call, and its internals are not an API. The worker treats every shape the same:
``submit`` returns an Outcome that is final or ``pending`` with an upstream task id to ``poll``.

Errors are sorted by ``xintu.upstreams.classify_error``: transient → ``TransientUpstreamError`` (the
image stays queued), stop → ``UpstreamStopped`` (the breaker opens; nothing is failed or billed),
moderation → a failed image with error code ``content_moderated``, bad request → a failed image.
Images travel as ``data:`` URIs — a file path would make the SDK upload to Alibaba storage first.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from xintu.errors import Unavailable
from xintu.upstreams import MODERATION, STOP, TRANSIENT, classify_error, edit_api

SUBMIT_PATHS = {"image2image": "services/aigc/image2image/image-synthesis",
                "image-generation": "services/aigc/image-generation/generation"}


class TransientUpstreamError(Exception):
    """Upstream is throttling or down: leave the image queued and retry on a later pass."""


class UpstreamStopped(Exception):
    """Quota gone, key refused, arrears or model missing: no more calls until the breaker closes."""

    def __init__(self, reason: str, code: str, message: str):
        super().__init__(f"{code or reason}: {message}"[:255])
        self.reason, self.code = reason, code


@dataclass
class Outcome:
    state: str  # "pending" | "succeeded" | "failed"
    upstream_id: str | None = None
    url: str | None = None
    error: str | None = None
    error_code: str | None = None   # stable, user-facing: content_moderated | edit_failed


def data_uri(image: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def is_async_model(model: str) -> bool:
    return edit_api(model) != "multimodal"


def edit_api_key(config) -> str | None:
    return config.get("EDIT_DASHSCOPE_API_KEY") or config.get("DASHSCOPE_API_KEY")


def edit_configured(config) -> bool:
    """Whether a worker can reach an edit upstream: a key, or (outside production) the sandbox mode in
    which ``xintu worker`` starts the DashScope fake in its own process (cli/edit.py)."""
    if edit_api_key(config):
        return True
    return bool(config.get("SANDBOX")) and config.get("ENV") != "production"


def not_configured():
    return Unavailable("图片编辑服务未配置（EDIT_DASHSCOPE_API_KEY / DASHSCOPE_API_KEY）",
                       code="edit_not_configured")


class EditModelClient:
    def __init__(self, api_key: str | None, model: str, base_url: str | None = None,
                 call_timeout: float = 90.0, poll_timeout: float = 20.0):
        if not api_key:
            raise not_configured()
        self.api_key, self.model, self.base_url = api_key, model, base_url
        self.call_timeout, self.poll_timeout = float(call_timeout), float(poll_timeout)
        self.api = edit_api(model)

    @classmethod
    def from_config(cls, config, model: str) -> EditModelClient:
        """EDIT_DASHSCOPE_* override DASHSCOPE_* so editing can use its own key / endpoint."""
        return cls(edit_api_key(config), model,
                   config.get("EDIT_DASHSCOPE_BASE_URL") or config.get("DASHSCOPE_BASE_URL"),
                   call_timeout=float(config.get("EDIT_CALL_TIMEOUT", 90)))

    def _base(self) -> str:
        import dashscope

        return (self.base_url or dashscope.base_http_api_url).rstrip("/")

    def submit(self, image: bytes, mime: str, prompt: str, options: dict | None = None) -> Outcome:
        uri = data_uri(image, mime)
        params = {k: v for k, v in (options or {}).items() if k in ("negative_prompt", "watermark")}
        if self.api == "image2image":
            extra = {"function": "description_edit", "base_image_url": uri} if "imageedit" in self.model \
                else {"images": [uri]}
            body = {"model": self.model, "input": {"prompt": prompt, **extra},
                    "parameters": {"n": 1, **params}}
            return self._task(self._http("POST", SUBMIT_PATHS["image2image"], body))
        if self.api == "image-generation":
            body = {"model": self.model, "input": {"messages": [
                {"role": "user", "content": [{"text": prompt}, {"image": uri}]}]},
                "parameters": {"n": 1, **params}}
            return self._task(self._http("POST", SUBMIT_PATHS["image-generation"], body))
        return self._sync(uri, prompt, params)

    def _sync(self, uri: str, prompt: str, params: dict) -> Outcome:
        import dashscope
        import requests

        messages = [{"role": "user", "content": [{"image": uri}, {"text": prompt}]}]
        where = {"base_address": self.base_url} if self.base_url else {}  # per call: no global state
        try:
            rsp = dashscope.MultiModalConversation.call(
                model=self.model, messages=messages, api_key=self.api_key, request_timeout=self.call_timeout,
                **params, **where)
        except (requests.RequestException, OSError) as exc:
            raise TransientUpstreamError(f"{type(exc).__name__}: {exc}"[:255]) from exc
        if rsp.status_code != 200:
            return self._refused(rsp.status_code, rsp.code, rsp.message)
        try:
            url = rsp.output["choices"][0]["message"]["content"][0]["image"]
        except (KeyError, IndexError, TypeError):
            return Outcome("failed", error="upstream answer has no image", error_code="edit_failed")
        return Outcome("succeeded", url=url)

    def poll(self, upstream_id: str) -> Outcome:
        outcome = self._task(self._http("GET", f"tasks/{upstream_id}"))
        outcome.upstream_id = outcome.upstream_id or upstream_id
        return outcome

    # -- plumbing ----------------------------------------------------------------------------------
    def _http(self, method: str, path: str, body: dict | None = None):
        """One documented DashScope HTTP call; returns (status, json) or raises for transient/stop."""
        import requests

        headers = {"Authorization": f"Bearer {self.api_key}"}
        if method == "POST":
            headers["X-DashScope-Async"] = "enable"
        try:
            rsp = requests.request(method, f"{self._base()}/{path}", json=body, headers=headers,
                                   timeout=(5, self.poll_timeout))
            data = rsp.json()
        except (requests.RequestException, OSError, ValueError) as exc:
            raise TransientUpstreamError(f"{type(exc).__name__}: {exc}"[:255]) from exc
        return rsp.status_code, data if isinstance(data, dict) else {}

    def _refused(self, status, code, message) -> Outcome:
        kind, reason = classify_error(status, code)
        text = f"{status} {code or ''}: {message or ''}".strip()[:255]
        if kind == TRANSIENT:
            raise TransientUpstreamError(text)
        if kind == STOP:
            raise UpstreamStopped(reason, code or "", f"{self.model}: {message or ''}")
        return Outcome("failed", error=text,
                       error_code="content_moderated" if kind == MODERATION else "edit_failed")

    def _task(self, answer) -> Outcome:
        status, data = answer
        if status != 200:
            return self._refused(status, data.get("code"), data.get("message"))
        output = data.get("output") or {}
        task_id, state = output.get("task_id"), output.get("task_status")
        if state == "SUCCEEDED":
            urls = [r.get("url") for r in (output.get("results") or []) if r.get("url")]
            for choice in output.get("choices") or []:  # image-generation answers like a conversation
                urls += [c["image"] for c in (choice.get("message") or {}).get("content") or []
                         if isinstance(c, dict) and c.get("image")]
            if urls:
                return Outcome("succeeded", upstream_id=task_id, url=urls[0])
            return Outcome("failed", upstream_id=task_id, error="upstream task has no result",
                           error_code="edit_failed")
        if state in ("FAILED", "CANCELED", "UNKNOWN"):
            message, code = output.get("message") or state.lower(), output.get("code")
            kind, _ = classify_error(400, code)
            return Outcome("failed", upstream_id=task_id, error=f"{code}: {message}" if code else message,
                           error_code="content_moderated" if kind == MODERATION else "edit_failed")
        if not task_id:
            return Outcome("failed", error="upstream answer has no task id", error_code="edit_failed")
        return Outcome("pending", upstream_id=task_id)
