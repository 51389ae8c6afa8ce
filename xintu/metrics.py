"""Prometheus metrics shared by the areas.

Works in one process and under gunicorn (multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set
before start; see the gunicorn config rendered by ``xintu conf render``).
"""

from __future__ import annotations

from prometheus_client import Counter

REPLICA_FALLBACKS = Counter(
    "xintu_replica_fallback", "Stale-tolerant reads that ran on the primary because the replica was "
    "unreachable or lagging")
