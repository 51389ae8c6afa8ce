"""EditWorker: runs queued image-edit tasks against DashScope, outside any web request.

Any number of ``xintu worker`` processes, on any hosts, share the queue in the DB. A worker claims
one task at a time (``SELECT … FOR UPDATE SKIP LOCKED`` on MySQL so claimers never wait on each
other, then a compare-and-set on ``claimed_by``), takes one step (submit queued images, poll
pending ones), saves, and lets go. Every save is guarded by ``claimed_by = me``: a worker whose
lease expired — it hung, or died and came back — cannot overwrite the task or move money again.
A claim expires after ``lease`` seconds without progress, so a dead worker's task is picked up
by the next claimer, and ``sweep`` (cron) finishes overdue tasks even when no worker runs. While an
upstream call runs, a heartbeat renews the lease every ``lease / 3`` (the synchronous call's own
time-out, EDIT_CALL_TIMEOUT, is below the lease anyway), so a slow call is never submitted twice.

When DashScope says the quota is gone, the key is refused, the account is in arrears or the model does
not exist, the ``dashscope.edit`` breaker opens: the worker stops calling for DASHSCOPE_BREAKER_SECONDS,
leaves the images queued (no attempt counted, nothing billed) and new tasks are refused with 503.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from contextlib import contextmanager
from datetime import timedelta

from xintu import db
from xintu.edit.results import BadResult, ResultPolicy, fetch_result
from xintu.edit.service import DEFAULT_MODEL, TERMINAL, load_image, refund_unused, remember_result, store_image
from xintu.edit.upstream import EditModelClient, TransientUpstreamError, UpstreamStopped
from xintu.models import EditCache, EditImage, EditTask
from xintu.timeutil import utcnow
from xintu.upstreams import Breaker

log = logging.getLogger(__name__)


# DashScope error codes a user can act on get their own code; every other upstream failure is one.
_UPSTREAM_CODES = {"DataInspectionFailed": "content_moderated"}


def upstream_code(error: str | None) -> str:
    """The stable code for an upstream failure message (``_describe``'s "400 Code: message")."""
    for name, code in _UPSTREAM_CODES.items():
        if name in (error or ""):
            return code
    return "upstream_failed"


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
        self.results = ResultPolicy.from_config(config)
        self._factory = client_factory or (lambda model: EditModelClient.from_config(config, model))
        self._clients: dict = {}
        self.breaker = Breaker("dashscope.edit", config.get("DASHSCOPE_BREAKER_SECONDS", 600))

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
            if self.breaker.is_open():
                break  # answered locally: the images wait (the task deadline refunds them at worst)
            try:
                client = client or self._client(task.model or DEFAULT_MODEL)
            except Exception as exc:  # noqa: BLE001  no key, bad model, SDK missing: no image can run
                log.error("task %s: edit upstream unusable: %s", task.task_id, exc)
                self._fail_unfinished(images, "edit_not_configured")
                break
            try:
                with self._renewing(task):
                    if image["status"] == "queued":
                        data, mime = load_image(task.id, image["position"])
                        outcome = client.submit(data, mime, task.prompt, task.options)
                    else:
                        outcome = client.poll(image["upstream_id"])
            except UpstreamStopped as exc:
                self.breaker.open(exc.reason, exc.code, str(exc))
                break
            except Exception as exc:
                image["attempts"] = image.get("attempts", 0) + 1
                if isinstance(exc, TransientUpstreamError):
                    log.warning("task %s image %s: %s", task.task_id, image["position"], exc)
                else:
                    log.exception("task %s image %s failed unexpectedly", task.task_id, image["position"])
                if image["attempts"] >= self.max_attempts:
                    # The client sees a stable code only; what went wrong is in the log above.
                    image.update(status="failed", error="upstream_failed", error_code="upstream_failed")
                continue
            self._apply(task, image, outcome)
            self._save(task, images)  # progress is durable per image; also renews the lease
        if overdue:
            self._fail_unfinished(images, "timeout")
        if task.claimed_by == self.id:  # else the last image's save already finished the task
            self._save(task, images, release=True)

    @staticmethod
    def _fail_unfinished(images: list, code: str) -> None:
        """Every unfinished image fails with a stable ``code`` (the cause is in the log)."""
        for image in images:
            if image.get("status") not in TERMINAL:
                image.update(status="failed", error=code, error_code=code)

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
                data, mime = fetch_result(outcome.url, self.results)
            except BadResult as exc:
                log.warning("task %s image %s: result %s: %s", task.task_id, image["position"],
                            (outcome.url or "")[:200], exc)
                image.update(status="failed", error=exc.code, error_code=exc.code, upstream_url=outcome.url)
                return
            store_image(task.id, image["position"], mime, data, kind="result")
            image.update(status="succeeded", stored=[task.id, image["position"]], upstream_url=outcome.url,
                         charged=True)  # this image's credit is spent
            remember_result(image["sha256"], task.prompt, task.options, task.model or DEFAULT_MODEL,
                            outcome.url, task.id, image["position"], self.cache_ttl)
        elif outcome.state == "failed":
            log.warning("task %s image %s: upstream failed: %s", task.task_id, image["position"],
                        (outcome.error or "")[:255])
            code = outcome.error_code if outcome.error_code == "content_moderated" else upstream_code(outcome.error)
            image.update(status="failed", error=code, error_code=code)
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

    @contextmanager
    def _renewing(self, task: EditTask):
        """Renew the claim every lease/3 while an upstream call runs (guarded by claimed_by = me)."""
        done = threading.Event()
        every = max(0.05, self.lease.total_seconds() / 3)

        def beat():
            while not done.wait(every):
                try:
                    with db.primary.connection_context():
                        EditTask.update(claimed_at=utcnow()).where(
                            EditTask.id == task.id, EditTask.claimed_by == self.id).execute()
                except Exception:  # noqa: BLE001  the next save tells whether the claim held
                    log.warning("task %s: lease renewal failed", task.task_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"lease-{task.task_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _client(self, model: str):
        if model not in self._clients:
            self._clients[model] = self._factory(model)
        return self._clients[model]

    # -- loops -----------------------------------------------------------------------------------
    def run_once(self, overdue_only: bool = False) -> bool:
        """Claim and step one task; False when nothing was claimable (or the breaker is open: then only
        ``sweep`` claims, to finish overdue tasks)."""
        if not overdue_only and self.breaker.state() is not None:
            return False
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
        except Exception:  # noqa: BLE001  one task must never stop the worker or strand credits
            log.exception("task %s: step failed, refunding what is unfinished", task.task_id)
            error = "worker_error"     # the cause is in the log above, never in the client's answer
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
