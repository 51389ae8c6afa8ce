"""Inline SVG charts (pygal) for the daily report.

pygal normally links its tooltip script from a CDN; `js=[]` drops that so the report stays one
self-contained file that opens offline and survives mail clients (which strip scripts anyway).
"""
from __future__ import annotations

import pygal
from pygal.style import Style

from .figures import DayFigures

# Category / method labels as the business reads them.
CATEGORY_LABELS = {
    "social_activities": "社交活动", "pets": "宠物", "single_person": "单人照", "foods": "美食",
    "travel_scenery": "旅行风景", "screenshot": "截图", "idcard": "证件", "other": "其他",
}
METHOD_LABELS = {"cache": "缓存", "llm": "大模型", "local": "本地模型", "llm_fallback": "大模型失败→本地",
                 "local_fallback": "本地失败→大模型"}

STYLE = Style(
    font_family='"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei","PingFang SC",sans-serif',
    background="white", plot_background="white", foreground="#333", foreground_strong="#111",
    foreground_subtle="#999", colors=("#2f6fde", "#f29b1d", "#35a861", "#d9453d", "#8c5bd6",
                                       "#1fa7b8", "#a0a0a0", "#c2578b"),
    title_font_size=20, label_font_size=14, major_label_font_size=14, legend_font_size=14,
    value_font_size=14, tooltip_font_size=14,
)
COMMON = {"style": STYLE, "js": [], "disable_xml_declaration": True, "width": 720, "height": 320,
          "margin": 16, "margin_bottom": 30, "legend_at_bottom": True, "legend_at_bottom_columns": 4,
          "no_data_text": "暂无数据"}


def int_ticks(top: float, target: int = 5) -> list[int]:
    """Whole-number axis labels for counts (pygal's own scale puts 0.2, 0.4 … on small counts)."""
    top = max(1, int(top + 0.999))
    step = 1
    for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 50000, 100000):
        step = candidate
        if top / candidate <= target:
            break
    else:
        step = -(-top // target)
    return list(range(0, top + step, step))


def _render(chart) -> str:
    return chart.render(is_unicode=True)


def _day_labels(days: list[DayFigures]) -> list[str]:
    return [d.day.strftime("%m-%d") for d in days]


def requests_trend(days: list[DayFigures]) -> str:
    chart = pygal.Bar(title="每日请求量", show_legend=True,
                      y_labels=int_ticks(max([d.requests for d in days] or [0])), **COMMON)
    chart.x_labels = _day_labels(days)
    chart.add("请求", [d.requests for d in days])
    chart.add("失败", [d.failed for d in days])
    return _render(chart)


def ratio_trend(days: list[DayFigures]) -> str:
    chart = pygal.Line(title="缓存命中率与大模型成功率 (%)", range=(0, 100), dots_size=4,
                       y_labels=[0, 20, 40, 60, 80, 100],
                       value_formatter=lambda v: f"{v:.1f}%", **COMMON)
    chart.x_labels = _day_labels(days)

    def pct(x):  # None leaves a gap on a day without traffic instead of a fake 0 %
        return None if x is None else round(x * 100, 1)

    chart.add("缓存命中率", [pct(d.cache_hit_ratio) for d in days])
    chart.add("大模型成功率", [pct(d.llm_success_ratio) for d in days])
    return _render(chart)


def revenue_trend(days: list[DayFigures]) -> str:
    top = max([d.revenue_fen for d in days] or [0]) / 100
    chart = pygal.Bar(title="每日收入 (元)", value_formatter=lambda v: f"¥{v:,.0f}",
                      y_labels=int_ticks(top), **COMMON)
    chart.x_labels = _day_labels(days)
    chart.add("收入", [d.revenue_fen / 100 for d in days])
    return _render(chart)


def method_mix(day: DayFigures) -> str:
    chart = pygal.Pie(title="识别方式", inner_radius=0.45, **COMMON)
    for key, label in METHOD_LABELS.items():
        if day.methods.get(key):   # the count in the legend: a pie alone shows no numbers
            chart.add(f"{label} {day.methods[key]}", day.methods[key])
    return _render(chart)


def category_distribution(day: DayFigures) -> str:
    items = sorted(day.categories.items(), key=lambda kv: kv[1])
    chart = pygal.HorizontalBar(title="分类分布", show_legend=False, print_values=True,
                                y_labels=int_ticks(max([v for _, v in items] or [0])), **COMMON)
    chart.x_labels = [CATEGORY_LABELS.get(k, k) for k, _ in items]
    chart.add("图片", [v for _, v in items])
    return _render(chart)
