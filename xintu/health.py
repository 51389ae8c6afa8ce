"""Liveness and readiness probes."""

from __future__ import annotations

from apiflask import APIBlueprint
from peewee import InterfaceError, OperationalError

from xintu import __version__, db

bp = APIBlueprint("health", __name__, tag="ops")


@bp.get("/healthz")
@bp.doc(summary="Process alive (no dependencies checked)")
def healthz():
    return {"status": "ok", "version": __version__}


@bp.get("/readyz")
@bp.doc(summary="Primary reachable; replica reachable and its lag",
        responses={200: "ready", 503: "primary database unreachable"})
def readyz():
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
