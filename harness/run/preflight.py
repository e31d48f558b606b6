"""Preflight: a protocol is checked against its station before anything moves.

Contract:
- ``station_facts(station)``, ``file_facts(path)``: what a loaded station, or its file alone, knows
  (``harness.run.station_facts``).
- ``check_plan(...)`` checks an expanded plan (loops unrolled, % converted with the line's nominal
  power) against those facts, through each step kind's ``StepExecutor.check``
  (``harness/run/steps``), and returns a ``Report`` with EVERY problem found, each naming the protocol
  file:line of its step: roles the station does not fill; set points above the line's own
  ``max_power_mw``, the station's ``safety.max_laser_power_mw`` or the laser's maximum; ``move: {to:}``
  before the mark; ROI / centre_roi / binning that the camera cannot give; ``set_property`` on a
  device or role the station lacks, a property the device does not have, a read-only one, or a value
  outside its allowed values or limits. It also gives the estimated station time and data volume;
  data that would not fit on the disk of the runs folder (estimated data x 1.2 + 100 MB must be free)
  is ``no_space``: a precondition (the run is not started, exit 5; a scheduled job is postponed),
  not a mistake in a file.
- ``station_file_problems``, ``read_station_file``, ``facts_for``: see ``harness.run.station_facts``
  (re-exported here).
- A refused preflight raises ``PreflightFailed`` (a ``UserError``: exit status 2); nothing has been
  touched by then (the station may have been loaded, which puts it into its safe state).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.common.errors import UserError
from harness.common.yaml_source import YamlDocument
from harness.protocol.plan import Plan, expand, lines_named
from harness.protocol.protocol_file import ProtocolFile, read_protocol_file
from harness.run.station_facts import (
    CameraFacts,
    LineFacts,
    StationFacts,
    cfg_devices,
    device_label,
    facts_for,
    file_facts,
    read_station_file,
    station_facts,
    station_file_problems,
)
from harness.run.steps import EXECUTORS
from harness.run.steps.base import ASSUMED_SENSOR, FRAME_EXTRA_BYTES, ROW_BYTES, PlanCheck
from harness.station.run_guard import PreconditionFailed

__all__ = [  # the station's facts, re-exported for callers that knew them here
    "CameraFacts", "LineFacts", "StationFacts", "cfg_devices", "device_label", "facts_for", "file_facts", "read_station_file",
    "station_facts", "station_file_problems", "ROW_BYTES", "FRAME_EXTRA_BYTES",
]

DISK_FACTOR, DISK_RESERVE = 1.2, 100e6  # free space needed: data x 1.2 + 100 MB


class PreflightFailed(UserError):
    """The protocol cannot run on this station as written; nothing was touched."""


@dataclass
class Report:
    protocol: Path
    station: Path
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    actions: int = 0
    estimate_s: float = 0.0
    data_bytes: float = 0.0
    free_bytes: float | None = None
    loaded: bool = False
    no_space: str = ""  # the data would not fit: a precondition (the disk may be freed), not a mistake in a file

    @property
    def ok(self) -> bool:
        return not self.problems and not self.no_space

    @property
    def failures(self) -> list[str]:
        return self.problems + ([self.no_space] if self.no_space else [])

    def line(self) -> str:
        free = f", {self.free_bytes / 1e9:.1f} GB free" if self.free_bytes is not None else ""
        how = "checked against the loaded station" if self.loaded else "checked against the station file"
        return (f"{self.protocol} on {self.station}: preflight passed ({self.actions} actions, about {self.estimate_s / 60:.1f} min of station time, "
                f"{self.data_bytes / 1e6:.1f} MB of data{free}; {how})")

    def raise_if_failed(self) -> None:
        """``PreflightFailed`` (exit 2) for mistakes, else ``PreconditionFailed`` (not started, exit 5) for disk space."""
        if self.problems:
            raise PreflightFailed("\n".join(self.failures))
        if self.no_space:
            raise PreconditionFailed(self.no_space)


# --- checking a plan -------------------------------------------------------------------------------
def roles_problems(plan: Plan, have: set[str], protocol_path: Path, station_path: Path) -> list[str]:
    return [f"{protocol_path}:{plan.role_lines.get(role, 1)}: protocol: needs the role '{role}', "
            f"which station {station_path} does not fill"
            for role in sorted(plan.roles - have)]


def _free_bytes(runs_dir: Path) -> float:
    here = runs_dir.resolve()
    while not here.exists() and here != here.parent:
        here = here.parent
    return float(shutil.disk_usage(here).free)


def check_plan(protocol: ProtocolFile, doc: YamlDocument, plan: Plan, facts: StationFacts, runs_dir: Path | None) -> Report:
    """Every problem of ``plan`` on the station ``facts`` describe (each step kind's own checks:
    ``harness/run/steps``), the data volume, and whether it fits in ``runs_dir``."""
    path = doc.path
    kinds = {a.kind for a in plan.actions}
    report = Report(path, facts.path, actions=len(plan.actions), estimate_s=plan.estimate_s, loaded=facts.loaded,
                    skipped=[text for kind, text in facts.skipped if not kind or kind in kinds])
    report.problems += roles_problems(plan, facts.roles, path, facts.path)
    check = PlanCheck(path, facts, report.problems)
    for action in plan.actions:
        EXECUTORS[action.kind].check(action, check)
    for executor in EXECUTORS.values():
        executor.check_end(check)
    camera = facts.camera
    if camera is not None and camera.sensor is None and "acquire" in kinds:
        report.skipped.append(f"data volume: full frames counted as {ASSUMED_SENSOR[0]}x{ASSUMED_SENSOR[1]} pixels (the sensor size is not known)")
    data = report.data_bytes = check.data_bytes
    if runs_dir is not None:
        free = _free_bytes(Path(runs_dir))
        report.free_bytes = free
        need = data * DISK_FACTOR + DISK_RESERVE
        if need > free:
            report.no_space = (f"{path}:1: protocol: about {data / 1e9:.3g} GB of data would be written to {runs_dir}, which has {free / 1e9:.3g} GB free "
                               f"(needed with margin: {need / 1e9:.3g} GB); free space, choose another --runs-dir, or acquire less")
    return report


def preflight(protocol_path: str | Path, facts: StationFacts, runs_dir: Path | None) -> Report:
    """Read, expand and check a protocol file against a station; file mistakes become problems."""
    try:
        protocol, doc = read_protocol_file(protocol_path)
        lines = sorted(facts.lines, key=float) if facts.lines_known else sorted(set(facts.lines) | set(lines_named(doc.data)), key=float)
        plan = expand(protocol, doc, lines, facts.optics)
    except UserError as exc:
        return Report(Path(protocol_path), facts.path, problems=[str(exc)], loaded=facts.loaded)
    return check_plan(protocol, doc, plan, facts, runs_dir)


# --- schedules ---------------------------------------------------------------------------------------
def preflight_job(schedule: Any, job: Any, facts: StationFacts) -> Report:
    report = preflight(schedule.protocol_of(job), facts, schedule.runs_dir)
    report.problems = [f"job {job.name!r}: {p}" for p in report.problems]
    report.no_space = f"job {job.name!r}: {report.no_space}" if report.no_space else ""
    return report


def preflight_schedule(schedule: Any, load: bool = True) -> list[tuple[Any, Report]]:
    """Every enabled job's protocol against its station (each station loaded once when ``load``)."""
    out: list[tuple[Any, Report]] = []
    by_station: dict[Path, list[Any]] = {}
    for job in schedule.spec.jobs:
        by_station.setdefault(schedule.station_of(job), []).append(job)
    for station_path, jobs in by_station.items():
        try:
            if load:
                with facts_for(station_path, purpose=f"preflight of schedule {schedule.spec.schedule}") as facts:
                    out += [(job, preflight_job(schedule, job, facts)) for job in jobs]
            else:
                facts = file_facts(station_path)
                out += [(job, preflight_job(schedule, job, facts)) for job in jobs]
        except UserError as exc:  # the station itself cannot be used
            for job in jobs:
                out.append((job, Report(schedule.protocol_of(job), station_path, problems=[f"job {job.name!r}: its station cannot load: {exc}"])))
    return out


# --- the validate command ------------------------------------------------------------------------------
def _say(report: Report, out: Any) -> None:
    if report.ok:
        out(report.line())
    for note in report.skipped:
        out(f"  skipped: {note}")


def validate_protocols(paths: list[Path], station: Path, runs_dir: Path, out: Any) -> list[str]:
    """``validate PROTOCOL... --station STATION``: the station loaded once (or its file); returns the failures."""
    failures: list[str] = []
    try:
        with facts_for(station, purpose="validate") as facts:
            for path in paths:
                report = preflight(path, facts, runs_dir)
                _say(report, out)
                failures += report.failures
    except UserError as exc:
        failures.append(str(exc))
    return failures


def validate_schedule(schedule: Any, out: Any) -> list[str]:
    """``validate SCHEDULE``: every job preflighted against its station; returns the failures."""
    failures: list[str] = []
    results = preflight_schedule(schedule, load=True)
    for job, report in results:
        if report.ok:
            out(f"{schedule.path}: job {job.name!r}: " + report.line())
        for note in report.skipped:
            out(f"  skipped: {note}")
        failures += report.failures
    if not failures:
        n = len(schedule.spec.jobs)
        out(f"{schedule.path}: valid schedule file ({n} job{'s' if n != 1 else ''}, time zone {schedule.spec.timezone}), every job preflighted")
    return failures
