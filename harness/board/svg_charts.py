"""Control charts as inline SVG (no script, no external resource): the values over time, the centre
line and the +-3 SD control limits (dashed when established, dotted while provisional), the
acceptance limits of the protocol, and the flagged (out-of-control) points ringed in red.

``chart_svg(chart, y_range, ...)`` draws one ``harness.report.trend_report.Chart``; several charts
drawn with the same ``y_range`` (``shared_range``) can be compared side by side. Text is escaped;
the result is markup for a Jinja template (``Markup``-safe by construction).
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

from harness.analysis.control_chart import flagged_indices
from harness.report.trend_report import Chart, acceptance_bounds, time_span

POINT = {"warn": "#e08a00", "fail": "#b00000"}  # a point's fill by its verdict (its word is in its tooltip)
COLOURS = {"value": "#1f5fa8", "centre": "#2a7d2a", "control": "#c0392b", "pass": "#111", "warn": "#d2691e", "flag": "#d40000"}


def shared_range(charts: list[Chart]) -> tuple[float, float]:
    """One y-range for several charts: their values and control limits, and the acceptance limits
    that lie within one data span of them (a limit far away is named in the legend instead, so the
    variation stays visible)."""
    shown: list[float] = []
    for c in charts:
        shown += [p.value for p in c.points]
        if c.limits.defined:
            shown += [c.limits.lower, c.limits.upper]
    if not shown:
        return 0.0, 1.0
    lo, hi = min(shown), max(shown)
    reach = hi - lo if hi > lo else max(abs(hi) * 0.02, 1e-12)
    for c in charts:
        shown += [v for _, v in acceptance_bounds(c.acceptance) if lo - reach <= v <= hi + reach]
    lo, hi = min(shown), max(shown)
    pad = (hi - lo) * 0.08 or reach * 0.5
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    step = 10 ** math.floor(math.log10(span / count))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def shared_span(charts: list[Chart]) -> tuple[datetime, datetime]:
    """One time axis for several charts (``time_span`` of all their points)."""
    return time_span([p.ended_utc for c in charts for p in c.points])


def chart_svg(chart: Chart, y_range: tuple[float, float], width: int = 420, height: int = 220, small: bool = False,
              x_range: tuple[datetime, datetime] | None = None) -> str:
    """One chart as an ``<svg>`` element; ``small``: a sparkline without axes' text or legend;
    ``x_range``: the time axis (default: this chart's points)."""
    left, right, top, bottom = (4, 4, 4, 4) if small else (56, 10, 10, 34)
    w, h = width - left - right, height - top - bottom
    y0, y1 = y_range
    t0, t1 = x_range or time_span([p.ended_utc for p in chart.points])
    t_span = (t1 - t0).total_seconds() or 1.0

    def x(t: datetime) -> float:
        return left + w * (t - t0).total_seconds() / t_span

    def y(v: float) -> float:
        v = min(max(v, y0), y1)
        return top + h * (1 - (v - y0) / ((y1 - y0) or 1.0))

    title = escape(chart.title)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart{" spark" if small else ""}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}"><title>{title}</title>',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fff" stroke="#bbb"/>']
    lim = chart.limits
    if len(chart.points) > lim.baseline and not small:
        xb = x(chart.points[lim.baseline - 1].ended_utc)
        parts.append(f'<rect x="{left}" y="{top}" width="{xb - left:.1f}" height="{h}" fill="#eee"><title>baseline ({lim.baseline} runs)</title></rect>')
    if not small:
        for v in _ticks(y0, y1):
            parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e4e4e4"/>'
                         f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="10">{_fmt(v)}</text>')
        parts.append(f'<text x="{left}" y="{height - 18}" font-size="10">{t0:%Y-%m-%d}</text>'
                     f'<text x="{left + w}" y="{height - 18}" font-size="10" text-anchor="end">{t1:%Y-%m-%d}</text>')
        unit = f" ({escape(chart.key.unit)})" if chart.key.unit else ""
        parts.append(f'<text x="{left + w / 2:.0f}" y="{height - 4}" font-size="10" text-anchor="middle">end of run (UTC); '
                     f'{escape(chart.metric)}{unit}</text>')

    def hline(v: float, colour: str, dash: str, label: str) -> None:
        if y0 <= v <= y1:
            parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{colour}" stroke-width="1.2"'
                         + (f' stroke-dasharray="{dash}"' if dash else "") + f'><title>{escape(label)}</title></line>')

    hline(lim.centre, COLOURS["centre"], "", f"centre {_fmt(lim.centre)}")
    if lim.defined:
        dash = "6 3" if lim.established else "2 3"
        what = "control limit" if lim.established else "provisional control limit"
        hline(lim.upper, COLOURS["control"], dash, f"{what} {_fmt(lim.upper)}")
        hline(lim.lower, COLOURS["control"], dash, f"{what} {_fmt(lim.lower)}")
    for band, value in acceptance_bounds(chart.acceptance):
        hline(value, COLOURS[band], "8 2 2 2" if band == "warn" else "", f"acceptance: {band} limit {_fmt(value)}")
    path = " ".join(f"{x(p.ended_utc):.1f},{y(p.value):.1f}" for p in chart.points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS["value"]}" stroke-width="1"/>')
    flagged = set(flagged_indices(chart.flags))
    radius = 1.8 if small else 3
    for i, p in enumerate(chart.points):
        tip = escape(f"{p.ended_utc:%Y-%m-%d %H:%M} UTC: {p.value:.6g}" + (f" {chart.key.unit}" if chart.key.unit else "")
                     + f", {p.verdict}" + ("; " + "; ".join(f.detail for f in chart.flags_at(i)) if i in flagged else ""))
        fill = POINT.get(p.verdict, COLOURS["value"])
        parts.append(f'<circle cx="{x(p.ended_utc):.1f}" cy="{y(p.value):.1f}" r="{radius}" fill="{fill}"><title>{tip}</title></circle>')
        if i in flagged:
            parts.append(f'<circle class="flagged" cx="{x(p.ended_utc):.1f}" cy="{y(p.value):.1f}" r="{radius + 4}" fill="none" '
                         f'stroke="{COLOURS["flag"]}" stroke-width="2"><title>{tip}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def far_limits(chart: Chart, y_range: tuple[float, float]) -> list[str]:
    """The acceptance limits outside the drawn range, for the legend ("pass limit 99 (below the axis)")."""
    y0, y1 = y_range
    return [f"acceptance {band} limit {_fmt(v)} ({'above' if v > y1 else 'below'} the axis)"
            for band, v in acceptance_bounds(chart.acceptance) if not y0 <= v <= y1]
