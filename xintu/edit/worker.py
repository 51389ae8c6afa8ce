"""EditWorker: runs queued image-edit tasks against DashScope, outside any web request.

Any number of ``xintu worker`` processes, on any hosts, share the queue in the DB. A worker claims
one task at a time (``SELECT … FOR UPDATE SKIP LOCKED`` on MySQL so claimers never wait on each
other, then a compare-and-set on ``claimed_by``), takes one step (submit queued images, poll
pending ones), saves, and lets go. Every save is guarded by ``claimed_by = me``: a worker whose
lease expired — it hung, or died and came back — cannot overwrite the task or move money again.
A claim expires after ``lease`` seconds without progress, so a dead worker's task is picked up
by the next claimer, and ``sweep`` (cron) finishes overdue tasks even when no worker runs.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import timedelta

from xintu import db
from xintu.edit.results import BadResult, fetch_result
from xintu.edit.service import (DEFAULT_MODEL, TERMINAL, load_image, refund_unused, remember_result,
                                store_image)
from xintu.edit.upstream import EditModelClient, TransientUpstreamError
from xintu.models import EditCache, EditImage, EditTask
from xintu.timeutil import utcnow

log = logging.getLogger(__name__)


class LostClaim(Exception):
    """Another worker owns the task now; drop this step."""


class EditWorker:
    def __init__(self, config, worker_id: str | None = None, client_factory=None):
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"[:64]
        self.lease = timedelta(seconds=float(config.get("EDIT_LEASE_SECONDS", 120)))
        self.poll_interval = timedelta(seconds=float(config.get("EDIT_POLL_INTERVAL", 2)))
        self.timeout = timedelta(seconds=float(config.get("EDIT_TASK_TIMEOUT", 900)))
        self.max_attempts = int(config.get("EDIT_MAX_ATTEMPTS", 5))
        self.cache_ttl = int(config.get("EDIT_CACHE_TTL", 30 * 86400))
        self.result_max_bytes = int(config.get("EDIT_RESULT_MAX_BYTES", 30 * 1024 * 1024))
        self.result_timeout = float(config.get("EDIT_RESULT_TIMEOUT", 60))
        self._factory = client_factory or (lambda model: EditModelClient.from_config(config, model))
        self._clients: dict = {}

    # -- claiming --------------------------------------------------------------------------------
    def claim(self, overdue_only: bool = False) -> EditTask | None:
        now = utcnow()
        free = EditTask.claimed_by.is_null() | (EditTask.claimed_at < now - self.lease)
        cond = EditTask.status.in_(("queued", "running")) & free
        if overdue_only:
            cond &= EditTask.created_at < now - self.timeout
        else:  # a task just stepped waits poll_interval before its next poll
            cond &= (EditTask.status == "queued") | (EditTask.updated_at <= now - self.poll_interval)
        with db.atomic():
            query = EditTask.select(EditTask.id).where(cond).order_by(EditTask.updated_at, EditTask.id).limit(1)
            if db.is_mysql():
                query = query.for_update(skip_locked=True)
            row = query.first()
            if row is None:
                return None
            won = (EditTask.update(claimed_by=self.id, claimed_at=now, status="running")
                   .where(EditTask.id == row.id, cond).execute())
        return EditTask.get_by_id(row.id) if won == 1 else None

    # -- one step --------------------------------------------------------------------------------
    def step(self, task: EditTask) -> None:
        images = task.images
        overdue = utcnow() >= task.created_at + self.timeout
        client = None   # built at the first image that needs upstream: a last sweep may need none
        for image in images:
            if overdue and image["status"] == "queued":
                continue  # too late to start; pending ones still get a last poll
            if image["status"] not in ("queued", "pending"):
                continue
            try:
                client = client or self._client(task.model or DEFAULT_MODEL)
            except Exception as exc:  # noqa: BLE001  no key, bad model, SDK missing: no image can run
                log.error("task %s: edit upstream unusable: %s", task.task_id, exc)
                self._fail_unfinished(images, f"edit upstream unusable: {exc}")
                break
            try:
                if image["status"] == "queued":
                    data, mime = load_image(task.id, image["position"])
                    outcome = client.submit(data, mime, task.prompt, task.options)
                else:
                    outcome = client.poll(image["upstream_id"])
            except Exception as exc:
                image["attempts"] = image.get("attempts", 0) + 1
                if isinstance(exc, TransientUpstreamError):
                    log.warning("task %s image %s: %s", task.task_id, image["position"], exc)
                else:
                    log.exception("task %s image %s failed unexpectedly", task.task_id, image["position"])
                if image["attempts"] >= self.max_attempts:
                    image.update(status="failed", error=str(exc)[:200])
                continue
            self._apply(task, image, outcome)
            self._save(task, images)  # progress is durable per image; also renews the lease
        if overdue:
            self._fail_unfinished(images, "timeout")
        if task.claimed_by == self.id:  # else the last image's save already finished the task
            self._save(task, images, release=True)

    @staticmethod
    def _fail_unfinished(images: list, error: str) -> None:
        for image in images:
            if image.get("status") not in TERMINAL:
                image.update(status="failed", error=error[:200])

    def abandon(self, task: EditTask, error: str) -> None:
        """End a task this worker holds that cannot go on: every unfinished image fails and is refunded
        (the saved images, as stored in the DB, not whatever a failed step left in memory)."""
        fresh = EditTask.get_or_none(EditTask.id == task.id, EditTask.claimed_by == self.id)
        if fresh is None:
            raise LostClaim(task.task_id)
        images = fresh.images
        self._fail_unfinished(images, error)
        self._save(fresh, images, release=True)

    def _apply(self, task, image, outcome) -> None:
        if outcome.upstream_id:
            image["upstream_id"] = outcome.upstream_id
        if outcome.state == "succeeded":
            # Keep the result now: upstream's URL expires, and a result we cannot fetch or read is
            # no result for the user — that image fails and its credit is refunded.
            try:
                data, mime = fetch_result(outcome.url, self.result_max_bytes, self.result_timeout)
            except BadResult as exc:
                log.warning("task %s image %s: %s", task.task_id, image["position"], exc)
                image.update(status="failed", error=str(exc)[:200], upstream_url=outcome.url)
                return
            store_image(task.id, image["position"], mime, data, kind="result")
            image.update(status="succeeded", stored=[task.id, image["position"]], upstream_url=outcome.url,
                         charged=True)  # this image's credit is spent
            remember_result(image["sha256"], task.prompt, task.options, task.model or DEFAULT_MODEL,
                            outcome.url, task.id, image["position"], self.cache_ttl)
        elif outcome.state == "failed":
            image.update(status="failed", error=(outcome.error or "failed")[:200])
        else:
            image["status"] = "pending"

    def _save(self, task: EditTask, images: list, release: bool = False) -> None:
        now = utcnow()
        charged = sum(1 for i in images if i.get("charged"))
        fields = {"images": images, "credits_charged": charged, "updated_at": now, "claimed_at": now,
                  "upstream_ids": [i["upstream_id"] for i in images if i.get("upstream_id")] or None}
        done = all(i["status"] in TERMINAL for i in images)
        refund = task.credits_reserved - charged
        if done:
            ok = sum(1 for i in images if i["status"] in ("succeeded", "cached"))
            errors = sorted({i["error"] for i in images if i.get("error")})
            fields.update(status="succeeded" if ok == len(images) else "partial" if ok else "failed",
                          finished_at=now, credits_refunded=refund, claimed_by=None,
                          error="; ".join(errors)[:255] or None)
        elif release:
            fields["claimed_by"] = None
        with db.atomic():
            saved = EditTask.update(fields).where(EditTask.id == task.id, EditTask.claimed_by == self.id).execute()
            if saved != 1:
                raise LostClaim(task.task_id)
            if done:
                refund_unused(task.user_id, refund, task.task_id)
                EditImage.delete().where(EditImage.task == task.id, EditImage.kind == "upload").execute()
        for key, value in fields.items():
            setattr(task, key, value)

    def _client(self, model: str):
        if model not in self._clients:
            self._clients[model] = self._factory(model)
        return self._clients[model]

    # -- loops -----------------------------------------------------------------------------------
    def run_once(self, overdue_only: bool = False) -> bool:
        """Claim and step one task; False when nothing was claimable."""
        task = self.claim(overdue_only)
        if task is None:
            return False
        self._settle(task)
        return True

    def _settle(self, task: EditTask) -> None:
        """One step of ``task``; whatever goes wrong in it ends (and refunds) that task, not the worker."""
        try:
            self.step(task)
            return
        except LostClaim:
            log.warning("task %s was taken over by another worker", task.task_id)
            return
        except Exception as exc:  # noqa: BLE001  one task must never stop the worker or strand credits
            log.exception("task %s: step failed, refunding what is unfinished", task.task_id)
            error = f"worker error: {type(exc).__name__}: {exc}"
        try:
            self.abandon(task, error)
        except LostClaim:
            log.warning("task %s was taken over by another worker", task.task_id)
        except Exception:  # noqa: BLE001  e.g. the DB went away: the lease expires, sweep settles it
            log.exception("task %s: could not settle it now; the sweep will", task.task_id)

    def run(self, stop: threading.Event | None = None, idle_sleep: float = 1.0, until_idle: bool = False) -> int:
        """Step tasks until ``stop`` is set (or, with ``until_idle``, nothing is claimable); returns steps."""
        stop = stop or threading.Event()
        steps = 0
        while not stop.is_set():
            try:
                with db.primary.connection_context():
                    busy = self.run_once()
            except Exception:  # noqa: BLE001  the queue itself is unreachable (DB down): wait, retry
                log.exception("worker %s: cannot claim tasks; retrying in %s s", self.id, idle_sleep)
                busy = False
                if until_idle:
                    raise
            steps += busy
            if not busy:
                if until_idle:
                    break
                stop.wait(idle_sleep)
        return steps

    def sweep(self, expire_cache: bool = True) -> dict:
        """Finish tasks past their deadline whose worker is gone, whatever the reason (no upstream key,
        upstream down, a step that raises): each is settled and its unfinished images refunded. Also
        drops expired cache entries unless ``expire_cache`` is off (`xintu edit expire-cache`)."""
        finished, seen = 0, set()
        while (task := self.claim(overdue_only=True)) is not None:
            if task.id in seen:  # settled once in this run and still open: leave it, never loop on it
                EditTask.update(claimed_by=None).where(EditTask.id == task.id,
                                                       EditTask.claimed_by == self.id).execute()
                break
            seen.add(task.id)
            self._settle(task)
            finished += 1
        result = {"finished": finished}
        if expire_cache:
            result["cache_expired"] = self.expire_cache()
        return result

    @staticmethod
    def expire_cache() -> int:
        """Drop cache entries past EDIT_CACHE_TTL (the stored results stay with their tasks)."""
        return EditCache.delete().where(EditCache.expires_at < utcnow()).execute()
