"""``/metrics`` (Prometheus text format) and the per-request instrumentation of the whole app.

Under gunicorn every worker is a separate process: with PROMETHEUS_MULTIPROC_DIR set, each one
writes its samples to files there and a scrape of any worker sums all of them
(MultiProcessCollector).  The gunicorn config rendered by ``xintu conf render`` empties that folder
before start and marks exited workers dead.
"""
from __future__ import annotations

import os
import time

from apiflask import APIBlueprint
from flask import Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)

from xintu import metrics
from xintu.errors import NotFound
from xintu.proxies import ops_caller

bp = APIBlueprint("metrics", __name__, tag="ops")


@bp.before_app_request
def _start_timer():
    g.metrics_started = time.perf_counter()


@bp.after_app_request
def _observe(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        req = request._get_current_object()   # one context lookup, not four
        rule = req.url_rule
        if rule is None or rule.endpoint != "metrics.scrape":
            # the route template, not the path: /users/<int:user_id> is one series, not one per user
            metrics.observe_request(rule.rule if rule is not None else "unmatched", req.method,
                                    response.status_code, time.perf_counter() - started)
    return response


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@bp.get("/metrics")
@bp.doc(hide=True)
def scrape():
    # Scraped by Prometheus on the internal network; not for the public (nginx does not route it
    # either, this is the second lock). The TCP peer decides, never X-Forwarded-For.
    if not ops_caller(current_app.config):
        raise NotFound()
    return Response(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
