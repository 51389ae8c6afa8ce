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


class EditModelClient:
    def __init__(self, api_key: str, model: str, base_url: str | None = None):
        if not api_key:
            from xintu.errors import Unavailable

            raise Unavailable("图片编辑服务未配置 DASHSCOPE_API_KEY", code="edit_not_configured")
        self.api_key, self.model, self.base_url = api_key, model, base_url

    def _sdk(self):
        import dashscope

        if self.base_url:
            # Read by the SDK on every call; the sandbox and a private gateway both come in here.
            dashscope.base_http_api_url = self.base_url
        return dashscope

    def submit(self, image: bytes, mime: str, prompt: str, options: dict | None = None) -> Outcome:
        dashscope = self._sdk()
        uri = data_uri(image, mime)
        params = {k: v for k, v in (options or {}).items() if k in ("negative_prompt", "watermark")}
        if is_async_model(self.model):
            extra = {"function": "description_edit", "base_image_url": uri} if "imageedit" in self.model \
                else {"images": [uri]}
            rsp = _transport(dashscope.ImageSynthesis.async_call, model=self.model, prompt=prompt,
                             api_key=self.api_key, n=1, **extra, **params)
            if rsp.status_code != 200:
                return Outcome("failed", error=_describe(rsp))
            return self._from_task(rsp.output)
        messages = [{"role": "user", "content": [{"image": uri}, {"text": prompt}]}]
        rsp = _transport(dashscope.MultiModalConversation.call, model=self.model, messages=messages,
                         api_key=self.api_key, **params)
        if rsp.status_code != 200:
            return Outcome("failed", error=_describe(rsp))
        try:
            url = rsp.output["choices"][0]["message"]["content"][0]["image"]
        except (KeyError, IndexError, TypeError):
            return Outcome("failed", error="upstream answer has no image")
        return Outcome("succeeded", url=url)

    def poll(self, upstream_id: str) -> Outcome:
        rsp = _transport(self._sdk().ImageSynthesis.fetch, upstream_id, api_key=self.api_key)
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
