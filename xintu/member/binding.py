"""BindingService (docs/ARCHITECTURE.md, "QR login"): a PC client shows a follow QR code, the user scans it in WeChat,
the signed event binds the scene to that WeChat user, and the polling client gets its session token.

The scene is random (192 bits) and only ever shown inside WeChat's QR ticket; a binding can be polled
only by the device token that created it, and the bound token is handed out exactly once (a
compare-and-set on ``token_delivered``), so neither a guessed scene nor a second poller gets an identity.
A follower's SCAN (no decision on their part) binds only a fresh code, and the reply says which client is
being logged in, with a link to 我的设备.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from wechatpy.exceptions import WeChatClientException

from xintu import budgets, db
from xintu.auth import hash_token, issue_token
from xintu.errors import NotFound, RateLimited, UpstreamError
from xintu.member.sessions import platform_name
from xintu.member.users import profile
from xintu.models import ClassifyClaim, ClientSession, QrBinding, User
from xintu.timeutil import iso, to_local, utcnow
from xintu.wechat import official_account
from xintu.wechat.h5 import h5_url, with_query

QR_TTL = timedelta(minutes=10)


def qr_svg_data_uri(url: str) -> str:
    import segno
    return segno.make(url, error="m").svg_data_uri(scale=4, border=2)


class BindingService:
    def __init__(self, config):
        self.config = config

    def create(self, client, ip: str | None = None) -> dict:
        """Each QR code costs a WeChat API call and the official account's QR quota: limited per device
        (QR_PER_CLIENT per QR_TTL), per address or IPv6 /64 and for the whole service (per hour)."""
        now = utcnow()
        per_client = self.config["QR_PER_CLIENT"]
        if per_client and QrBinding.select().where(QrBinding.client == client.id,
                                                   QrBinding.created_at > now - QR_TTL).count() >= per_client:
            raise RateLimited("二维码请求过于频繁", code="qrcode_rate_limited")
        net = budgets.network_of(ip)   # None from the operator's CLI: only the global budget applies
        refused = budgets.take_all(
            ([(f"qr:net:{net}", self.config["QR_PER_ADDRESS_HOUR"], budgets.HOUR)] if net else [])
            + [("qr:all", self.config["QR_GLOBAL_HOUR"], budgets.HOUR)])
        if refused == "qr:all":
            raise RateLimited("二维码服务繁忙，请稍后再试", code="qrcode_global_rate_limited")
        if refused:
            raise RateLimited("此网络的二维码请求过于频繁", code="qrcode_address_rate_limited")
        scene = secrets.token_hex(16)   # 128 bits; hex, so it never reads as a CLI option
        try:
            answer = official_account(self.config).qrcode.create({
                "expire_seconds": int(QR_TTL.total_seconds()), "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene}}})
        except (WeChatClientException, OSError) as exc:
            raise UpstreamError(f"微信二维码生成失败: {getattr(exc, 'errmsg', exc)}",
                                code="wechat_qrcode_failed") from exc
        binding = QrBinding.create(scene=scene, client=client.id,
                                   ticket=answer["ticket"], url=answer["url"], expires_at=now + QR_TTL)
        return {"scene": scene, "ticket": binding.ticket, "url": binding.url, "expires_at": iso(binding.expires_at),
                "expires_in": int(QR_TTL.total_seconds()), "qr_image": qr_svg_data_uri(binding.url)}

    def bind(self, scene: str, user: User, *, follower: bool) -> QrBinding | None:
        """Called from a verified WeChat event: attach the scanning user to a live pending binding.

        ``follower``: the user already followed and sent a SCAN, which needs no decision on their part, so
        the QR code must also be fresh (QR_SCAN_FRESH_SECONDS): an old code an attacker shows around is
        refused. Returns the binding (with its client) or None."""
        now = utcnow()
        guard = (QrBinding.scene == scene) & QrBinding.status.in_(("pending", "scanned")) & (
            QrBinding.expires_at > now)
        if follower:
            guard &= QrBinding.created_at > now - timedelta(seconds=int(self.config["QR_SCAN_FRESH_SECONDS"]))
        if QrBinding.update(status="bound", user=user.id, bound_at=now).where(guard).execute() != 1:
            return None
        return (QrBinding.select(QrBinding, ClientSession).join(ClientSession)
                .where(QrBinding.scene == scene).get())

    def poll(self, client, scene: str) -> dict:
        binding = QrBinding.get_or_none(QrBinding.scene == scene, QrBinding.client == client.id)
        if binding is None:  # unknown, or somebody else's: indistinguishable on purpose
            raise NotFound("二维码不存在", code="binding_not_found")
        if binding.status in ("pending", "scanned") and binding.expires_at <= utcnow():
            QrBinding.update(status="expired").where(QrBinding.id == binding.id,
                                                     QrBinding.status == binding.status).execute()
            binding.status = "expired"
        result = {"status": binding.status, "expires_at": iso(binding.expires_at)}
        if binding.status != "bound" or binding.token_delivered:
            return result
        # The claim, the session and the recorded token hash commit together: a poll that fails half-way
        # leaves the binding undelivered (the next poll gets the token), and the compare-and-set on
        # token_delivered lets exactly one of several concurrent polls through.
        with db.atomic():
            claimed = QrBinding.update(token_delivered=True).where(
                QrBinding.id == binding.id, QrBinding.token_delivered == False).execute()
            if claimed != 1:
                return result
            user = User.get_by_id(binding.user_id)
            token, _ = issue_token(client_id=client.client_id, kind="bound", user=user,
                                   platform=client.platform, ip=client.last_ip or client.created_ip)
            QrBinding.update(client_token_hash=hash_token(token)).where(QrBinding.id == binding.id).execute()
            # The device's classify claims (original photo hashes) are the user's from now on.
            ClassifyClaim.update(user=user.id).where(ClassifyClaim.session == client.id,
                                                     ClassifyClaim.user.is_null()).execute()
        result.update(token=token, user=profile(user))
        return result


def login_notice(config, binding: QrBinding) -> str:
    """The reply to the scan that bound a client: which client, since when, and where to undo it."""
    devices = with_query(config["PUBLIC_BASE_URL"].rstrip("/") + "/wechat/oauth/start",
                         next=with_query(h5_url(config), view="devices"))
    when = to_local(binding.bound_at or utcnow()).strftime("%m-%d %H:%M")
    return (f"客户端登录成功：{platform_name(binding.client.platform)}（{when} 北京时间），"
            "请回到电脑上继续使用。"
            f"如果不是你本人在登录，请打开<a href=\"{devices}\">我的设备</a>退出该设备。")
