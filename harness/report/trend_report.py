"""Trend report: one metric over time from the results store, as control charts (one per station,
protocol and subject) in a single self-contained HTML file: plots embedded as PNG, no network.

Each chart shows the values on a time axis that spans them, the centre line and the +-3 SD control
limits of the baseline (provisional below ``MIN_CONTROL_BASELINE`` runs), the protocol's acceptance
limits (as the newest run was judged), the flagged points highlighted, and a table of the flagged
runs with their folders. "In statistical control" is said only of an established baseline.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any

from harness import __version__
from harness.analysis.control_chart import MIN_CONTROL_BASELINE, Flag, Limits, evaluate, flagged_indices
from harness.common.atomic_files import replace_text
from harness.common.errors import UserError
from harness.records.run_record import RENAMED_METRICS
from harness.store.results_store import ChartKey, Point, ResultsStore, RunRecord, shown


@dataclass
class Chart:
    key: ChartKey
    metric: str
    points: list[Point]
    limits: Limits
    flags: list[Flag]
    runs: dict[str, RunRecord] = field(default_factory=dict)  # the flagged runs
    acceptance: dict[str, Any] | None = None  # the protocol's limit: {"pass": [lo, hi], "warn": [lo, hi] | None}

    @property
    def title(self) -> str:
        k = self.key
        kind = "" if k.kind in ("", "stability") else f" ({k.kind.replace('_', ' ')})"
        return f"{self.metric}: {k.station}, {k.protocol}, {k.subject}{kind}"

    def flags_at(self, index: int) -> list[Flag]:
        return [f for f in self.flags if f.index == index]


def build_charts(store: ResultsStore, metric: str, station: str | None = None, subject: str | None = None,
                 protocol: str | None = None, kind: str | None = None, baseline: int = 10, run_length: int = 8) -> list[Chart]:
    """One control chart per comparable group of the metric's values; UserError if there is none."""
    if metric not in store.names("metric"):
        known = store.names("metric")
        if metric in RENAMED_METRICS:
            raise UserError(f"no metric {metric!r} in the results database: it is now called {RENAMED_METRICS[metric]!r} "
                            "(older runs are read under the new name)")
        raise UserError(f"no metric {metric!r} in the results database "
                        + (f"(metrics: {', '.join(known)})" if known else "(it holds no metrics yet: import run folders first)"))
    if station is not None and station not in store.names("station"):
        raise UserError(f"no station {station!r} in the results database (stations: {', '.join(store.names('station'))})")
    keys = store.chart_keys(metric, station, subject, protocol, kind)
    if not keys and subject is not None:
        subjects = sorted({k.subject for k in store.chart_keys(metric, station, None, protocol, kind)})
        line = f"{subject.strip()} nm"
        if subject.strip().replace(".", "", 1).isdigit() and line in subjects:  # a bare wavelength names that laser line
            keys = store.chart_keys(metric, station, line, protocol, kind)
        elif subjects:
            raise UserError(f"no completed run has a value of {metric!r} for subject {subject!r} (its subjects: {', '.join(subjects)})")
    if not keys:
        which = ", ".join(f"{n} {v!r}" for n, v in (("station", station), ("subject", subject), ("protocol", protocol), ("kind", kind)) if v)
        raise UserError(f"no completed run has a value of {metric!r}" + (f" for {which}" if which else ""))
    charts = []
    for key in keys:
        points = store.series(key.station, metric, key.subject, key.protocol, key.kind)
        if not points:  # pragma: no cover - the keys come from the same rows
            continue
        limits, flags = evaluate([p.value for p in points], baseline, run_length)
        chart = Chart(key, metric, points, limits, flags, acceptance=store.acceptance_limit(key, metric))
        chart.runs = store.runs_by_id(sorted({points[f.index].run_id for f in flags}))
        charts.append(chart)
    return charts


# --- plot ----------------------------------------------------------------------------------------
def time_span(times: list[datetime]) -> tuple[datetime, datetime]:
    """The time axis: the data with 5 % margins (at least 1 min); one run (or runs at one time) +-1 h."""
    first, last = min(times), max(times)
    pad = max((last - first) * 0.05, timedelta(minutes=1)) if last > first else timedelta(hours=1)
    return first - pad, last + pad


def acceptance_bounds(acceptance: dict[str, Any] | None) -> list[tuple[str, float]]:
    """("pass"|"warn", value) for each finite bound of a limit."""
    if not acceptance:
        return []
    return [(band, float(v)) for band in ("pass", "warn") for v in (acceptance.get(band) or ()) if v is not None]


def plot_png(chart: Chart) -> bytes:
    """The chart as PNG."""
    buf = io.BytesIO()
    figure(chart).savefig(buf, format="png")
    return buf.getvalue()


def figure(chart: Chart) -> Any:
    """The chart as a matplotlib Figure on an Agg canvas (no pyplot: no global state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    fig = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax: Any = fig.add_subplot()  # Any: matplotlib's stubs take no datetimes, which it plots through its date converter
    t = [p.ended_utc.replace(tzinfo=None) for p in chart.points]  # UTC, labelled as such
    v = [p.value for p in chart.points]
    lim = chart.limits
    if len(t) > lim.baseline:
        ax.axvspan(t[0], t[lim.baseline - 1], color="0.92", zorder=0, label=f"baseline ({lim.baseline} runs)")
    ax.plot(t, v, "-o", color="tab:blue", markersize=4, linewidth=1, label=chart.metric, zorder=2)
    ax.axhline(lim.centre, color="tab:green", linewidth=1.2, label=f"centre {lim.centre:.5g}")
    shown = list(v)
    if lim.defined:
        what = "±3 SD" if lim.established else "±3 SD, provisional"
        ax.axhline(lim.upper, color="tab:red", linestyle="--" if lim.established else ":", linewidth=1, label=f"{what} ({lim.lower:.5g} to {lim.upper:.5g})")
        ax.axhline(lim.lower, color="tab:red", linestyle="--" if lim.established else ":", linewidth=1)
        shown += [lim.lower, lim.upper]
    flagged = flagged_indices(chart.flags)
    if flagged:
        ax.plot([t[i] for i in flagged], [v[i] for i in flagged], "o", markersize=10, markerfacecolor="none",
                markeredgecolor="red", markeredgewidth=2, label="flagged", zorder=3)
    # acceptance limits: drawn where they are near the data; one far away is named in the legend, so
    # the variation of the values stays visible
    lo, hi = min(shown), max(shown)
    reach = hi - lo if hi > lo else max(abs(lim.centre) * 0.02, 1e-12)  # no spread yet: nothing to hide
    styles: dict[str, tuple[str, Any]] = {"pass": ("black", "-"), "warn": ("tab:orange", "-.")}  # (colour, matplotlib line style)
    handles: list[Any] = []
    for band, value in acceptance_bounds(chart.acceptance):
        colour, style = styles[band]
        label = f"acceptance: {band} limit {value:.5g}"
        if lo - reach <= value <= hi + reach:  # within one data span: drawing it keeps the values readable
            ax.axhline(value, color=colour, linestyle=style, linewidth=1.4, label=label)
            shown.append(value)
        else:
            handles.append(Line2D([], [], color=colour, linestyle=style, label=f"{label} ({'above' if value > hi else 'below'} the axis)"))
    ax.set_xlim(*time_span(t))
    pad = (max(shown) - min(shown)) * 0.08 or reach * 0.5
    ax.set_ylim(min(shown) - pad, max(shown) + pad)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    ax.yaxis.set_major_formatter(formatter)
    ax.set_xlabel("end of run (UTC)")
    ax.set_ylabel(f"{chart.metric}" + (f" ({chart.key.unit})" if chart.key.unit else ""))
    ax.grid(True, color="0.85", linewidth=0.5)
    existing, _ = ax.get_legend_handles_labels()
    ax.legend(handles=existing + handles, loc="best", fontsize="small", framealpha=0.85)
    return fig


# --- HTML ----------------------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1000px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.flagged { color: #b00; font-weight: bold; } .ok { color: #070; } .meta { color: #666; font-size: 0.9em; }
img { max-width: 100%; }
"""


def _time(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _value(v: float, unit: str | None) -> str:
    return f"{v:.6g}" + (f" {unit}" if unit else "")


def _chart_html(n: int, chart: Chart) -> str:
    e = escape
    lim, unit = chart.limits, chart.key.unit
    png = base64.b64encode(plot_png(chart)).decode("ascii")
    acceptance = "; ".join(f"{band} {'at least' if i == 0 else 'at most'} {_value(v, unit)}"
                           for band in ("pass", "warn") for i, v in enumerate((chart.acceptance or {}).get(band) or ()) if v is not None)
    parts = [
        f'<section id="chart-{n}">',
        f"<h2>{e(chart.title)}</h2>",
        f'<p class="meta">{len(chart.points)} completed run{"s" if len(chart.points) != 1 else ""}, '
        f'{e(_time(chart.points[0].ended_utc))} to {e(_time(chart.points[-1].ended_utc))} UTC; '
        f"centre line {e(_value(lim.centre, unit))}" + (f" (SD {lim.sd:.4g})" if lim.defined else "") + f"; {e(lim.describe(unit))}. "
        f"Acceptance limits of the protocol: {e(acceptance or 'none')}.</p>",
        f'<img alt="{e(chart.title)} over time" src="data:image/png;base64,{png}">',
    ]
    flagged = flagged_indices(chart.flags)
    if not flagged:
        parts.append('<p class="ok">No flagged runs: the metric is in statistical control.</p>' if lim.established else
                     '<p class="meta">No flagged runs, but too few runs for control limits: '
                     f'statistical control is judged from a baseline of {MIN_CONTROL_BASELINE} runs.</p>')
    else:
        provisional = "" if lim.established else " (against provisional limits: too few runs for control limits)"
        parts.append(f'<p class="flagged">{len(flagged)} flagged run{"s" if len(flagged) != 1 else ""}{provisional}:</p>')
        parts.append("<table><thead><tr><th>end (UTC)</th><th>value</th><th>verdict</th><th>why flagged</th><th>run</th><th>folder</th></tr></thead><tbody>")
        for i in flagged:
            p = chart.points[i]
            run = chart.runs.get(p.run_id)
            why = "; ".join(f.detail for f in chart.flags_at(i))
            parts.append(
                f"<tr><td>{e(_time(p.ended_utc))}</td><td class=\"num\">{e(_value(p.value, unit))}</td><td>{e(p.verdict)}</td>"
                f"<td>{e(why)}</td><td><code>{e(p.run_id)}</code></td><td><code>{e(run.folder if run else '')}</code></td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(charts: list[Chart], database: str, run_length: int) -> str:
    e = escape
    metric = charts[0].metric if charts else ""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for n, c in enumerate(charts):
        count = len(flagged_indices(c.flags))
        cls = "flagged" if count else "ok"
        rows.append(f'<tr><td><a href="#chart-{n}">{e(c.key.station)}</a></td><td>{e(c.key.protocol)}</td><td>{e(c.key.subject)}</td>'
                    f'<td class="num">{len(c.points)}</td><td class="num {cls}">{count}</td></tr>')
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Trend of {e(metric)} - microscope-qc</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Trend of {e(metric)}</h1>",
        f'<p class="meta">Generated {e(now)} by microscope-qc {e(__version__)} from {e(database)}. '
        f"Control limits: mean ± 3 SD (n - 1) of the baseline runs, established from {MIN_CONTROL_BASELINE} baseline runs (provisional before); "
        "flagged: a point outside the limits, "
        f"or {run_length} or more consecutive points on one side of the centre line (Western Electric / Nelson rule 2). "
        "Completed runs only.</p>",
        "<table><thead><tr><th>station</th><th>protocol</th><th>subject</th><th>runs</th><th>flagged</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        *(_chart_html(n, c) for n, c in enumerate(charts)),
        "</body></html>",
        "",
    ])


def write_report(charts: list[Chart], path: str | Path, database: str, run_length: int = 8) -> Path:
    """Write the report atomically; returns its path."""
    path = Path(path)
    text = render_html(charts, shown(database), run_length)
    try:
        replace_text(path, text)
    except OSError as exc:
        raise UserError(f"cannot write the report {path}: {exc}") from None
    return path
