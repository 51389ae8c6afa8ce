"""The daily report: one self-contained HTML page (inline CSS + inline SVG, no external links)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from . import charts
from .anomalies import Anomaly, detect_anomalies
from .figures import DayFigures, yuan

_env = Environment(loader=PackageLoader("xintu.stats", "templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f} ms"


_env.filters.update(pct=_pct, ms=_ms, yuan=yuan, num=lambda n: f"{n:,}")


# Which overview card turns red for which anomaly, so the eye lands on the number that moved.
CARD_OF_ANOMALY = {"traffic_drop": "requests", "traffic_surge": "requests",
                   "cache_hit_drop": "cache_hit_ratio", "llm_failing": "llm_success_ratio",
                   "llm_success_drop": "llm_success_ratio", "errors_up": "error_ratio",
                   "latency_up": "latency_p95_ms"}


@dataclass
class DailyReport:
    day: date
    figures: DayFigures
    trend: list[DayFigures]               # the 7 days ending with `day`, oldest first
    members_active: int = 0
    members_expiring_7d: int = 0
    downloads_by_version: dict[str, int] = field(default_factory=dict)
    generated_at: datetime | None = None
    anomalies: list[Anomaly] | None = None

    def __post_init__(self):
        if self.anomalies is None:
            history = [d for d in self.trend if d.day != self.day]
            self.anomalies = detect_anomalies(self.figures, history)


def render_daily_report(report: DailyReport) -> str:
    trend = report.trend
    svg = {  # pygal output is trusted markup built from our own numbers
        "requests": charts.requests_trend(trend),
        "ratios": charts.ratio_trend(trend),
        "revenue": charts.revenue_trend(trend),
        "methods": charts.method_mix(report.figures),
        "categories": charts.category_distribution(report.figures),
    }
    flagged = {CARD_OF_ANOMALY[a.key] for a in report.anomalies if a.key in CARD_OF_ANOMALY}
    previous = next((d for d in trend if d.day and (report.day - d.day).days == 1), None)
    return _env.get_template("daily_report.html.j2").render(
        r=report, f=report.figures, prev=previous, flagged=flagged,
        charts={k: Markup(v) for k, v in svg.items()},
        category_labels=charts.CATEGORY_LABELS, method_labels=charts.METHOD_LABELS)
