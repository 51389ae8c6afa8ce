"""The one exception hierarchy of xintu.

Every error a caller can cause is a ``XintuError`` with a stable machine-readable ``code`` and an HTTP
``status``.  The web layer renders it as ``{"error": {"code": ..., "message": ...}}``; the CLI prints
``Error: <message>`` on one line and exits non-zero.  Codes are part of the API: never rename one.
"""

from __future__ import annotations


class XintuError(Exception):
    status = 500
    code = "internal_error"
    message = "服务器内部错误"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 status: int | None = None, details: dict | None = None):
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(XintuError):
    status, code, message = 400, "bad_request", "请求参数错误"


class Unauthorized(XintuError):
    status, code, message = 401, "unauthorized", "需要登录或有效的令牌"


class PaymentRequired(XintuError):
    status, code, message = 402, "insufficient_credits", "积分不足"


class Forbidden(XintuError):
    status, code, message = 403, "forbidden", "没有权限"


class NotFound(XintuError):
    status, code, message = 404, "not_found", "资源不存在"


class Conflict(XintuError):
    status, code, message = 409, "conflict", "状态冲突"


class PayloadTooLarge(XintuError):
    status, code, message = 413, "payload_too_large", "上传内容过大"


class UnsupportedMediaType(XintuError):
    status, code, message = 415, "unsupported_media_type", "不支持的文件类型"


class Unprocessable(XintuError):
    status, code, message = 422, "validation_error", "请求内容校验失败"


class RateLimited(XintuError):
    status, code, message = 429, "rate_limited", "请求过于频繁，请稍后再试"


class UpstreamError(XintuError):
    status, code, message = 502, "upstream_error", "上游服务出错"


class Unavailable(XintuError):
    status, code, message = 503, "unavailable", "服务暂不可用"


class ConfigError(XintuError):
    """Configuration is missing or invalid; raised at start-up, never during a request."""

    status, code, message = 500, "config_error", "配置错误"


# HTTP status → stable code for errors raised by Flask/Werkzeug/APIFlask themselves (404 routes, 405,
# 413 MAX_CONTENT_LENGTH, 422 input validation).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "unavailable",
}
