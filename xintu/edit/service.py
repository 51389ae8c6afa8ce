"""ImageEditService: accept an edit (validate, cache, reserve credits, queue) and report on it.

The upstream call never happens here: a request only writes rows. ``xintu worker`` processes
(xintu/edit/worker.py) claim queued tasks and talk to DashScope. Money flow, all with ref = task id:
reserve one credit per uncached image before anything is queued (402 when short, and then nothing
is stored or submitted) → each image that succeeds keeps its credit → when the task ends, one
refund for every image that did not succeed.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta

from flask import current_app

from xintu import db
from xintu.edit.images import check_count, check_prompt, prepare_image
from xintu.edit.upstream import edit_configured, not_configured
from xintu.errors import BadRequest, NotFound, PaymentRequired, Unavailable
from xintu.member.credits import CreditService
from xintu.models import EditCache, EditImage, EditTask
from xintu.timeutil import iso, utcnow
from xintu.upstreams import DEFAULT_EDIT_MODEL, Breaker

DEFAULT_MODEL = DEFAULT_EDIT_MODEL
SPEND, REFUND = "edit_spend", "edit_refund"  # ledger reasons; ref = task id for both
UPLOAD_CHUNK = 4 * 1024 * 1024
TERMINAL = ("succeeded", "failed", "cached")
_PUBLIC_STATUS = {"pending": "running"}
_OPTIONS = {"negative_prompt": str, "watermark": bool}


def check_options(options) -> dict:
    if options in (None, "", {}):
        return {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            raise BadRequest("options 必须是 JSON 对象", code="invalid_options") from None
    if not isinstance(options, dict) or set(options) - set(_OPTIONS):
        raise BadRequest(f"options 只能包含 {', '.join(_OPTIONS)}", code="invalid_options")
    for key, kind in _OPTIONS.items():
        if key in options and not isinstance(options[key], kind):
            raise BadRequest(f"options.{key} 类型不对", code="invalid_options")
    if len(options.get("negative_prompt", "")) > 500:
        raise BadRequest("negative_prompt 最多 500 个字", code="invalid_options")
    return options


def request_key(prompt: str, options: dict) -> str:
    return hashlib.sha256(json.dumps([prompt, options], sort_keys=True, ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


class ImageEditService:
    def __init__(self, config):
        self.config = config   # the app's config object: read at each call, so later changes apply
        self.breaker = Breaker("dashscope.edit")

    @property
    def model(self) -> str:
        return self.config.get("EDIT_MODEL") or DEFAULT_MODEL

    def create(self, user, uploads: list[bytes], prompt, options=None) -> dict:
        if not edit_configured(self.config):  # before anything is read, stored or reserved
            raise not_configured()
        prompt = check_prompt(prompt)
        options = check_options(options)
        check_count(len(uploads))
        if self.breaker.state() is not None:  # quota / key / billing trouble upstream: take no money
            raise Unavailable("图片编辑暂不可用，请稍后再试", code="edit_upstream_unavailable")
        prepared = [prepare_image(data, i) for i, data in enumerate(uploads)]
        key, now = request_key(prompt, options), utcnow()
        hits = {row.image_sha256: row for row in EditCache.select().where(
            EditCache.image_sha256.in_([p.sha256 for p in prepared]), EditCache.request_sha256 == key,
            EditCache.model == self.model, EditCache.expires_at > now,
            EditCache.result_task.is_null(False))}
        images = []
        for position, image in enumerate(prepared):
            hit = hits.get(image.sha256)
            if hit:
                # Served from where the earlier task stored it (see result()).
                images.append({"position": position, "sha256": image.sha256, "status": "cached",
                               "stored": [hit.result_task_id, hit.result_position]})
            else:
                images.append({"position": position, "sha256": image.sha256, "status": "queued",
                               "attempts": 0})
        paid = sum(1 for i in images if i["status"] == "queued")
        task_id = secrets.token_hex(16)
        with db.atomic():
            if paid:  # first, so a short balance stops everything before a row exists
                reserve(user.id, paid, task_id)
            task = EditTask.create(
                task_id=task_id, user=user.id, prompt=prompt, options=options or None, model=self.model,
                images=images, n_images=len(images), status="queued" if paid else "succeeded",
                credits_reserved=paid, finished_at=None if paid else now)
            for i, entry in enumerate(images):
                if entry["status"] == "queued":
                    store_image(task.id, i, prepared[i].mime, prepared[i].data)
            if hits:
                EditCache.update(hits=EditCache.hits + 1).where(
                    EditCache.id.in_([h.id for h in hits.values()])).execute()
        return describe(task)

    def get(self, user, task_id: str) -> dict:
        return describe(self._own(user, task_id))

    def result(self, user, task_id: str, index: int) -> tuple[bytes, str, str]:
        """The stored result image ``index`` of the user's task: (bytes, mime, ETag)."""
        task = self._own(user, task_id)
        entry = next((i for i in task.images if i["position"] == index), None)
        if entry is None or not entry.get("stored"):
            raise NotFound("这张图片没有结果", code="edit_result_not_found")
        source_task, position = entry["stored"]
        try:
            data, mime = load_image(source_task, position, kind="result")
        except LookupError:
            raise NotFound("这张图片没有结果", code="edit_result_not_found") from None
        return data, mime, hashlib.sha256(data).hexdigest()

    @staticmethod
    def _own(user, task_id: str) -> EditTask:
        task_id = str(task_id)
        task = None if len(task_id) != 32 else EditTask.get_or_none(
            EditTask.task_id == task_id, EditTask.user == user.id)
        if task is None:  # someone else's task is as absent as a made-up one
            raise NotFound("没有这个编辑任务", code="edit_task_not_found")
        return task


def get_service(app=None) -> ImageEditService:
    """The app's ImageEditService, built once per app (``app.extensions["xintu.edit"]``)."""
    app = app or current_app
    svc = app.extensions.get("xintu.edit")
    if svc is None:
        svc = app.extensions.setdefault("xintu.edit", ImageEditService(app.config))
    return svc


def reserve(user_id: int, amount: int, task_id: str) -> None:
    try:
        CreditService.spend(user_id, amount, SPEND, task_id)
    except PaymentRequired:
        raise PaymentRequired(f"积分不足：本次需要 {amount} 积分", code="insufficient_credits") from None


def refund_unused(user_id: int, amount: int, task_id: str) -> None:
    """The task's one refund; CreditService's unique (edit_refund, task id) makes a replay a no-op."""
    if amount > 0:
        CreditService.refund(user_id, amount, REFUND, task_id)


def store_image(task_pk: int, position: int, mime: str, data: bytes, kind: str = "upload") -> None:
    """Keep one image of a task (an upload, or a result downloaded from upstream) in edit_images.

    One statement per piece (see EditImage): each stays far below max_allowed_packet. Pieces
    already there for the same slot are replaced, so a retried step never hits the unique key.
    They are deleted by primary key, and only when there are some: a DELETE by slot that matches
    nothing gap-locks the end of the task index on MariaDB, and two new tasks storing their uploads
    at once then deadlock on each other's gap (seen as 503s under concurrent edit requests)."""
    with db.atomic():
        old = [p.id for p in EditImage.select(EditImage.id).where(
            EditImage.task == task_pk, EditImage.kind == kind, EditImage.position == position)]
        if old:
            EditImage.delete().where(EditImage.id.in_(old)).execute()
        for chunk, start in enumerate(range(0, len(data), UPLOAD_CHUNK)):
            EditImage.create(task=task_pk, kind=kind, position=position, chunk=chunk, mime=mime,
                             data=data[start:start + UPLOAD_CHUNK])


def load_image(task_pk: int, position: int, kind: str = "upload") -> tuple[bytes, str]:
    pieces = list(EditImage.select().where(EditImage.task == task_pk, EditImage.kind == kind,
                                           EditImage.position == position).order_by(EditImage.chunk))
    if not pieces:
        raise LookupError(f"{kind} {position} of task {task_pk} is gone")
    return b"".join(bytes(p.data) for p in pieces), pieces[0].mime


def remember_result(image_sha256: str, prompt: str, options, model: str, upstream_url: str,
                    task_pk: int, position: int, ttl_seconds: int) -> None:
    """Cache a success: the key points at the result stored with ``task_pk`` (not at upstream's URL,
    which expires after 24 h), so the TTL is ours to choose (EDIT_CACHE_TTL)."""
    now = utcnow()
    EditCache.insert(image_sha256=image_sha256, request_sha256=request_key(prompt, options or {}),
                     model=model, result_url=upstream_url, result_task=task_pk, result_position=position,
                     created_at=now, expires_at=now + timedelta(seconds=ttl_seconds)
                     ).on_conflict_replace().execute()


def result_path(task_id: str, index: int) -> str:
    return f"/api/v1/image-edit/{task_id}/results/{index}"


def describe(task: EditTask) -> dict:
    return {
        "task_id": task.task_id,
        "status": task.status,
        "prompt": task.prompt,
        "n_images": task.n_images,
        "images": [{"index": i["position"], "status": _PUBLIC_STATUS.get(i["status"], i["status"]),
                    # Our endpoint, never upstream's URL (it expires, and is upstream's business).
                    "url": result_path(task.task_id, i["position"]) if i.get("stored") else None,
                    "error": i.get("error"), "error_code": i.get("error_code"),
                    "cached": i["status"] == "cached"}
                   for i in task.images],
        "credits": {"reserved": task.credits_reserved, "charged": task.credits_charged,
                    "refunded": task.credits_refunded},
        "created_at": iso(task.created_at),
        "finished_at": iso(task.finished_at),
    }
