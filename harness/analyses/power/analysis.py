"""The power analysis (``harness.analyses.power``): a power series CSV (run.json kind
``power_series``) is analysed as stability (one set point) or linearity (several); the report shows
power against time (with the detected mode hops and the end of the warm-up), or the linearity fit
with its residuals.

A stability result also holds ``emission_on_s`` (when emission of its line(s) came on, from the
run's journal, on the series' time axis; None when the journal does not say) and ``mode_hops`` (a
list of ``{"time_s", "size_pct", "index"}``, the steps found). Results written before these keys
existed still report (the figure then marks nothing).

Raises ``BadInput`` for a linearity series with a set point that is not a number, and whatever the
formulas (``harness.analysis.power_metrics``) refuse."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.analyses.power import SPEC
from harness.analyses.power import figures as plots
from harness.analysis import power_metrics
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.judging import judged, number
from harness.analysis.power_metrics import linearity_metrics, power_series_analysis
from harness.common.errors import BadInput
from harness.common.safe_paths import inside
from harness.protocol.protocol_file import Limit
from harness.records.journal import read_journal
from harness.records.series_writer import read_series
from harness.report.html_parts import figure, limit_value


def _setpoint_mw(text: str) -> float:
    """``setpoint_mW`` of a series row: one line's set point, or ``a+b`` with several lines on (their
    sum); empty with no line on (NaN)."""
    parts = [number(p) for p in text.split("+")] if text else [math.nan]
    return float(sum(parts))


def emission_on_s(journal: Path, lines: list[str], first_reading_s: float) -> float | None:
    """When emission of every line in ``lines`` was last switched on before ``first_reading_s`` (the
    latest of them; the journal records it once the light is out), in s since the run started; None
    when the journal does not say (no such record, a line switched off after it, no line on)."""
    wanted = {x for line in lines for x in line.split("+")} - {"none", ""}
    if not wanted:
        return None
    state: dict[str, float | None] = {}
    for record in read_journal(journal, missing_ok=True):
        t = record.get("t_s")
        if record.get("type") != "setting" or record.get("emission") not in ("on", "off") or not isinstance(t, (int, float)) or t > first_reading_s:
            continue
        line = str(record.get("line", ""))
        if line in wanted:
            state[line] = float(t) if record["emission"] == "on" else None
    times = [state.get(line) for line in wanted]
    return max(t for t in times if t is not None) if all(t is not None for t in times) else None


def analyse_series(path: Path, limits: Mapping[str, Limit]) -> Result:
    """The stability or linearity result of one power series CSV."""
    rows = [r for r in read_series(path) if r["status"] == "ok"]
    if not rows:
        return {"series": path.name, "kind": "empty", "subject": path.stem, "metrics": {}, "verdict": "fail", "note": "no valid reading"}
    lines = sorted({r["lines_on"] for r in rows})
    # grouped by the set point as recorded (text): a float key would make every empty set point
    # (no line on: NaN) a group of its own, since NaN != NaN
    setpoints: OrderedDict[str, list[dict[str, str]]] = OrderedDict()
    for r in rows:
        setpoints.setdefault(r["setpoint_mW"] or "", []).append(r)
    subject = "no line on" if lines == ["none"] else f"{'+'.join(lines)} nm"
    table: list[dict[str, float]] = []
    extra: dict[str, Any] = {}
    if len(setpoints) > 1:
        s = np.array([_setpoint_mw(k) for k in setpoints])
        if not np.isfinite(s).all():
            raise BadInput(f"linearity: set points that are not numbers ({', '.join(repr(k) for k, v in zip(setpoints, s) if not math.isfinite(v))}): "
                           "a linearity series needs a line on at a known set point for every reading")
        p = np.array([np.mean([number(r["power_W"]) for r in group]) * 1e3 for group in setpoints.values()])
        metrics = linearity_metrics(s, p)
        kind = "linearity"
        table = [{"setpoint_mw": float(k), "mean_power_mw": float(v)} for k, v in zip(s, p)]
    else:
        t = np.array([number(r["time_s"]) for r in rows])
        p = np.array([number(r["power_W"]) for r in rows])
        on = emission_on_s(path.parent / "journal.jsonl", lines, float(t[0])) if len(t) else None
        metrics, steps = power_series_analysis(t, p, on)
        kind = "stability"
        extra = {"emission_on_s": on, "mode_hops": [{"time_s": s.time_s, "size_pct": s.size_pct, "index": s.index} for s in steps]}
    entries, verdict = judged(metrics, limits)
    missing = sum(1 for r in read_series(path) if r["status"] != "ok")
    out: Result = {
        "series": path.name, "kind": kind, "subject": subject, "lines_on": lines,
        "setpoints_mw": sorted(setpoints), "location": rows[0]["location"], "missing_readings": missing,
        "metrics": entries, "verdict": verdict,
    }
    if table:
        out["points"] = table
    out.update(extra)
    return out


class PowerAnalysis:
    spec: AnalysisSpec = SPEC
    conventions = (power_metrics.__doc__ or "").split("Conventions", 1)[-1].strip().lstrip(": ")

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == "power_series"

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return [analyse_series(inside(folder, name), limits)]

    def figures(self, folder: Path, result: Result) -> str:
        r, subject = result, result["subject"]
        if r["kind"] == "stability":
            rows = [x for x in read_series(inside(folder, r["series"])) if x["status"] == "ok"]
            t = np.array([float(x["time_s"]) for x in rows])
            p = np.array([float(x["power_W"]) for x in rows]) * 1e3
            hops = [float(h["time_s"]) for h in r.get("mode_hops") or [] if isinstance(h, dict) and isinstance(h.get("time_s"), (int, float))]
            warmup = r["metrics"].get("warmup_time_s", {}).get("value")
            on = r.get("emission_on_s")
            warm_end = float(on) + float(warmup) if isinstance(on, (int, float)) and isinstance(warmup, (int, float)) else None
            marks = (f"; red dotted: {len(hops)} mode hop{'s' if len(hops) != 1 else ''}" if hops else "") + \
                    ("; green dash-dot: end of the warm-up" if warm_end is not None and warm_end >= float(t[0]) else "")
            return figure(plots.power_vs_time(t, p, f"{subject}: power vs time", limit_value(r, "stability_pct", 0), hops, warm_end),
                          f"{subject}: {len(p)} readings from {r['series']}; shaded: measured min-max{marks}")
        if r["kind"] == "linearity" and r.get("points"):
            s = np.array([x["setpoint_mw"] for x in r["points"]])
            p = np.array([x["mean_power_mw"] for x in r["points"]])
            m = r["metrics"]
            return figure(plots.linearity(s, p, m["slope"]["value"], m["intercept_mw"]["value"], m["slope_through_origin"]["value"], f"{subject}: linearity"),
                          f"{subject}: mean power per set point, OLS and through-origin fits; residuals relative to the OLS fit")
        return ""

    def section(self, result: Result) -> list[str]:
        return []


ANALYSIS = PowerAnalysis()
