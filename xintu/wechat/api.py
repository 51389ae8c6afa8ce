"""Routes WeChat calls (through the web tier): event callback, OAuth landing, pay notification."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import String
from apiflask.validators import URL
from flask import current_app, redirect, request

from xintu.apidoc import errors
from xintu.errors import PayloadTooLarge
from xintu.wechat import events, h5, oauth
from xintu.wechat.internal import internal_only

bp = APIBlueprint("wechat", __name__, tag="wechat")
MAX_BODY = 64 * 1024


def _body() -> bytes:
    if (request.content_length or 0) > MAX_BODY:
        raise PayloadTooLarge("消息过大", code="payload_too_large")
    return request.get_data(cache=False)


@bp.get("/wechat/callback")
@bp.doc(summary="WeChat URL verification echo (web tier only)", hide=True)
@internal_only
def callback_echo():
    return events.verify_echo(current_app.config, request.args), 200, {"Content-Type": "text/plain"}


@bp.post("/wechat/callback")
@bp.doc(summary="WeChat official-account events (web tier only)", hide=True)
@internal_only
def callback():
    reply = events.handle_callback(current_app.config, request.args, _body())
    return reply, 200, {"Content-Type": "application/xml" if reply != "success" else "text/plain"}


class StartQuery(Schema):
    next = String(validate=URL(require_tld=False, schemes={"http", "https"}), metadata={
        "description": "page to return to; must be on the H5 page's own origin (default: the H5 page)",
        "format": "uri"})


@bp.get("/wechat/oauth/start")
@bp.input(StartQuery, location="query", arg_name="query")
@bp.doc(summary="Start WeChat OAuth for the H5 member page (302 to WeChat)", responses={
    302: {"description": "to WeChat's authorize page; sets the per-browser nonce cookie", "headers": {
        "Location": {"description": "WeChat OAuth URL", "schema": {"type": "string"}}}},
    **errors({400: ["bad_redirect"]})})
def oauth_start(query):
    nonce = h5.new_nonce()
    response = redirect(oauth.authorize_url(current_app.config, query.get("next"), nonce), 302)
    h5.set_nonce_cookie(response, nonce)
    return response


@bp.get("/wechat/oauth")
@bp.doc(summary="WeChat OAuth landing (web tier only)", hide=True)
@internal_only
def oauth_landing():
    args = request.args
    return redirect(oauth.land(current_app.config, args.get("code", ""), args.get("state", ""),
                               args.get("next", "")), 302)


@bp.post("/wechat/pay/notify")
@bp.doc(summary="WeChat Pay v3 payment notification (web tier only)", hide=True)
@internal_only
def pay_notify():
    from xintu.member.orders import OrderService

    OrderService(current_app.config).handle_notify(request.headers, _body())
    return "", 204
