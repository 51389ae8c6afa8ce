"""The OpenAPI document is the contract the PC and mobile clients are generated from.

Views describe themselves with APIFlask's own decorators; this module adds the parts APIFlask cannot
know, mechanically, in the app's spec processor (:func:`finish`):

- error responses name their stable codes: ``@bp.doc(responses=errors({400: ["image_missing"]}))`` gives
  the response the error schema, a description listing the codes and one example per code;
- responses every operation of a kind can give are added from its security and body: 401 with the
  scheme's codes, 403 for operations that need a bound user, 429 for device tokens, 400/413 for bodies,
  503 when the database is down;
- a second request body variant (``@json_alternative(Schema)``): uploads take multipart files or the
  same images as base64 in JSON;
- request bodies are required.

Regenerate the committed copy with ``xintu api spec --out docs/openapi.json`` (docs/DEVELOPING.md).
"""
from __future__ import annotations

import numbers

from apiflask.fields import Integer

ERROR_SCHEMA = {
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "stable machine-readable code"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
    "type": "object",
}
ERROR_REF = {"$ref": "#/components/schemas/HTTPError"}

# A real 48×32 PNG: the examples of upload bodies must be accepted as they are.
EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAADAAAAAgCAIAAADbtmxLAAAAqElEQVR42u2XsRGAIAxFNccc1k5k7RiOY+0kzuEkFnYqJIT8"
    "HEXSSh7v7h8YxnObh56Khs4qhLhKLc3Ltec+HdPqJ1Tw+K6pNUvmKr8tcq2EU9FpkYNNFYfcbIQ08rSRMMnZhiXHTa0WwuVV"
    "5kdkIQQTUs8PwsrxI7IWIVxqBTKpOxE2oshsnVgamVCsbCpG2Iel/sHZz9RqLeyr47VHL+8y6BmMm5qrGwvlPuCektYHAAAA"
    "AElFTkSuQmCC")

H5_COOKIE = "H5Cookie"
SECURITY_SCHEMES = {
    H5_COOKIE: {"type": "apiKey", "in": "cookie", "name": "xintu_h5",
                "description": "HttpOnly session cookie of the H5 member page, "
                               "set by POST /api/v1/h5/session"},
}

# Codes every operation of a kind can answer, by security scheme (401) and by situation.
AUTH_CODES = {
    "BearerAuth": ["unauthorized", "token_expired", "token_revoked"],
    "AdminBearerAuth": ["admin_login_required", "admin_session_expired"],
    H5_COOKIE: ["h5_login_required"],
}
MESSAGES = {  # example messages; clients show the server's message, never these
    "unauthorized": "需要登录或有效的令牌", "forbidden": "没有权限", "bad_request": "请求参数错误",
    "validation_error": "请求内容校验失败", "payload_too_large": "上传内容过大",
    "client_rate_limited": "请求过于频繁，请稍后再试", "database_unavailable": "数据库暂不可用",
    "not_found": "资源不存在", "token_expired": "登录已过期，请重新登录",
    "token_revoked": "该令牌已注销，请重新登录",
}


class JSONInteger(Integer):
    """An integer as JSON Schema means it: 3 and 3.0 are integers; "3", 3.5 and true are not."""

    def _validated(self, value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


def errors(table: dict[int, list[str]]) -> dict:
    """``@bp.doc(responses=errors({400: [...codes], 404: [...]}))``: error responses with their codes."""
    return {status: _error_response(codes) for status, codes in table.items()}


def json_alternative(schema):
    """Document ``schema`` as the ``application/json`` variant of the view's (multipart) request body."""
    def decorator(view):
        view._xintu_json_body = schema
        return view
    return decorator


def _example(code: str) -> dict:
    return {"value": {"error": {"code": code, "message": MESSAGES.get(code, code)}}}


def _error_response(codes, description: str | None = None) -> dict:
    return {"description": description or _describe(codes),
            "content": {"application/json": {"schema": ERROR_REF,
                                              "examples": {c: _example(c) for c in codes}}}}


def _describe(codes) -> str:
    return "Error codes: " + ", ".join(f"`{c}`" for c in codes)


def _add_codes(operation: dict, status: int, codes: list[str]) -> None:
    responses = operation.setdefault("responses", {})
    response = responses.get(str(status))
    if response is None:
        responses[str(status)] = _error_response(codes)
        return
    media = response.setdefault("content", {}).setdefault("application/json", {"schema": ERROR_REF})
    examples = media.setdefault("examples", {})
    for code in codes:
        examples.setdefault(code, _example(code))
    listed = ", ".join(f"`{c}`" for c in examples)
    head = response.get("description", "").split("Error codes:")[0].strip()
    if head in ("Authentication error", "Validation error", "Not found"):
        head = ""
    response["description"] = (head + " — " if head else "") + "Error codes: " + listed


class _Finished:
    """What the spec processor hands back to APIFlask (it calls ``to_dict()`` on it)."""

    def __init__(self, spec: dict):
        self._spec = spec

    def to_dict(self) -> dict:
        return self._spec


def finish(app, spec):
    """The app's spec processor (``SPEC_PROCESSOR_PASS_OBJECT``): the additions described above."""
    alternatives = {}
    for rule in app.url_map.iter_rules():
        schema = getattr(app.view_functions.get(rule.endpoint), "_xintu_json_body", None)
        if schema is not None:
            name = schema.__name__ if isinstance(schema, type) else type(schema).__name__
            if name not in spec.components.schemas:
                spec.components.schema(name, schema=schema)
            alternatives[_openapi_path(rule.rule)] = name
    doc = spec.to_dict()
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            body = operation.get("requestBody")
            if body is not None:
                body["required"] = True   # APIFlask never marks request bodies required; ours are
                if path in alternatives and method != "get":
                    body["content"]["application/json"] = {
                        "schema": {"$ref": f"#/components/schemas/{alternatives[path]}"}}
                if "application/json" in body["content"]:
                    _add_codes(operation, 400, ["bad_request"])    # not JSON at all
                _add_codes(operation, 413, ["payload_too_large"])
            for requirement in operation.get("security", []):
                for scheme, roles in requirement.items():
                    _add_codes(operation, 401, AUTH_CODES.get(scheme, ["unauthorized"]))
                    if scheme == "BearerAuth":
                        _add_codes(operation, 429, ["client_rate_limited"])
                    if roles:
                        _add_codes(operation, 403, ["forbidden"])
            if "422" in operation["responses"]:
                _add_codes(operation, 422, ["validation_error"])
            _add_codes(operation, 503, ["database_unavailable"])
            responses = operation["responses"]
            if not any(status < "400" for status in responses):   # doc(responses=…) dropped APIFlask's
                responses["200"] = {"description": "Successful response",
                                    "content": {"application/json": {"schema": {}}}}
            operation["responses"] = dict(sorted(responses.items()))
    return _Finished(doc)


def _openapi_path(rule: str) -> str:
    import re

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


SPEC_FILE = "docs/openapi.json"
REGENERATE = f"xintu api spec --out {SPEC_FILE}"


def document() -> dict:
    """The document as served, built by a throwaway app that no local setting can change."""
    import tempfile

    # the app imports this module (error schemas) and every area: only the spec build needs it
    from xintu.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"ENV": "testing", "SANDBOX": False, "INSTANCE_PATH": tmp, "SECRET_KEY": "s" * 40,
                          "DATABASE_URL": f"sqlite:///{tmp}/spec.sqlite3", "REPLICA_URL": None})
        return app.spec


def dumps(doc: dict) -> str:
    """The committed form: sorted keys, two-space indent, UTF-8 text, so diffs after a merge are small."""
    import json

    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
