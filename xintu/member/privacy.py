"""Personal data rights (docs/PRIVACY.md): export everything we hold about a user, erase a user, and the
retention job for request_log and stored edit images.

Erasure keeps the ``users`` row as a tombstone (no openid, unionid or nickname; ``forgotten_at`` set) so
orders and the credit ledger keep their amounts, dates and reasons and `xintu credits audit` stays clean,
while nothing left names the person.  A keyed hash of the openid (``forgotten_identities``) lets a
returning follower in as a new user without a second signup bonus.
"""
from __future__ import annotations

import json
import zipfile
from datetime import timedelta

from peewee import fn

from xintu import db
from xintu.auth import revoke
from xintu.errors import BadRequest
from xintu.member.sessions import session_view
from xintu.member.users import openid_hash
from xintu.models import (
    ClassifyClaim,
    ClientSession,
    CreditLedger,
    EditCache,
    EditImage,
    EditTask,
    ForgottenIdentity,
    Order,
    QrBinding,
    RequestLog,
    User,
    WechatEvent,
)
from xintu.stats import rollup
from xintu.timeutil import iso, utcnow

FORMAT_VERSION = 1
DELETE_CHUNK = 500
ZIP_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def client_ids(user_id: int) -> list[str]:
    """The install ids the user's bound sessions named: request_log rows of these are the user's."""
    return [row.client_id for row in ClientSession.select(ClientSession.client_id).distinct()
            .where(ClientSession.user == user_id)]


def _stored_images(task_pks: list[int], sizes: bool = True) -> dict[int, list[dict]]:
    """Per task pk: the stored images (kind, position, mime and, with ``sizes``, bytes — which reads them)."""
    size = fn.SUM(fn.LENGTH(EditImage.data)) if sizes else fn.COUNT(EditImage.id)
    rows = (EditImage.select(EditImage.task, EditImage.kind, EditImage.position, EditImage.mime,
                             size.alias("bytes"))
            .where(EditImage.task.in_(task_pks))
            .group_by(EditImage.task, EditImage.kind, EditImage.position, EditImage.mime)
            .order_by(EditImage.task, EditImage.kind, EditImage.position).dicts()) if task_pks else []
    out: dict[int, list[dict]] = {}
    for row in rows:
        item = {"kind": row["kind"], "position": row["position"], "mime": row["mime"]}
        if sizes:
            item["bytes"] = int(row["bytes"] or 0)
        out.setdefault(row["task"], []).append(item)
    return out


def export(user: User, images: dict[int, list[dict]] | None = None) -> dict:
    """Everything we hold about ``user`` as one JSON-ready document (stored images are listed here and
    sent as a zip by :func:`export_images_zip`, which passes the listing it made while reading them)."""
    from flask import current_app

    sessions = list(ClientSession.select().where(ClientSession.user == user.id).order_by(ClientSession.id))
    orders = list(Order.select().where(Order.user == user.id).order_by(Order.id))
    ledger = list(CreditLedger.select().where(CreditLedger.user == user.id).order_by(CreditLedger.id))
    tasks = list(EditTask.select().where(EditTask.user == user.id).order_by(EditTask.id))
    images = images if images is not None else _stored_images([t.id for t in tasks])
    ids = client_ids(user.id)
    claims = (ClassifyClaim.select().where((ClassifyClaim.user == user.id)
                                           | ClassifyClaim.session.in_([s.id for s in sessions] or [0]))
              .order_by(ClassifyClaim.id))
    counts = (RequestLog.select(RequestLog.endpoint, fn.COUNT(RequestLog.id).alias("n"),
                                fn.MIN(RequestLog.ts).alias("first"), fn.MAX(RequestLog.ts).alias("last"))
              .where(RequestLog.client.in_(ids)).group_by(RequestLog.endpoint).dicts()) if ids else []
    order_rows = [{"out_trade_no": o.out_trade_no, "kind": o.kind, "package": o.package,
                   "quantity": o.quantity, "amount_fen": o.amount_fen, "status": o.status,
                   "transaction_id": o.transaction_id, "created_at": iso(o.created_at),
                   "paid_at": iso(o.paid_at), "closed_at": iso(o.closed_at)} for o in orders]
    return {
        "format": "xintu-personal-data", "version": FORMAT_VERSION, "exported_at": iso(utcnow()),
        "profile": {"id": user.id, "openid": user.openid, "unionid": user.unionid, "nickname": user.nickname,
                    "subscribed": user.subscribed, "member_expires_at": iso(user.member_expires_at),
                    "credits_balance": user.credits_balance, "created_at": iso(user.created_at),
                    "last_active_at": iso(user.last_active_at), "forgotten_at": iso(user.forgotten_at)},
        "sessions": [{**session_view(s, operator=True), "kind": s.kind,
                      "created_ip": s.created_ip} for s in sessions],
        "orders": order_rows,
        "refunds": [o for o in order_rows if o["status"] == "refunded"],
        "ledger": [{"id": e.id, "delta": e.delta, "reason": e.reason, "ref": e.ref,
                    "balance_after": e.balance_after, "note": e.note, "created_at": iso(e.created_at)}
                   for e in ledger],
        "edit_tasks": [{"task_id": t.task_id, "status": t.status, "prompt": t.prompt, "options": t.options,
                        "model": t.model, "n_images": t.n_images, "credits_charged": t.credits_charged,
                        "credits_refunded": t.credits_refunded, "created_at": iso(t.created_at),
                        "finished_at": iso(t.finished_at), "stored_images": images.get(t.id, [])}
                       for t in tasks],
        "classify_claims": [{"original_sha256": c.original_sha256, "image_sha256": c.image_sha256,
                             "created_at": iso(c.created_at)} for c in claims],
        "requests": [{"endpoint": r["endpoint"], "count": r["n"], "first": iso(r["first"]),
                      "last": iso(r["last"])} for r in counts],
        "retention_days": {"request_log": current_app.config["REQUEST_LOG_RETENTION_DAYS"],
                           "edit_images": current_app.config["EDIT_IMAGE_RETENTION_DAYS"]},
    }


def export_images_zip(user: User, out) -> int:
    """Write the export (data.json) and the user's stored edit images into the zip file ``out``
    (a file object), one image at a time. Returns the number of images."""
    tasks = list(EditTask.select().where(EditTask.user == user.id).order_by(EditTask.id))
    listed = _stored_images([t.id for t in tasks], sizes=False)   # each image is read once, below
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for task in tasks:
            for item in listed.get(task.id, []):
                data, mime = EditImage.load(task.id, item["position"], kind=item["kind"])
                item["bytes"] = len(data)
                name = f"images/{task.task_id}/{item['kind']}-{item['position']}.{ZIP_EXT.get(mime, 'bin')}"
                archive.writestr(name, data)
                del data
                count += 1
        archive.writestr("data.json", json.dumps(export(user, listed), ensure_ascii=False, indent=2))
    return count


def forget(user: User, reason: str, operator: str = "user") -> dict:
    """Erase ``user``: sessions revoked, identity replaced by a tombstone, stored images and prompts gone,
    the user's request_log rows removed; orders and ledger kept (amounts, dates, reasons)."""
    reason = (reason or "").strip()
    if not reason:
        raise BadRequest("注销必须写明原因", code="forget_reason_required")
    if user.forgotten_at is not None:
        return {"user_id": user.id, "already_forgotten": True}
    ids = client_ids(user.id)
    openid = user.openid
    with db.atomic():
        sessions = [s.id for s in ClientSession.select(ClientSession.id).where(ClientSession.user == user.id)]
        revoked = revoke(sessions, "forgotten")
        ClientSession.update(created_ip=None, last_ip=None).where(ClientSession.user == user.id).execute()
        task_pks = [t.id for t in EditTask.select(EditTask.id).where(EditTask.user == user.id)]
        images = _delete_task_images(task_pks)
        if task_pks:
            EditTask.update(prompt="", options=None, upstream_ids=None, error=None).where(
                EditTask.id.in_(task_pks)).execute()
            for task in EditTask.select(EditTask.id, EditTask.images).where(EditTask.id.in_(task_pks)):
                bare = [_bare(i) for i in task.images]
                EditTask.update(images=bare).where(EditTask.id == task.id).execute()
        QrBinding.delete().where(QrBinding.user == user.id).execute()
        WechatEvent.delete().where(WechatEvent.openid == openid).execute()
        requests = RequestLog.delete().where(RequestLog.client.in_(ids)).execute() if ids else 0
        claims = ClassifyClaim.delete().where((ClassifyClaim.user == user.id)
                                              | ClassifyClaim.session.in_(sessions or [0])).execute()
        ForgottenIdentity.insert(openid_hash=openid_hash(openid), user=user.id, reason=reason[:255],
                                 forgotten_at=utcnow()).on_conflict_ignore().execute()
        User.update(openid=f"forgotten:{user.id}", unionid=None, nickname=None, subscribed=False,
                    forgotten_at=utcnow()).where(User.id == user.id).execute()
        CreditLedger.update(note=None).where(CreditLedger.user == user.id,
                                             CreditLedger.reason != "admin_adjust").execute()
    return {"user_id": user.id, "sessions_revoked": revoked, "images_deleted": images,
            "request_log_deleted": requests, "classify_claims_deleted": claims,
            "orders_kept": Order.select().where(Order.user == user.id).count(),
            "ledger_kept": CreditLedger.select().where(CreditLedger.user == user.id).count(),
            "operator": operator}


def _bare(image: dict) -> dict:
    """An edit task's image record without the upstream URL or the stored copy."""
    return {"position": image.get("position"), "status": image.get("status"), "stored": False}


def _delete_task_images(task_pks: list[int]) -> int:
    if not task_pks:
        return 0
    EditCache.delete().where(EditCache.result_task.in_(task_pks)).execute()
    return EditImage.delete().where(EditImage.task.in_(task_pks)).execute()


def retention(config, now=None) -> dict:
    """Delete request_log rows older than REQUEST_LOG_RETENTION_DAYS (rolled up into daily_stats first)
    and stored edit images of tasks older than EDIT_IMAGE_RETENTION_DAYS (0 = keep)."""
    now = now or utcnow()
    out = {"request_log_deleted": 0, "edit_images_deleted": 0, "edit_tasks_touched": 0}
    log_days = int(config["REQUEST_LOG_RETENTION_DAYS"])
    if log_days:
        out["request_log_deleted"] = rollup.prune(log_days)["deleted"]
    image_days = int(config["EDIT_IMAGE_RETENTION_DAYS"])
    if image_days:
        cutoff = now - timedelta(days=image_days)
        while True:
            old = (EditTask.select(EditTask.id).join(EditImage, on=(EditImage.task == EditTask.id))
                   .where(EditTask.created_at < cutoff, EditTask.status.not_in(("queued", "running"))))
            pks = [t.id for t in old.distinct().limit(DELETE_CHUNK)]
            if not pks:
                break
            with db.atomic():
                out["edit_images_deleted"] += _delete_task_images(pks)
                gone = set(pks)
                for task in EditTask.select(EditTask.id, EditTask.images).where(EditTask.id.in_(pks)):
                    # "stored" is [task pk, position] of the bytes (another task's on a cache hit)
                    images = [{**i, "stored": i["stored"] if i.get("stored") and i["stored"][0] not in gone
                               else False} for i in task.images]
                    EditTask.update(images=images).where(EditTask.id == task.id).execute()
                out["edit_tasks_touched"] += len(pks)
    return out
