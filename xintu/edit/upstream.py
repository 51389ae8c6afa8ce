"""EditModelClient: one photo + one instruction → one edited image, through the dashscope SDK.

Two upstream shapes exist (see REFERENCE): qwen-image-edit is synchronous
(``MultiModalConversation.call``, the result URL comes back at once), while wanx2.1-imageedit and
wan2.5-i2i are submit-and-poll (``ImageSynthesis.async_call`` then ``ImageSynthesis.fetch``). The
worker treats both the same way: ``submit`` returns an Outcome that is either final or ``pending``
with an upstream task id to ``poll``. Images travel as ``data:`` URIs — a file path would make the
SDK upload to Alibaba storage first.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

# Statuses worth trying again later rather than failing the image (and refunding it).
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class TransientUpstreamError(Exception):
    """Upstream is throttling or down: leave the image queued and retry on a later pass."""


@dataclass
class Outcome:
    state: str  # "pending" | "succeeded" | "failed"
    upstream_id: str | None = None
    url: str | None = None
    error: str | None = None


def data_uri(image: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def is_async_model(model: str) -> bool:
    return "imageedit" in model or model.startswith("wan2.5-i2i")


def edit_api_key(config) -> str | None:
    return config.get("EDIT_DASHSCOPE_API_KEY") or config.get("DASHSCOPE_API_KEY")


def edit_configured(config) -> bool:
    """Whether a worker can reach an edit upstream: a key, or (outside production) the sandbox mode in
    which ``xintu worker`` starts the DashScope fake in its own process (cli/edit.py)."""
    if edit_api_key(config):
        return True
    return bool(config.get("SANDBOX")) and config.get("ENV") != "production"


def not_configured():
    from xintu.errors import Unavailable

    return Unavailable("图片编辑服务未配置（EDIT_DASHSCOPE_API_KEY / DASHSCOPE_API_KEY）", code="edit_not_configured")


class EditModelClient:
    def __init__(self, api_key: str | None, model: str, base_url: str | None = None):
        if not api_key:
            raise not_configured()
        self.api_key, self.model, self.base_url = api_key, model, base_url

    @classmethod
    def from_config(cls, config, model: str) -> EditModelClient:
        """EDIT_DASHSCOPE_* override DASHSCOPE_* so editing can use its own key / endpoint."""
        return cls(edit_api_key(config), model,
                   config.get("EDIT_DASHSCOPE_BASE_URL") or config.get("DASHSCOPE_BASE_URL"))

    def _where(self) -> dict:
        # Per call, never the module-wide dashscope.base_http_api_url: classification may point the
        # same process at another endpoint (and the sandbox runs one fake per area).
        return {"base_address": self.base_url} if self.base_url else {}

    def submit(self, image: bytes, mime: str, prompt: str, options: dict | None = None) -> Outcome:
        import dashscope

        uri = data_uri(image, mime)
        params = {k: v for k, v in (options or {}).items() if k in ("negative_prompt", "watermark")}
        if is_async_model(self.model):
            extra = {"function": "description_edit", "base_image_url": uri} if "imageedit" in self.model \
                else {"images": [uri]}
            rsp = _transport(dashscope.ImageSynthesis.async_call, model=self.model, prompt=prompt,
                             api_key=self.api_key, n=1, **extra, **params, **self._where())
            if rsp.status_code != 200:
                return Outcome("failed", error=_describe(rsp))
            return self._from_task(rsp.output)
        messages = [{"role": "user", "content": [{"image": uri}, {"text": prompt}]}]
        rsp = _transport(dashscope.MultiModalConversation.call, model=self.model, messages=messages,
                         api_key=self.api_key, **params, **self._where())
        if rsp.status_code != 200:
            return Outcome("failed", error=_describe(rsp))
        try:
            url = rsp.output["choices"][0]["message"]["content"][0]["image"]
        except (KeyError, IndexError, TypeError):
            return Outcome("failed", error="upstream answer has no image")
        return Outcome("succeeded", url=url)

    def poll(self, upstream_id: str) -> Outcome:
        from dashscope.api_entities.dashscope_response import ImageSynthesisResponse
        from dashscope.client.base_api import BaseAsyncApi

        # ImageSynthesis.fetch takes no **kwargs, so no base_address; its base class's fetch
        # (GET {base}/tasks/{id}) does, and we wrap the answer the same way it would.
        rsp = _transport(BaseAsyncApi.fetch, upstream_id, api_key=self.api_key, **self._where())
        rsp = ImageSynthesisResponse.from_api_response(rsp)
        if rsp.status_code != 200:
            return Outcome("failed", upstream_id=upstream_id, error=_describe(rsp))
        return self._from_task(rsp.output)

    @staticmethod
    def _from_task(output) -> Outcome:
        task_id, status = output["task_id"], output["task_status"]
        if status == "SUCCEEDED":
            urls = [r.get("url") for r in (output.get("results") or []) if r.get("url")]
            if urls:
                return Outcome("succeeded", upstream_id=task_id, url=urls[0])
            return Outcome("failed", upstream_id=task_id, error="upstream task has no result")
        if status in ("FAILED", "CANCELED", "UNKNOWN"):
            message = output.get("message") or status.lower()
            code = output.get("code")
            return Outcome("failed", upstream_id=task_id, error=f"{code}: {message}" if code else message)
        return Outcome("pending", upstream_id=task_id)


def _transport(call, *args, **kwargs):
    """One SDK call; throttling, 5xx and network trouble become TransientUpstreamError."""
    import requests

    try:
        rsp = call(*args, **kwargs)
    except (requests.RequestException, OSError) as exc:
        raise TransientUpstreamError(f"{type(exc).__name__}: {exc}"[:255]) from exc
    if rsp.status_code in _TRANSIENT_STATUS:
        raise TransientUpstreamError(_describe(rsp))
    return rsp


def _describe(rsp) -> str:
    return f"{rsp.status_code} {rsp.code or ''}: {rsp.message or ''}".strip()[:255]
