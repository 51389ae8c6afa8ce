"""Admin API for the 管理后台 SPA: /api/v1/admin/...  (bearer token from /login).

The SPA is served by the web tier on its own origin; ADMIN_ALLOWED_ORIGINS lists the origins
allowed to call this API from a browser (no cookies are used, so no credentials mode is needed).
"""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import File, Integer, String
from apiflask.validators import FileSize, Length, OneOf, Range
from flask import current_app, g, request

from xintu.admin import auth, service
from xintu.admin.auth import admin_auth, operator_only
from xintu.apidoc import JSONInteger, errors
from xintu.errors import BadRequest, NotFound
from xintu.member.credits import MAX_ADJUST
from xintu.proxies import address_in, parse_networks
from xintu.releases import service as releases
from xintu.timeutil import iso

bp = APIBlueprint("admin", __name__, url_prefix="/api/v1/admin", tag="admin")


@bp.before_request
def _allowed_address():
    # ADMIN_ALLOWED_ADDRS: the 管理后台 API answers only these addresses / networks (the TCP peer after
    # ProxyFix's trusted hops); others get the same 404 as an unknown path.
    allowed = current_app.config.get("ADMIN_ALLOWED_ADDRS") or ()
    if allowed and not address_in(request.remote_addr, parse_networks(allowed, "ADMIN_ALLOWED_ADDRS")):
        raise NotFound("资源不存在", code="not_found")


@bp.after_request
def _cors(response):
    origin = request.headers.get("Origin")
    if origin and origin in (current_app.config.get("ADMIN_ALLOWED_ORIGINS") or ()):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _OPERATOR_ERRORS(*pairs):  # noqa: N802  views of the operator role: 403 for a viewer
    table = {403: ["operator_required"]}
    for status, codes in zip(pairs[::2], pairs[1::2], strict=False):
        table[status] = codes
    return errors(table)


class LoginIn(Schema):
    username = String(required=True, validate=Length(1, 64))
    password = String(required=True, validate=Length(1, 256))


class UsersQuery(Schema):
    q = String(load_default="", validate=Length(0, 64))
    page = Integer(load_default=1, validate=Range(1, 100000))
    per_page = Integer(load_default=20, validate=Range(1, 100))


class OrdersQuery(Schema):
    status = String(load_default="", validate=OneOf(("",) + service.ORDER_STATUSES))
    page = Integer(load_default=1, validate=Range(1, 100000))
    per_page = Integer(load_default=50, validate=Range(1, 100))


class AdjustIn(Schema):
    delta = JSONInteger(required=True, validate=Range(-MAX_ADJUST, MAX_ADJUST))
    reason = String(required=True, validate=Length(1, 200))


class RefundIn(Schema):
    reason = String(required=True, validate=Length(1, 80))
    amount_fen = Integer(load_default=None, strict=True, validate=Range(1, 10**9))


class InferenceIn(Schema):
    mode = String(required=True, validate=OneOf(("auto", "llm", "local")))


class ReleaseIn(Schema):
    file = File(required=True, validate=FileSize(max="1 GiB"))
    platform = String(required=True, validate=OneOf(releases.PLATFORMS))
    version = String(required=True, validate=Length(1, 32))
    notes = String(load_default="", validate=Length(0, 2000))


@bp.post("/login")
@bp.input(LoginIn, arg_name="body")
@bp.doc(summary="管理员登录",
        description="用户名或密码错误只有一种回答；连续失败后按账号与来源地址逐步延迟（429 login_throttled）",
        responses=errors({401: ["bad_credentials"], 429: ["login_throttled"]}))
def login(body):
    token, session = auth.login(body["username"], body["password"], request.remote_addr or "")
    return {"token": token, "expires_at": iso(session.expires_at), "username": session.admin.username,
            "role": session.admin.role,
            "idle_minutes": auth.conf("ADMIN_SESSION_IDLE_MINUTES")}


@bp.post("/logout")
@bp.auth_required(admin_auth)
@bp.output({}, status_code=204)
def logout():
    auth.logout(g.admin_session)
    return ""


@bp.get("/me")
@bp.auth_required(admin_auth)
def me():
    return {"username": g.admin.username, "role": g.admin.role,
            "expires_at": iso(g.admin_session.expires_at)}


@bp.get("/overview")
@bp.auth_required(admin_auth)
@bp.doc(summary="概览：今日数字、近 7 日趋势、图表 (SVG)")
def overview():
    return service.get_service().overview()


@bp.get("/users")
@bp.auth_required(admin_auth)
@bp.input(UsersQuery, location="query", arg_name="query")
def users(query):
    return service.get_service().search_users(query["q"], query["page"], query["per_page"])


@bp.get("/users/<int:user_id>")
@bp.auth_required(admin_auth)
@bp.doc(responses=errors({404: ["user_not_found"]}))
def user(user_id: int):
    return service.get_service().user_detail(user_id)


@bp.post("/users/<int:user_id>/credits")
@bp.auth_required(admin_auth)
@operator_only
@bp.input(AdjustIn, arg_name="body")
@bp.doc(summary="调整积分（运营角色）", description="写入积分流水，reason=admin_adjust，记录操作人",
        responses=_OPERATOR_ERRORS(400, ["reason_required", "invalid_delta"], 402, ["insufficient_credits"],
                                   404, ["user_not_found"]))
def adjust_credits(user_id: int, body):
    return service.get_service().adjust_credits(user_id, body["delta"], body["reason"], operator=g.admin.username)


class RevokeIn(Schema):
    session_id = Integer(load_default=None, validate=Range(1))


@bp.post("/users/<int:user_id>/sessions/revoke")
@bp.auth_required(admin_auth)
@operator_only
@bp.input(RevokeIn, arg_name="body")
@bp.doc(summary="注销用户的客户端登录（运营角色）",
        description="session_id 为空时注销全部；令牌随即 401 token_revoked",
        responses=_OPERATOR_ERRORS(404, ["user_not_found", "session_not_found"]))
def revoke_sessions(user_id: int, body):
    if not request.is_json:   # "all sessions" must be asked for with a body ({} or {"session_id": null})
        raise BadRequest("请求体必须是 JSON", code="bad_request")
    return service.get_service().revoke_sessions(user_id, body["session_id"], operator=g.admin.username)


@bp.get("/orders")
@bp.auth_required(admin_auth)
@bp.input(OrdersQuery, location="query", arg_name="query")
def orders(query):
    return service.get_service().list_orders(query["status"], query["page"], query["per_page"])


@bp.post("/orders/<out_trade_no>/refund")
@bp.auth_required(admin_auth)
@operator_only
@bp.input(RefundIn, arg_name="body")
@bp.doc(summary="退款（运营角色）", description="经微信支付退款（默认退剩余全部），记录操作人与原因；"
        "微信确认后按退款比例收回积分与会员天数",
        responses=_OPERATOR_ERRORS(400, ["invalid_amount", "refund_exceeds_left", "refund_reason_required",
                                         "refund_reason_too_long"],
                                   404, ["order_not_found"],
                                   409, ["order_not_refundable", "order_refunded", "refund_in_progress"],
                                   502, ["refund_request_failed", "refund_query_failed"],
                                   503, ["refund_before_payment"]))
def refund_order(out_trade_no: str, body):
    return service.get_service().refund_order(out_trade_no[:64], body["reason"], body["amount_fen"],
                                              operator=g.admin.username), 201


@bp.get("/releases")
@bp.auth_required(admin_auth)
def release_list():
    return {"items": [releases.release_dict(r) for r in releases.list_releases()]}


@bp.post("/releases")
@bp.auth_required(admin_auth)
@operator_only
@bp.input(ReleaseIn, location="form_and_files", arg_name="form")
@bp.doc(summary="上传新版本（运营角色）", description="服务器计算 SHA-256",
        responses={201: "created", **_OPERATOR_ERRORS(400, ["invalid_version", "empty_file"],
                                                     409, ["release_exists"],
                                                     415, ["invalid_installer_type"])})
def release_upload(form):
    upload = form["file"]
    release = releases.upload(upload.stream, upload.filename, platform=form["platform"],
                              version=form["version"], notes=form["notes"])
    return releases.release_dict(release), 201


@bp.get("/inference")
@bp.auth_required(admin_auth)
def inference():
    return service.get_service().inference()


@bp.put("/inference")
@bp.auth_required(admin_auth)
@operator_only
@bp.input(InferenceIn, arg_name="body")
@bp.doc(responses=_OPERATOR_ERRORS())
def set_inference(body):
    return service.get_service().set_inference(body["mode"], operator=g.admin.username)
