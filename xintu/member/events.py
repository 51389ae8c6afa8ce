"""What an official-account event means for a member: a follow (user, signup bonus), a scan of a login QR
code (the binding), an unfollow (sessions end).  ``xintu.wechat.events`` authenticates, decrypts and
de-duplicates the callback and calls :func:`on_event` inside the event's de-duplication transaction.
:func:`oauth_landed` is the H5 page's OAuth landing: the WeChat user arrives, gets a hand-off ticket."""
from __future__ import annotations

from xintu.member.binding import login_notice
from xintu.member.credits import SIGNUP_BONUS
from xintu.member.service import get_service
from xintu.member.sessions import revoke_user_sessions
from xintu.member.users import ensure_user, mark_active, was_forgotten
from xintu.models import User
from xintu.wechat import h5, oauth


def on_event(config, msg) -> str | None:
    """Do one parsed event's work; the text to reply to the user, or None."""
    if msg.event in ("subscribe", "subscribe_scan", "scan"):
        service = get_service()
        user, _ = ensure_user(msg.source)
        mark_active(user.id, subscribed=True)
        parts = []
        if msg.event != "scan":
            # erased before (even if the H5 page made the new user first): no second bonus (docs/PRIVACY.md)
            if was_forgotten(msg.source):
                parts.append("欢迎回到芯图相册！")
            else:
                bonus = service.credits.grant(user.id, SIGNUP_BONUS, "signup_bonus", f"user:{user.id}")
                parts.append(f"欢迎关注芯图相册！已赠送 {SIGNUP_BONUS} 积分。" if not bonus.duplicate
                             else "欢迎回到芯图相册！")
        scene = getattr(msg, "scene_id", None)
        if scene:
            binding = service.binding.bind(scene, user, follower=msg.event == "scan")
            parts.append(login_notice(config, binding) if binding
                         else "二维码已失效，请在客户端刷新后重新扫码。")
        return "\n".join(parts) or None
    if msg.event == "unsubscribe":
        user = User.get_or_none(User.openid == msg.source)
        if user is not None:
            User.update(subscribed=False).where(User.id == user.id).execute()
            revoke_user_sessions(user.id, reason="unsubscribe")
    return None


def oauth_landed(config, code: str, state: str, next_url: str) -> str:
    """Verify state, trade the code for the openid, and send the browser back with a hand-off ticket."""
    target = h5.checked_next(config, next_url)
    nonce_h = h5.check_state(state, target)
    user, _ = ensure_user(oauth.openid_for(config, code))
    mark_active(user.id)
    return h5.with_query(target, ticket=h5.make_ticket(user.id, nonce_h))
