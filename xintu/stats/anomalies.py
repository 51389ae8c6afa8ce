"""Flag a day whose figures depart from the days before it.

The baseline is the mean of the previous days that had traffic, so a quiet holiday does not hide a
real drop the day after. Thresholds are absolute for ratios (a fall from 0.9 to 0.75 matters, a fall
from 0.02 to 0.01 does not) and relative for volumes and latency.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

from .figures import DayFigures

RATIO_DROP = 0.10          # absolute fall of cache hit / LLM success ratio that is worth a look
LLM_SUCCESS_FLOOR = 0.90   # below this the LLM is failing whatever the baseline says
ERROR_FLOOR = 0.05         # error ratio that is always reported when it also doubled
TRAFFIC_LOW, TRAFFIC_HIGH = 0.5, 3.0
LATENCY_RISE = 1.5
MIN_BASELINE_REQUESTS = 20  # below this the baseline is noise


@dataclass(frozen=True)
class Anomaly:
    key: str
    level: str      # "warning" | "critical"
    message: str    # Chinese, shown as is in the report and the dashboard


def _baseline(history: list[DayFigures], attr: str) -> float | None:
    values = [getattr(d, attr) for d in history if d.requests]
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def detect_anomalies(today: DayFigures, history: list[DayFigures]) -> list[Anomaly]:
    found: list[Anomaly] = []

    base_requests = _baseline(history, "requests")
    if base_requests and base_requests >= MIN_BASELINE_REQUESTS:
        if today.requests < base_requests * TRAFFIC_LOW:
            found.append(Anomaly("traffic_drop", "critical" if today.requests == 0 else "warning",
                                 f"请求量 {today.requests} 低于前几日均值 {base_requests:.0f} 的一半"))
        elif today.requests > base_requests * TRAFFIC_HIGH:
            found.append(Anomaly("traffic_surge", "warning",
                                 f"请求量 {today.requests} 超过前几日均值 {base_requests:.0f} 的 3 倍"))

    hit, base_hit = today.cache_hit_ratio, _baseline(history, "cache_hit_ratio")
    if hit is not None and base_hit is not None and base_hit - hit >= RATIO_DROP:
        found.append(Anomaly("cache_hit_drop", "warning",
                             f"缓存命中率 {_pct(hit)}，前几日均值 {_pct(base_hit)}"))

    llm, base_llm = today.llm_success_ratio, _baseline(history, "llm_success_ratio")
    if llm is not None:
        if llm < LLM_SUCCESS_FLOOR:
            found.append(Anomaly("llm_failing", "critical",
                                 f"大模型成功率仅 {_pct(llm)}（低于 {_pct(LLM_SUCCESS_FLOOR)}）"))
        elif base_llm is not None and base_llm - llm >= RATIO_DROP:
            found.append(Anomaly("llm_success_drop", "warning",
                                 f"大模型成功率 {_pct(llm)}，前几日均值 {_pct(base_llm)}"))

    err, base_err = today.error_ratio, _baseline(history, "error_ratio")
    if err is not None and err >= ERROR_FLOOR and (base_err is None or err >= 2 * base_err):
        found.append(Anomaly("errors_up", "critical", f"失败请求占比 {_pct(err)}"))

    p95, base_p95 = today.latency_p95_ms, _baseline(history, "latency_p95_ms")
    if p95 is not None and base_p95 and p95 > base_p95 * LATENCY_RISE:
        found.append(Anomaly("latency_up", "warning",
                             f"P95 延迟 {p95:.0f} ms，前几日均值 {base_p95:.0f} ms"))
    return found
