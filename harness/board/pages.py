"""What each page of the board shows, as plain data for its template (no web framework here): the
overview matrix, a microscope, a run, the trends of a metric, a certificate.

Every function takes the read-only queries (``BoardData``), the facility ``Policy`` and the time
"now" (so due dates are computed against a stated time), and returns a dict for the template. A
name the store does not know raises ``NotFound``; a bad argument ``UserError`` (both are pages, not
tracebacks, in ``harness.board.app``).
"""

from __future__ import annotations

import json
import math
import threading
from datetime import date, datetime
from typing import Any

from harness.analysis.control_chart import evaluate, flagged_indices
from harness.board import svg_charts
from harness.board.policy import NEVER_RUN, NOT_REQUIRED, OVERDUE, Policy, due_state
from harness.board.queries import COMPLETED, BoardData, Metric, Run
from harness.board.run_files import ProgressReader, is_run_folder, list_files, run_facts
from harness.report.trend_report import Chart

SPARKLINES = 8  # key metrics shown as small trends on a microscope's page


class NotFound(Exception):
    """The store knows no such microscope, run or metric; ``str()`` says which."""


def age(delta_s: float | None) -> str:
    """A duration for a glance: "45 min", "5 h", "3 d"; under a minute, or ahead of "now" (a run on
    virtual time can end after the wall clock's now), "just now"."""
    if delta_s is None:
        return ""
    if delta_s < 60:
        return "just now"
    if delta_s < 3600:
        return f"{int(delta_s // 60)} min"
    if delta_s < 2 * 86400:
        return f"{int(delta_s // 3600)} h"
    return f"{int(delta_s // 86400)} d"


def limit_text(limit_json: str | None, unit: str | None) -> str:
    """``{"pass": [99, null], "warn": [98, null]}`` -> "pass >= 99 %; warn >= 98 %"."""
    if not limit_json:
        return ""
    try:
        limit = json.loads(limit_json)
    except ValueError:
        return limit_json
    if not isinstance(limit, dict):
        return str(limit)
    u = f" {limit.get('unit') or unit}" if (limit.get("unit") or unit) else ""
    parts = []
    for band in ("pass", "warn"):
        bounds = limit.get(band)
        if not isinstance(bounds, list) or len(bounds) != 2:
            continue
        lo, hi = bounds
        if lo is not None and hi is not None:
            parts.append(f"{band} {lo:g} to {hi:g}{u}")
        elif lo is not None:
            parts.append(f"{band} >= {lo:g}{u}")
        elif hi is not None:
            parts.append(f"{band} <= {hi:g}{u}")
    return "; ".join(parts)


def verdict_of(run: Run | None) -> tuple[str, str]:
    """(word, css class) of a run for a cell: its verdict if completed, else its outcome."""
    if run is None:
        return "", "none"
    if run.status == COMPLETED:
        return run.verdict, run.verdict.replace(" ", "-")
    return run.status, "failed"


def _seconds(a: datetime, b: datetime | None) -> float | None:
    return None if b is None else (a - b).total_seconds()


def cell_view(policy: Policy, microscope: str, check: str, cell: Any, now: datetime) -> dict[str, Any]:
    last, done = cell.last, cell.last_completed
    word, css = verdict_of(done or last)
    due = due_state(policy, microscope, check, done.when if done else None, now)
    return {"verdict": word, "css": css, "run_id": (done or last).run_id if (done or last) else None,
            "age": age(_seconds(now, (done or last).when)) if (done or last) else "",
            "due": due.state, "due_date": due.due, "interval_s": due.interval_s,
            "not_applicable": policy.not_applicable(microscope, check), "runs": cell.runs,
            "later_attempt": verdict_of(last)[0] if last is not None and done is not None and last.run_id != done.run_id else None}


def _matrix(data: BoardData, policy: Policy, now: datetime, only: str | None = None) -> dict[str, Any]:
    stations, protocols = data.names()
    microscopes = [only] if only else sorted(set(stations) | set(policy.microscopes()))
    checks = sorted(set(protocols) | set(policy.checks()))
    matrix = data.matrix(microscopes, checks)
    rows: list[dict[str, Any]] = [{"microscope": m, "cells": [cell_view(policy, m, c, matrix.cell(m, c), now) for c in checks]} for m in microscopes]
    overdue = sum(1 for r in rows for c in r["cells"] if c["due"] in (OVERDUE, NEVER_RUN))
    return {"microscopes": microscopes, "checks": checks, "rows": rows, "overdue": overdue}


def running_view(data: BoardData, progress: ProgressReader) -> list[dict[str, Any]]:
    return [{"run": r, "progress": progress.read(r.folder, r.run_id)} for r in data.running()]


class OutOfControl:
    """The recent out-of-control points of the judged metrics (those with acceptance limits) and of
    the policy's watched metrics, for the overview; recomputed only when the store's runs change
    (keyed by their count and newest end)."""

    def __init__(self, watched: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()) -> None:
        self.watched = watched
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] = ()
        self._found: list[dict[str, Any]] = []

    def recent(self, data: BoardData, limit: int = 10) -> list[dict[str, Any]]:
        key = data.signature()
        with self._lock:
            if key != self._key:
                self._found, self._key = self._compute(data), key
            return self._found[:limit]

    def _compute(self, data: BoardData) -> list[dict[str, Any]]:
        """One entry per chart with out-of-control points: its newest such point, and how many of
        its points are flagged (a drifting laser flags many: one line, not a screenful)."""
        found = []
        for (station, protocol, subject, kind, metric, unit), points in data.judged_series(self.watched).items():
            limits, flags = evaluate([p[1] for p in points])
            flagged = flagged_indices(flags)
            if not flagged:
                continue
            i = max(flagged)
            ended, value, run_id = points[i]
            found.append({"station": station, "protocol": protocol, "subject": subject, "kind": kind, "metric": metric,
                          "unit": unit, "ended": ended, "value": value, "run_id": run_id, "flagged": len(flagged), "points": len(points),
                          "why": "; ".join(f.detail for f in flags if f.index == i), "established": limits.established})
        return sorted(found, key=lambda f: f["ended"], reverse=True)


def overview(data: BoardData, policy: Policy, now: datetime, progress: ProgressReader, ooc: OutOfControl) -> dict[str, Any]:
    return {**_matrix(data, policy, now), "running": running_view(data, progress), "out_of_control": ooc.recent(data), "now": now,
            "watched": [f"{metric} ({check})" for check, metric in sorted(ooc.watched)]}


def _subject_order(subject: str) -> tuple[float, str]:
    """"405 nm" before "1000 um moves": by the leading number, then by text."""
    try:
        return float(subject.split(" ", 1)[0]), subject
    except ValueError:
        return math.inf, subject


def charts(data: BoardData, metric: str, station: str | None = None, subject: str | None = None, protocol: str | None = None) -> list[Chart]:
    """The control charts of a metric (one per microscope, check, subject and kind), from one query:
    limits and flags by ``control_chart.evaluate`` (baseline: the first 10 runs), the acceptance limit
    the newest run was judged by. ``NotFound`` when there is no value."""
    found = data.metric_points(metric, station, subject, protocol)
    if not found and subject and subject.strip().replace(".", "", 1).isdigit():  # a bare wavelength names that laser line
        found = data.metric_points(metric, station, f"{subject.strip()} nm", protocol)
    if not found:
        which = ", ".join(f"{n} {v!r}" for n, v in (("microscope", station), ("subject", subject), ("check", protocol)) if v)
        raise NotFound(f"no completed run has a value of {metric!r}" + (f" for {which}" if which else ""))
    out = []
    for key in sorted(found, key=lambda k: (k.station, k.protocol, k.kind, _subject_order(k.subject), k.unit or "")):
        points = [p for p, _ in found[key]]
        limits, flags = evaluate([p.value for p in points])
        newest = found[key][-1][1]
        out.append(Chart(key, metric, points, limits, flags, acceptance=json.loads(newest) if newest else None))
    return out


def key_metrics(judged: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """Up to ``SPARKLINES`` judged metrics, each at its first subject, taken in turn from each check."""
    per_check: dict[str, list[tuple[str, str, str, str]]] = {}
    seen: set[tuple[str, str]] = set()
    for protocol, metric, subject, kind in judged:
        if (protocol, metric) not in seen:
            seen.add((protocol, metric))
            per_check.setdefault(protocol, []).append((protocol, metric, subject, kind))
    picked: list[tuple[str, str, str, str]] = []
    queues = list(per_check.values())
    while queues and len(picked) < SPARKLINES:
        queues = [q for q in queues if q]
        for q in queues:
            if q and len(picked) < SPARKLINES:
                picked.append(q.pop(0))
    return picked


def microscope(data: BoardData, policy: Policy, now: datetime, name: str) -> dict[str, Any]:
    stations, _ = data.names()
    if name not in stations and name not in policy.microscopes():
        raise NotFound(f"no microscope {name!r} in the results database or the policy")
    view = _matrix(data, policy, now, only=name)
    checks = [{"check": c, **cell} for c, cell in zip(view["checks"], view["rows"][0]["cells"])
              if cell["runs"] or cell["due"] != NOT_REQUIRED]
    sparks = []
    for protocol, metric, subject, kind in key_metrics(data.judged_metrics(name)):
        for chart in [c for c in charts(data, metric, name, subject, protocol) if c.key.kind == kind][:1]:
            y = svg_charts.shared_range([chart])
            sparks.append({"chart": chart, "svg": svg_charts.chart_svg(chart, y, 300, 150), "last": chart.points[-1],
                           "flagged": len(flagged_indices(chart.flags))})
    return {"name": name, "checks": checks, "sparks": sparks, "runs": data.station_runs(name), "now": now}


def run_page(data: BoardData, run_id: str, progress: ProgressReader) -> dict[str, Any]:
    run = data.run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r} in the results database")
    own = is_run_folder(run.folder, run.run_id)
    facts = run_facts(run.folder, run.run_id)
    files = list_files(run.folder, run.run_id)
    rows = [{"m": m, "limit": limit_text(m.limit_json, m.unit)} for m in data.run_metrics([run_id])[run_id]]
    live = progress.read(run.folder, run.run_id) if run.status == "running" and own else None
    seed = run.seed if run.seed is not None else facts.get("seed")
    return {"run": run, "facts": facts, "seed": seed, "files": list(files), "report": "report.html" in files, "metrics": rows,
            "progress": live, "own_folder": own}


def trend_index(data: BoardData) -> dict[str, Any]:
    return {"metrics": data.metric_index()}


def trends(data: BoardData, metric: str, subject: str | None, protocol: str | None) -> dict[str, Any]:
    """One row per comparable group (protocol, subject, kind, unit), one chart per microscope in it,
    all of a row on one y-scale."""
    groups: dict[tuple[str, str, str, str], list[Chart]] = {}
    for c in charts(data, metric, subject=subject or None, protocol=protocol or None):
        groups.setdefault((c.key.protocol, c.key.subject, c.key.kind, c.key.unit or ""), []).append(c)
    rows = []
    for (proto, subj, kind, unit), members in groups.items():
        y, x = svg_charts.shared_range(members), svg_charts.shared_span(members)
        rows.append({"protocol": proto, "subject": subj, "kind": kind, "unit": unit,
                     "charts": [{"chart": c, "svg": svg_charts.chart_svg(c, y, x_range=x), "far": svg_charts.far_limits(c, y),
                                 "describe": c.limits.describe(c.key.unit), "flagged": [(c.points[i], "; ".join(f.detail for f in c.flags_at(i)))
                                                                                         for i in flagged_indices(c.flags)]}
                                for c in members]})
    return {"metric": metric, "subject": subject, "protocol": protocol, "rows": rows}


def certificate(data: BoardData, policy: Policy, now: datetime, name: str, first: date, last: date) -> dict[str, Any]:
    stations, _ = data.names()
    if name not in stations and name not in policy.microscopes():
        raise NotFound(f"no microscope {name!r} in the results database or the policy")
    runs = data.period_runs(name, first, last)
    found = data.run_metrics([r.run_id for r in runs])
    entries: list[dict[str, Any]] = []
    for r in runs:
        facts = run_facts(r.folder, r.run_id)
        judged: list[Metric] = [m for m in found[r.run_id] if m.limit_json]
        entries.append({"run": r, "facts": facts, "verdict": verdict_of(r),
                        "metrics": [{"m": m, "limit": limit_text(m.limit_json, m.unit)} for m in judged],
                        "unjudged": len(found[r.run_id]) - len(judged)})
    failed = [e for e, r in zip(entries, runs) if verdict_of(r)[0] in ("fail", "warn") or r.status != COMPLETED]
    checks_run = {r.protocol for r in runs}
    required = [c for c in policy.checks() if policy.interval_s(name, c) is not None and c not in checks_run]
    simulated = sum(1 for e in entries if e["facts"].get("simulated"))
    return {"name": name, "first": first, "last": last, "entries": entries, "failed": failed, "not_run": required, "now": now,
            "simulated": simulated}
