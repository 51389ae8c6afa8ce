"""WeChat protocol routes that mean nothing for a member: the callback URL's echo check and the start of
OAuth.  The event callback, the OAuth landing and the pay notification are member routes
(xintu.member.callbacks)."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import String
from apiflask.validators import URL
from flask import current_app, redirect, request

from xintu.apidoc import errors
from xintu.wechat import events, h5, oauth
from xintu.wechat.internal import internal_only

bp = APIBlueprint("wechat", __name__, tag="wechat")


@bp.get("/wechat/callback")
@bp.doc(summary="WeChat URL verification echo (web tier only)", hide=True)
@internal_only
def callback_echo():
    return events.verify_echo(current_app.config, request.args), 200, {"Content-Type": "text/plain"}


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
