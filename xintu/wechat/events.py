"""The official-account event callback (DESIGN §4 flow 2).

Every event is authenticated (signature over token/timestamp/nonce; in safe mode the msg_signature over
the ciphertext too), must be fresh, and is processed at most once: WeChat re-sends an event it got no
answer for within 5 s, so the (openid, CreateTime, Event) key is recorded in ``wechat_events`` inside the
same transaction as the event's effects.
"""
from __future__ import annotations

import logging
import time
from xml.parsers.expat import ExpatError

from peewee import IntegrityError
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from xintu import db
from xintu.errors import BadRequest, Forbidden
from xintu.member.binding import BindingService, login_notice
from xintu.member.credits import SIGNUP_BONUS, CreditService
from xintu.member.sessions import revoke_user_sessions
from xintu.member.users import ensure_user, mark_active, was_forgotten
from xintu.models import User, WechatEvent

log = logging.getLogger(__name__)
MAX_SKEW = 300


def verify_echo(config, args) -> str:
    _check(config, args)
    return args.get("echostr", "")


def _check(config, args):
    token = config.get("WECHAT_TOKEN") or ""
    try:
        check_signature(token, args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", ""))
    except InvalidSignatureException:
        raise Forbidden("签名无效", code="wechat_bad_signature") from None
    timestamp = args.get("timestamp", "")
    if not token or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW:
        raise Forbidden("事件时间戳过期", code="wechat_stale_event")


def handle_callback(config, args, body: bytes) -> str:
    """Verify, de-duplicate and process one pushed message; returns the XML (or 'success') to answer."""
    _check(config, args)
    crypto = None
    xml = body.decode("utf-8", "replace")
    try:
        if args.get("encrypt_type") == "aes":
            crypto = WeChatCrypto(config["WECHAT_TOKEN"], config["WECHAT_AES_KEY"], config["WECHAT_APP_ID"])
            xml = crypto.decrypt_message(xml, args.get("msg_signature", ""), args["timestamp"], args["nonce"])
        msg = parse_message(xml)
    except (InvalidSignatureException, InvalidAppIdException):
        raise Forbidden("消息签名无效", code="wechat_bad_signature") from None
    except (ExpatError, KeyError, ValueError, TypeError):
        raise BadRequest("消息格式错误", code="wechat_bad_message") from None
    if msg is None or msg.type != "event":
        return "success"  # plain messages get no automatic answer
    key = f"{msg.source}:{msg._data.get('CreateTime')}:{msg.event}"[:128]
    try:
        with db.atomic():
            WechatEvent.create(dedupe_key=key, openid=msg.source, event=msg.event[:32])
            text = _dispatch(config, msg)
    except IntegrityError:
        log.info("duplicate WeChat event %s ignored", key)
        return "success"
    if not text:
        return "success"
    reply = TextReply(message=msg, content=text).render()
    return crypto.encrypt_message(reply, args["nonce"], args["timestamp"]) if crypto else reply


def _dispatch(config, msg) -> str | None:
    if msg.event in ("subscribe", "subscribe_scan", "scan"):
        user, _ = ensure_user(msg.source)
        mark_active(user.id, subscribed=True)
        parts = []
        if msg.event != "scan":
            # erased before (even if the H5 page made the new user first): no second bonus (docs/PRIVACY.md)
            if was_forgotten(msg.source):
                parts.append("欢迎回到芯图相册！")
            else:
                bonus = CreditService.grant(user.id, SIGNUP_BONUS, "signup_bonus", f"user:{user.id}")
                parts.append(f"欢迎关注芯图相册！已赠送 {SIGNUP_BONUS} 积分。" if not bonus.duplicate
                             else "欢迎回到芯图相册！")
        scene = getattr(msg, "scene_id", None)
        if scene:
            binding = BindingService.bind(config, scene, user, follower=msg.event == "scan")
            parts.append(login_notice(config, binding) if binding
                         else "二维码已失效，请在客户端刷新后重新扫码。")
        return "\n".join(parts) or None
    if msg.event == "unsubscribe":
        user = User.get_or_none(User.openid == msg.source)
        if user is not None:
            User.update(subscribed=False).where(User.id == user.id).execute()
            revoke_user_sessions(user.id, reason="unsubscribe")
    return None
