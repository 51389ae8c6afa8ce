"""Liveness and readiness probes."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import current_app
from peewee import InterfaceError, OperationalError

from xintu import __version__, db
from xintu.proxies import ops_caller

bp = APIBlueprint("health", __name__, tag="ops")


@bp.get("/healthz")
@bp.doc(summary="Process alive (no dependencies checked)")
def healthz():
    return {"status": "ok", "version": __version__}


@bp.get("/readyz")
@bp.doc(summary="Ready or not (primary reachable); the details (replica, lag, errors) only to the "
                "internal monitoring addresses",
        responses={200: "ready", 503: "primary database unreachable"})
def readyz():
    if not ops_caller(current_app.config):
        # The public (anything through a proxy): no database error text, no replication state.
        try:
            db.ping(db.primary)
        except (OperationalError, InterfaceError):
            return {"status": "not_ready"}, 503
        return {"status": "ready"}
    body = {"status": "ready", "primary": {"ok": True}}
    try:
        db.ping(db.primary)
    except (OperationalError, InterfaceError) as exc:
        body["status"] = "not_ready"
        body["primary"] = {"ok": False, "error": str(exc.args[-1] if exc.args else exc)}
    replica = db.replica_status()
    replica["used_for_stale_reads"] = replica["healthy"]
    replica["fallbacks"] = db.fallback_count()
    body["replica"] = replica
    return body, 200 if body["primary"]["ok"] else 503
