"""Plain value objects passed from StatsService to the report, CLI and admin API.

They carry raw counts only; ratios are derived properties so that every consumer computes them the
same way (the report, `xintu stats summary` and the dashboard must agree to the digit).
Money stays integer fen here and becomes ¥ only in `yuan()` at display time.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date

# Classification methods as RequestLog.method stores them; "llm_fallback" means the LLM failed
# and the local model answered instead.
METHODS = ("cache", "llm", "local", "llm_fallback", "local_fallback")


def ratio(part: int, whole: int) -> float | None:
    """None (not 0) when there is nothing to divide, so 'no traffic' is not shown as 'all misses'."""
    return round(part / whole, 4) if whole else None


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}¥{fen // 100:,}.{fen % 100:02d}"


@dataclass
class DayFigures:
    """Everything measured about one Asia/Shanghai day (or a range summed over days)."""

    day: date | None = None
    requests: int = 0
    failed: int = 0
    images: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    new_users: int = 0
    new_followers: int = 0
    orders_paid: int = 0
    revenue_fen: int = 0
    credits_granted: int = 0
    credits_spent: int = 0
    edit_tasks: int = 0
    downloads: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)      # images per request → requests
    revenue_by_kind: dict[str, int] = field(default_factory=dict)  # member / credits → fen
    orders_by_kind: dict[str, int] = field(default_factory=dict)
    downloads_by_version: dict[str, int] = field(default_factory=dict)

    @property
    def cache_hit_ratio(self) -> float | None:
        return ratio(self.methods.get("cache", 0), sum(self.methods.values()))

    @property
    def llm_success_ratio(self) -> float | None:
        ok = self.methods.get("llm", 0)
        return ratio(ok, ok + self.methods.get("llm_fallback", 0))

    @property
    def error_ratio(self) -> float | None:
        return ratio(self.failed, self.requests)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["day"] = self.day.isoformat() if self.day else None
        out.update(cache_hit_ratio=self.cache_hit_ratio, llm_success_ratio=self.llm_success_ratio,
                   error_ratio=self.error_ratio)
        return out


# ---- (metric, key) → value: the shape of a daily_stats roll-up, also built live from raw tables ----
Values = Counter  # Counter[tuple[str, str]]


def latency_bucket(ms: int) -> int:
    """Two significant digits (87 → 87, 1234 → 1200): a day fits in a few hundred rows, and
    percentiles over any range merge exactly from the buckets, rolled up or live."""
    ms = max(0, int(ms))
    if ms < 100:
        return ms
    scale = 10 ** (int(math.log10(ms)) - 1)
    return ms // scale * scale


def percentile(hist: dict[int, int], p: float) -> float | None:
    """Nearest-rank percentile of a {value: count} histogram."""
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = math.ceil(p * total), 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


def _by(values: Values, metric: str) -> dict[str, int]:
    return {k: v for (m, k), v in values.items() if m == metric and v}


def from_values(day: date | None, values: Values) -> DayFigures:
    """Turn roll-up values (one day or several summed) into figures."""
    methods = _by(values, "method")
    hist = {int(k): v for k, v in _by(values, "latency").items()}
    credits_in, credits_out = _by(values, "credits_in"), _by(values, "credits_out")
    batch_rows = {int(k): v for k, v in _by(values, "batch_rows").items()}
    return DayFigures(
        day=day,
        requests=values[("requests", "")],
        failed=values[("failed", "")],
        images=sum(methods.values()),
        methods=methods,
        categories=_by(values, "category"),
        latency_p50_ms=percentile(hist, 0.50),
        latency_p95_ms=percentile(hist, 0.95),
        latency_p99_ms=percentile(hist, 0.99),
        new_users=values[("new_users", "")],
        new_followers=values[("new_followers", "")],
        orders_paid=sum(_by(values, "orders_paid").values()),
        revenue_fen=sum(_by(values, "revenue_fen").values()),
        # refunds of failed edits give back what was spent: they are not new credits
        credits_granted=sum(v for k, v in credits_in.items() if k != "edit_refund"),
        credits_spent=credits_out.get("edit_spend", 0) - credits_in.get("edit_refund", 0),
        edit_tasks=sum(_by(values, "edit_tasks").values()),
        downloads=sum(_by(values, "downloads").values()),
        # each image of a batch logs one row carrying the batch size: rows / size = requests
        batch_sizes={size: rows // size for size, rows in sorted(batch_rows.items()) if size > 0},
        revenue_by_kind=_by(values, "revenue_fen"),
        orders_by_kind=_by(values, "orders_paid"),
        downloads_by_version=_by(values, "downloads"),
    )
