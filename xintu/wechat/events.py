"""The official-account event callback, as a protocol: authenticate, decrypt, de-duplicate, parse
(docs/ARCHITECTURE.md, "Follow and scan events").

What an event means (a follow, a scan, an unfollow) is the caller's: ``handle_callback`` hands each new
event to the ``on_event`` it is given (``xintu.member.events.on_event``) and answers with its text.

Every event is authenticated, must be fresh, and is processed at most once: WeChat re-sends an event it
got no answer for within 5 s, so the (openid, CreateTime, Event) key is recorded in ``wechat_events``
inside the same transaction as the event's effects.

The URL ``signature`` covers token, timestamp and nonce only, never the body.  So:

- with ``WECHAT_AES_KEY`` set (safe mode, required in production) only ``encrypt_type=aes`` bodies are
  accepted, whose ``msg_signature`` covers the ciphertext; a plaintext body is refused whatever the query
  string says.  ``WECHAT_ALLOW_PLAINTEXT`` admits WeChat's compatible mode (both kinds) on purpose.
- every (timestamp, nonce, signature) is accepted once (``wechat_nonces``), in both modes, so a captured
  URL cannot carry a second body within the freshness window.  The identical request again (WeChat
  re-sends when our answer was late) is answered ``success`` without being processed; if processing
  failed on our side the signature is released so that re-send is processed.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import timedelta
from xml.parsers.expat import ExpatError

from peewee import IntegrityError
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from xintu import db
from xintu.errors import BadRequest, Forbidden, XintuError
from xintu.models import WechatEvent, WechatNonce
from xintu.timeutil import utcnow

log = logging.getLogger(__name__)
MAX_SKEW = 300


def verify_echo(config, args) -> str:
    _check(config, args)
    _accept_once(args)
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


def _signature_key(args) -> str:
    raw = f"{args.get('timestamp', '')}:{args.get('nonce', '')}:{args.get('signature', '')}"
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


def _accept_once(args, body: bytes = b"") -> bool:
    """Record this (timestamp, nonce, signature) with the body it carried.  True: first use.  False: the
    very same request again (WeChat re-sending what it got no timely answer for): not processed again.
    Any other body under a used signature is refused."""
    key, digest = _signature_key(args), hashlib.sha256(body).hexdigest()
    # Older rows can no longer pass the freshness check: keep the table to the live window.
    WechatNonce.delete().where(WechatNonce.created_at < utcnow() - timedelta(seconds=2 * MAX_SKEW)).execute()
    try:
        with db.atomic():
            WechatNonce.create(key=key, body_hash=digest)
        return True
    except IntegrityError:
        seen = WechatNonce.get_or_none(WechatNonce.key == key)
        if body and seen is not None and hmac.compare_digest(seen.body_hash or "", digest):
            return False
        raise Forbidden("签名已使用过", code="wechat_signature_reused") from None


def _forget(args) -> None:
    """Processing failed on our side (database down): let WeChat's retry of this request through."""
    try:
        WechatNonce.delete().where(WechatNonce.key == _signature_key(args)).execute()
    except Exception:  # noqa: BLE001  the original error is the one to report
        log.warning("could not release a WeChat callback signature after a failure")


def _encrypted(config, args) -> bool:
    """Whether this message must be (and is) decrypted; refuses plaintext in safe mode."""
    aes = args.get("encrypt_type") == "aes"
    if not config.get("WECHAT_AES_KEY"):
        if aes:
            raise BadRequest("未配置消息加解密密钥", code="wechat_encryption_not_configured")
        return False
    if not aes and not config.get("WECHAT_ALLOW_PLAINTEXT"):
        raise Forbidden("安全模式下只接受加密消息", code="wechat_plaintext_refused")
    return aes


def handle_callback(config, args, body: bytes, on_event) -> str:
    """Verify, de-duplicate and process one pushed message; returns the XML (or 'success') to answer.
    ``on_event(config, msg)`` does an event's work inside its de-duplication transaction and returns the
    text to reply (or None)."""
    _check(config, args)
    encrypted = _encrypted(config, args)
    if not _accept_once(args, body):
        log.info("WeChat re-sent a callback already accepted; answered without processing")
        return "success"
    try:
        return _process(config, args, body, encrypted, on_event)
    except XintuError:
        raise          # the request itself is bad: its signature stays used
    except Exception:
        _forget(args)
        raise


def _process(config, args, body: bytes, encrypted: bool, on_event) -> str:
    crypto = None
    xml = body.decode("utf-8", "replace")
    try:
        if encrypted:
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
            text = on_event(config, msg)
    except IntegrityError:
        log.info("duplicate WeChat event %s ignored", key)
        return "success"
    if not text:
        return "success"
    reply = TextReply(message=msg, content=text).render()
    return crypto.encrypt_message(reply, args["nonce"], args["timestamp"]) if crypto else reply

