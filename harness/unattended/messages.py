"""What the schedule service says about an outcome: the subject and body of a notification, and
times in the schedule's own time zone.

Contract: pure functions of the schedule, an ``Outcome`` and (for the body) the run folder's
results.json; they never raise for a missing or unreadable run folder or station file.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from harness.records.run_record import read_results
from harness.station.run_guard import station_name
from harness.unattended.schedule_file import Schedule
from harness.unattended.schedule_state import Outcome, parse_iso

EVENTS = {"fail": "QC FAILED", "warn": "QC warning", "run_failed": "run failed (measurement not completed, not a QC verdict)",
          "analysis_failed": "analysis failed (data kept)", "interrupted": "run interrupted", "skipped": "job skipped",
          "unsafe": "SAFE STATE NOT CONFIRMED - a laser may still be on"}


def local(t: datetime, schedule: Schedule) -> str:
    """A time as people at the station read it (the schedule's time zone)."""
    return t.astimezone(schedule.tz).strftime("%a %Y-%m-%d %H:%M %Z")


def subject(schedule: Schedule, o: Outcome, event: str) -> str:
    """The notification's subject: urgent for ``unsafe``; the station's name, the job, the event."""
    station = station_names(schedule).get(o.station, Path(o.station).stem if o.station else "")
    return f"{'URGENT ' if event == 'unsafe' else ''}[microscope-qc] {station or schedule.spec.schedule}: {o.job} - {EVENTS[event]}"


def station_names(schedule: Schedule) -> dict[str, str]:
    """Station file (as a string) -> the station's name, for every job's station."""
    names = {}
    for job in schedule.spec.jobs:
        path = schedule.station_of(job)
        try:
            names[str(path)] = station_name(path)
        except Exception:  # a name is a nicety here; the file is checked where it matters
            names[str(path)] = path.stem
    return names


def body(schedule: Schedule, o: Outcome) -> str:
    """The notification's text: station, protocol, job, outcome, reason, next attempt, run folder and
    the metrics outside their limits."""
    lines = [f"Station: {station_names(schedule).get(o.station, o.station) or '(see schedule)'}",
             f"Protocol: {Path(o.protocol).name if o.protocol else '(see schedule)'}",
             f"Job {o.job} (due {local(parse_iso(o.due), schedule)}, attempt {o.attempt}): {o.outcome}"
             + (f", verdict {o.verdict}" if o.verdict else "")]
    if o.reason:
        lines.append(f"Reason: {o.reason}")
    if o.retry_at:
        lines.append(f"Next attempt: {local(parse_iso(o.retry_at), schedule)}")
    if o.folder:
        lines.append(f"Run folder: {o.folder}")
        lines += failing_metrics(Path(o.folder))
    return "\n".join(lines)


def failing_metrics(folder: Path) -> list[str]:
    """The metrics of a run folder's results.json whose verdict is fail or warn, one line each."""
    try:
        data = read_results(folder).as_dict()
    except (OSError, ValueError):
        return []
    out = []
    for r in data.get("results", []):
        for name, m in r.get("metrics", {}).items():
            if m.get("verdict") in ("fail", "warn"):
                value = m.get("value")
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                out.append(f"  {r.get('subject')}: {name} = {shown} {m.get('unit', '')} ({m['verdict']}; limit {json.dumps(m.get('limit'))})")
    return (["Metrics outside their limits:"] + out) if out else []
