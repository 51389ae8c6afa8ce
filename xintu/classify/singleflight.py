"""Singleflight: concurrent calls with the same key share one execution (and so one upstream call).

Within a worker process only; across workers and hosts the cache plays that role — the first answer is
stored and later requests hit it.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future


class SingleFlight:
    def __init__(self):
        self._lock = threading.Lock()
        self._calls: dict[object, Future] = {}

    def do(self, key, fn):
        """Run ``fn()`` unless a call with ``key`` is in flight; then wait for and share its outcome.
        Returns (result, shared) — ``shared`` is True for the callers that did not run ``fn``."""
        with self._lock:
            fut = self._calls.get(key)
            leader = fut is None
            if leader:
                fut = self._calls[key] = Future()
        if not leader:
            return fut.result(), True
        try:
            result = fn()
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(result)
            return result, False
        finally:
            with self._lock:
                self._calls.pop(key, None)
