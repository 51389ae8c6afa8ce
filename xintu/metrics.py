"""Prometheus metrics shared by the areas.

Works in one process and under gunicorn (multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set
before start; see the gunicorn config rendered by ``xintu conf render``).  In multiprocess mode every
worker writes its samples to files in that folder and ``/metrics`` (xintu.stats.api) sums them; the
rendered gunicorn config empties the folder at start and marks exited workers dead, so restarts and
recycled workers (max_requests) neither lose nor double-count.  (Those hooks are written out in the
config, not imported from here: the gunicorn master must never import xintu.)  Only Counters and
Histograms are used: they sum across processes without a multiprocess_mode choice.

Per-image classification counts and times live with ClassifierService (``xintu_classify_total``,
``xintu_classify_seconds``, ``xintu_classify_llm_failures_total``); this module has what several areas
share.  Labels are bounded: endpoint is the route template (``/api/v1/admin/users/<int:user_id>``), never
a raw path, so a scanner cannot create unbounded series.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REPLICA_FALLBACKS = Counter(
    "xintu_replica_fallback", "Stale-tolerant reads that ran on the primary because the replica was "
    "unreachable or lagging")

HTTP_REQUESTS = Counter("xintu_http_requests", "HTTP requests by route, method and status",
                        ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram("xintu_http_request_duration_seconds", "Request handling time by route",
                         ["endpoint"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
LLM_LATENCY = Histogram("xintu_llm_request_duration_seconds", "Upstream LLM call time (DashScope)", ["kind"],
                        buckets=(.25, .5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120))
LLM_ERRORS = Counter("xintu_llm_errors", "Failed upstream LLM calls by kind and reason", ["kind", "reason"])
# counters only go up: net spend is xintu_credits_spent_total - xintu_credits_refunded_total
CREDITS_SPENT = Counter("xintu_credits_spent", "Credits spent on image edits")
CREDITS_REFUNDED = Counter("xintu_credits_refunded", "Credits given back for failed image edits")
CREDITS_GRANTED = Counter("xintu_credits_granted", "Credits granted by reason", ["reason"])
# alert on increase(xintu_refunds_total{status="abnormal"}[1h]) > 0: an abnormal refund needs an operator
REFUNDS = Counter("xintu_refunds", "Refunds reaching a state (success / abnormal / closed / failed)",
                  ["status"])
REFUND_SHORTFALL = Counter("xintu_refund_shortfall_credits", "Credits a refund could not take back (spent)")
DOWNLOADS = Counter("xintu_app_downloads", "APP installer downloads by platform", ["platform"])


_REQUEST_SERIES: dict[tuple, tuple] = {}   # (route, method, status) → its two children: labels() per request


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """One request; ``endpoint`` is the route template, so the series are bounded by the routes."""
    series = _REQUEST_SERIES.get((endpoint, method, status))
    if series is None:
        series = _REQUEST_SERIES.setdefault((endpoint, method, status), (
            HTTP_REQUESTS.labels(endpoint, method, str(status)), HTTP_LATENCY.labels(endpoint)))
    series[0].inc()
    series[1].observe(seconds)


def observe_llm(kind: str, seconds: float, error: str | None = None) -> None:
    """kind: classify / edit; error: a short stable reason (timeout, http_500, bad_json) or None."""
    LLM_LATENCY.labels(kind).observe(seconds)
    if error:
        LLM_ERRORS.labels(kind, error).inc()


def count_credits(delta: int, reason: str) -> None:
    """Call after a ledger row is committed (same split as StatsService's credits figures)."""
    if reason == "edit_spend":
        CREDITS_SPENT.inc(abs(delta))
    elif reason == "edit_refund":
        CREDITS_REFUNDED.inc(abs(delta))
    elif delta > 0:
        CREDITS_GRANTED.labels(reason).inc(delta)


def count_refund(status: str, shortfall: int = 0) -> None:
    REFUNDS.labels(status).inc()
    if shortfall:
        REFUND_SHORTFALL.inc(shortfall)
