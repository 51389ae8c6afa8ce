"""Member endpoints: QR binding for clients, profile, prices, and the H5 page's session and orders."""
from __future__ import annotations

import tempfile

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf
from flask import current_app, g, request, send_file, send_from_directory

from xintu import package_data
from xintu.apidoc import H5_COOKIE, errors
from xintu.auth import client_auth, current_user
from xintu.errors import NotFound
from xintu.member import prices, privacy, sessions
from xintu.member.credits import ledger_view
from xintu.member.orders import order_view, user_order, user_orders
from xintu.member.service import get_service
from xintu.member.users import profile
from xintu.wechat import h5

bp = APIBlueprint("member", __name__, tag="member")
FORGET_CONFIRM = "注销账号"
H5_DIR = package_data.SITES_DIR / "h5"


class SceneQuery(Schema):
    scene = String(required=True, validate=Length(8, 64))


class TicketIn(Schema):
    ticket = String(required=True, validate=Length(1, 512))


class ForgetIn(Schema):
    confirm = String(required=True, validate=OneOf((FORGET_CONFIRM,)),
                     metadata={"description": f"must be exactly {FORGET_CONFIRM}"})


class OrderIn(Schema):
    kind = String(required=True, validate=OneOf(("member", "credits")))
    package = String(load_default=None, validate=Length(1, 16), metadata={
        "description": "credits: a `package` of GET /api/v1/prices (e.g. \"10\"); ignored for member",
        "example": "10"})


class QrOut(Schema):
    scene = String(metadata={"description": "poll GET /api/v1/auth/wechat/binding?scene= with it"})
    ticket = String()
    url = String(metadata={"description": "what the QR code encodes"})
    expires_at = String()
    expires_in = Integer(metadata={"description": "seconds"})
    qr_image = String(metadata={"description": "the QR code as an SVG data: URI"})


class ProfileOut(Schema):
    id = Integer()
    nickname = String(allow_none=True)
    subscribed = Boolean()
    is_member = Boolean()
    member_expires_at = String(allow_none=True)
    credits_balance = Integer()
    created_at = String()


class BindingOut(Schema):
    status = String(metadata={"description": "pending|scanned|bound|expired"})
    expires_at = String()
    token = String(metadata={"description": "the bound client token, in the first bound answer only"})
    user = Nested(ProfileOut, metadata={"description": "with token"})


class LedgerOut(Schema):
    delta = Integer()
    reason = String()
    balance_after = Integer()
    created_at = String()


class H5MeOut(ProfileOut):
    ledger = List(Nested(LedgerOut), metadata={"description": "the 10 latest credit movements"})


class OkOut(Schema):
    ok = Boolean()


class OrderOut(Schema):
    out_trade_no = String()
    kind = String()
    package = String(allow_none=True)
    quantity = Integer()
    amount_fen = Integer(metadata={"description": "from the server's price table, in fen"})
    status = String(metadata={"description": "pending|paid|closed|refunded"})
    created_at = String()
    paid_at = String(allow_none=True)


class PayStep(Schema):
    mode = String(metadata={"description": "jsapi (WeixinJSBridge) | sandbox (offline cashier)"})
    params = Dict(metadata={"description": "appId, timeStamp, nonceStr, package, signType, paySign"})
    cashier_url = String(metadata={"description": "sandbox only"})


class NewOrderOut(OrderOut):
    pay = Nested(PayStep)


class OrderItem(OrderOut):
    """An order in a list (its own name: APIFlask registers a schema met first as a Nested only once)."""


class OrderListOut(Schema):
    items = List(Nested(OrderItem))


@bp.after_request
def _cors(response):
    # The member page may live on a CDN origin of our own (H5_BASE_URL); only that origin gets credentials.
    origin = request.headers.get("Origin")
    if origin and origin in h5.h5_origins(current_app.config):
        response.headers.update({"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                                 "Access-Control-Allow-Headers": "Content-Type",
                                 "Access-Control-Allow-Methods": "GET, POST"})
        response.vary.add("Origin")
    return response


# -- PC/mobile clients (device or bound token) ----------------------------------------------------
@bp.post("/api/v1/auth/wechat/qrcode")
@bp.auth_required(client_auth)
@bp.output(QrOut, status_code=201)
@bp.doc(summary="Create a follow QR code that binds this client to the WeChat user who scans it",
        responses=errors({429: ["qrcode_rate_limited", "qrcode_address_rate_limited",
                                "qrcode_global_rate_limited"]}))
def create_qrcode():
    return get_service().binding.create(g.client, request.remote_addr), 201


@bp.get("/api/v1/auth/wechat/binding")
@bp.auth_required(client_auth)
@bp.input(SceneQuery, location="query", arg_name="query")
@bp.output(BindingOut)
@bp.doc(summary="Binding status; once bound, returns the client session token exactly once",
        responses=errors({404: ["binding_not_found"]}))
def binding_status(query):
    return get_service().binding.poll(g.client, query["scene"])


@bp.get("/api/v1/me")
@bp.auth_required(client_auth, roles=["user"])
@bp.output(ProfileOut)
@bp.doc(summary="The bound user's profile, credits and membership (no openid)")
def me():
    return profile(current_user())


@bp.get("/api/v1/prices")
@bp.doc(summary="Price table (amounts in fen)")
def price_list():
    return prices.price_list(current_app.config)


# -- the H5 member page (session cookie after WeChat OAuth) ---------------------------------------
@bp.post("/api/v1/h5/session")
@bp.input(TicketIn, arg_name="body")
@bp.output(OkOut, headers={"Set-Cookie": String(metadata={"description": "xintu_h5=…; HttpOnly"})})
@bp.doc(summary="Trade the OAuth hand-off ticket for the HttpOnly session cookie",
        responses=errors({401: ["h5_ticket_invalid", "h5_ticket_used"]}))
def h5_session(body):
    user_id = h5.redeem_ticket(body["ticket"])
    response = current_app.json.response({"ok": True})
    h5.set_session_cookie(response, user_id)
    return response


@bp.get("/api/v1/h5/me")
@bp.output(H5MeOut)
@bp.doc(summary="Profile, credits and recent ledger for the H5 page", security=H5_COOKIE)
def h5_me():
    user = h5.current_user()
    return {**profile(user), "ledger": [ledger_view(e) for e in get_service().credits.history(user.id, 10)]}


@bp.get("/api/v1/h5/sessions")
@bp.doc(summary="我的设备: the clients logged in as the H5 user (platform, first/last seen, place)",
        security=H5_COOKIE)
def h5_sessions():
    user = h5.current_user()
    return {"items": [sessions.session_view(s) for s in sessions.user_sessions(user.id)]}


@bp.post("/api/v1/h5/sessions/<int:session_id>/revoke")
@bp.output({}, status_code=204)
@bp.doc(summary="Log one of the H5 user's clients out (its token answers 401 token_revoked)",
        security=H5_COOKIE, responses=errors({404: ["session_not_found"]}))
def h5_revoke_session(session_id: int):
    sessions.revoke_user_sessions(h5.current_user().id, session_id=session_id, reason="user")
    return ""


@bp.get("/api/v1/h5/export")
@bp.doc(summary="导出我的数据: everything we hold about the H5 user, as one JSON document",
        security=H5_COOKIE)
def h5_export():
    response = current_app.json.response(privacy.export(h5.current_user()))
    response.headers["Content-Disposition"] = "attachment; filename=xintu-my-data.json"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api/v1/h5/export.zip")
@bp.doc(summary="导出我的数据 with the stored edit images: data.json + images/ in a zip",
        security=H5_COOKIE, responses={200: {"description": "the zip",
                                             "content": {"application/zip": {"schema": {
                                                 "type": "string", "format": "binary"}}}}})
def h5_export_zip():
    user = h5.current_user()
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)   # big exports go to disk, not RAM
    privacy.export_images_zip(user, spool)
    spool.seek(0)
    return send_file(spool, mimetype="application/zip", as_attachment=True,
                     download_name="xintu-my-data.zip", max_age=0)


@bp.post("/api/v1/h5/forget")
@bp.input(ForgetIn, arg_name="body")
@bp.doc(summary="注销账号: erase the H5 user (needs confirm = 注销账号); the cookie is cleared",
        security=H5_COOKIE)
def h5_forget(body):
    result = privacy.forget(h5.current_user(), "用户在会员页注销账号")
    response = current_app.json.response({"ok": True, "user_id": result["user_id"]})
    response.delete_cookie(h5.COOKIE, path="/")
    return response


@bp.post("/api/v1/orders")
@bp.input(OrderIn, arg_name="body")
@bp.output(NewOrderOut, status_code=201)
@bp.doc(summary="Create a WeChat Pay JSAPI order; the amount comes from the server's price table",
        security=H5_COOKIE, responses=errors({400: ["unknown_package"], 429: ["too_many_pending_orders"],
                                              502: ["pay_prepay_failed"]}))
def create_order(body):
    return get_service().orders.create(h5.current_user(), body["kind"], body["package"]), 201


@bp.get("/api/v1/orders")
@bp.output(OrderListOut)
@bp.doc(summary="The H5 user's orders", security=H5_COOKIE)
def list_orders():
    return {"items": [order_view(o) for o in user_orders(h5.current_user().id)]}


@bp.get("/api/v1/orders/<out_trade_no>")
@bp.output(OrderOut)
@bp.doc(summary="One order of the H5 user", security=H5_COOKIE, responses=errors({404: ["order_not_found"]}))
def get_order(out_trade_no):
    return order_view(user_order(h5.current_user().id, out_trade_no))


# -- serving the page itself when no CDN is configured (embedded mode) ----------------------------
@bp.get("/h5/")
@bp.get("/h5/<path:name>")
@bp.doc(hide=True)
def h5_page(name="index.html"):
    if current_app.config.get("H5_BASE_URL") or not H5_DIR.is_dir():
        raise NotFound("页面不存在", code="not_found")
    return send_from_directory(H5_DIR, name, max_age=0)
