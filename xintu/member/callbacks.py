"""Routes WeChat calls (through the web tier) whose work is the member's: the event callback, the OAuth
landing and the pay notification.  The paths are the ones the web tier maps (xintu.ops.settings
WECHAT_ROUTES); the protocol side (signatures, decryption, de-duplication) is xintu.wechat's."""
from __future__ import annotations

from apiflask import APIBlueprint
from flask import current_app, redirect, request

from xintu.errors import PayloadTooLarge
from xintu.member import events as member_events
from xintu.member.service import get_service
from xintu.wechat import events
from xintu.wechat.internal import internal_only

# hidden from the OpenAPI document like every route WeChat calls (its tag would be listed twice)
bp = APIBlueprint("member_callbacks", __name__, tag="wechat", enable_openapi=False)
MAX_BODY = 64 * 1024


def _body() -> bytes:
    if (request.content_length or 0) > MAX_BODY:
        raise PayloadTooLarge("消息过大", code="payload_too_large")
    return request.get_data(cache=False)


@bp.post("/wechat/callback")
@bp.doc(summary="WeChat official-account events (web tier only)", hide=True)
@internal_only
def callback():
    reply = events.handle_callback(current_app.config, request.args, _body(), member_events.on_event)
    return reply, 200, {"Content-Type": "application/xml" if reply != "success" else "text/plain"}


@bp.get("/wechat/oauth")
@bp.doc(summary="WeChat OAuth landing (web tier only)", hide=True)
@internal_only
def oauth_landing():
    args = request.args
    return redirect(member_events.oauth_landed(current_app.config, args.get("code", ""), args.get("state", ""),
                                               args.get("next", "")), 302)


@bp.post("/wechat/pay/notify")
@bp.doc(summary="WeChat Pay v3 payment notification (web tier only)", hide=True)
@internal_only
def pay_notify():
    get_service().orders.handle_notify(request.headers, _body())
    return "", 204
