"""Plain value objects passed from StatsService to the report, CLI and admin API.

They carry raw counts only; ratios are derived properties so that every consumer computes them the
same way (the report, `xintu stats summary` and the dashboard must agree to the digit).
Money stays integer fen here and becomes ¥ only in `yuan()` at display time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date

# Classification methods as RequestLog.method stores them; "llm_fallback" means the LLM failed
# and the local model answered instead.
METHODS = ("cache", "llm", "local", "llm_fallback")


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
