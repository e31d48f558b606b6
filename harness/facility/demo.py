"""The demo facility: the schedules of a facility's simulated microscopes run over a span of virtual
time (a month by default) into one fresh results database, so that the facility board has real
trends, an overdue check and out-of-control points to show.

Contract:
- ``prepare`` checks what the demo is given and sets it up: the run folder ``out`` must be new or
  empty; the database must have no runs unless ``append``; its tables are created here, once,
  before many processes write into it; the facility's station files are copied into
  ``out/stations`` with ``simulation.day_zero`` set to the first day (``facility_file``). A mistake
  is a ``UserError``, and nothing is written then.
- ``run_demo`` runs each microscope's schedule (``harness.unattended.Scheduler`` on a
  ``VirtualClock`` from ``start`` to ``start + days``, or to its ``service_stops_after``), its runs
  in ``out/<schedule name>``, as separate ``microscope-qc run`` processes (a different seed per run,
  ``run_launcher.run_seed``). Microscopes run in parallel in ``jobs`` worker processes, in the order
  of the facility file (list the busiest first). Progress lines go to ``say`` as they come.
  Returns a ``DemoSummary``; a run that failed is data (counted), not an exception.
- Virtual time makes it repeatable: the same facility, start and days give the same runs, seeds
  and values (only the run ids and the wall-clock times differ).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from harness.analysis.control_chart import MIN_CONTROL_BASELINE, evaluate
from harness.board.policy import NEVER_RUN, OVERDUE, due_state, read_policy
from harness.common.errors import UserError
from harness.facility.facility_file import Facility, instantiate_stations, read_facility_file
from harness.records.run_record import read_run
from harness.store.results_store import ResultsStore, shown
from harness.unattended.schedule_file import Schedule, read_schedule_file
from harness.unattended.schedule_state import ScheduleState
from harness.unattended.scheduler import Scheduler
from simulators.clock import VirtualClock

# the series whose control charts the summary looks at: (protocol, metric)
CHARTED = (("power-stability-short", "mean_mw"), ("stage-repeatability", "max_displacement_um"))


@dataclass(frozen=True)
class DemoPlan:
    facility: Facility
    start: datetime
    days: float
    out: Path
    db_url: str
    stations: dict[Path, Path]  # shipped station file -> its copy with day_zero set


@dataclass(frozen=True)
class Task:
    """What one worker process needs (picklable): one microscope's schedule over the span."""

    name: str
    schedule_path: str
    station_copy: str
    runs_dir: str
    db_url: str
    start: str
    until: str


@dataclass
class MicroscopeResult:
    name: str
    runs_dir: str
    outcomes: list[dict[str, Any]]
    seconds: float
    until: str


@dataclass
class DemoSummary:
    plan: DemoPlan
    results: list[MicroscopeResult]
    seconds: float
    seeds: list[int] = field(default_factory=list)
    out_of_control: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary for people."""
        p = self.plan
        out = [f"Demo facility {p.facility.name!r}: {p.days:g} days from {p.start:%Y-%m-%d %H:%M} UTC, "
               f"{sum(len(r.outcomes) for r in self.results)} attempts in {self.seconds:.0f} s real time"]
        for r in self.results:
            out.append(f"  {r.name}  (virtual time to {r.until[:16]}; {r.seconds:.0f} s real time)")
            by: dict[str, Counter[str]] = defaultdict(Counter)
            for o in r.outcomes:
                word = (o.get("verdict") or "not judged") if o.get("outcome") == "completed" else o.get("outcome", "?")
                by[Path(str(o.get("protocol", "?"))).stem][str(word)] += 1
            for protocol in sorted(by):
                counts = ", ".join(f"{n} {w}" for w, n in by[protocol].most_common())
                n = sum(by[protocol].values())
                out.append(f"    {protocol:<24} {n:>3} run{'s' if n != 1 else ''}: {counts}")
        if self.seeds:
            distinct = len(set(self.seeds))
            out.append(f"Seeds: {len(self.seeds)} runs, {distinct} different seeds, {min(self.seeds)} .. {max(self.seeds)} (run.json station.seed)")
        out += ["Out of control (control charts, baseline of the first runs):"] + [f"  {x}" for x in self.out_of_control or ["none"]]
        if p.facility.policy is not None:
            out += [f"Overdue at the end under {p.facility.policy.name}:"] + [f"  {x}" for x in self.overdue or ["none"]]
        policy = f" --policy {p.facility.policy}" if p.facility.policy else ""
        out += ["Runs in " + str(p.out), "The board: microscope-qc serve --db " + shown(p.db_url) + policy]
        return out


def demo_start(days: float, now: datetime | None = None) -> datetime:
    """The default first day: ``days`` before today's midnight (UTC), so that the demo ends today."""
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)


def prepare(facility_path: Path, start: datetime, days: float, out: Path, db_url: str | None, append: bool = False) -> DemoPlan:
    """Check and set up a demo (see the module's contract)."""
    if not days > 0:
        raise UserError(f"--days must be more than 0, got {days:g}")
    facility = read_facility_file(facility_path)
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: not an empty folder; the demo writes its runs into a new one")
    url = db_url or f"sqlite:///{out / 'facility.sqlite'}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        with ResultsStore(url) as store:  # creates the tables once, before the run processes write
            existing = len(store.history())
    except UserError:
        _remove_if_empty(out)
        raise
    if existing and not append:
        _remove_if_empty(out)
        raise UserError(f"results database {shown(url)} already has {existing} runs; the demo fills a fresh database "
                        "(give another --db, or --append to add the demo's runs to it)")
    stations = instantiate_stations(facility, out / "stations", start)
    return DemoPlan(facility, start.astimezone(timezone.utc), days, out, url, stations)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def tasks(plan: DemoPlan) -> list[Task]:
    end = plan.start + timedelta(days=plan.days)
    out = []
    for m in plan.facility.microscopes:
        until = end if m.stops_after_s is None else min(end, plan.start + timedelta(seconds=m.stops_after_s))
        station = m.schedule.station_of(m.schedule.spec.jobs[0])
        out.append(Task(m.station_name, str(m.schedule_path), str(plan.stations[station]), str(plan.out / m.schedule.spec.schedule),
                        plan.db_url, plan.start.isoformat(), until.isoformat()))
    return out


def demo_schedule(task: Task) -> Schedule:
    """The microscope's schedule as the demo runs it: its runs folder, the demo's database and the
    station file copy with day_zero set; everything else as the schedule file says."""
    schedule = read_schedule_file(task.schedule_path)
    spec = schedule.spec.model_copy(update={
        "runs_dir": task.runs_dir, "database": task.db_url, "station": task.station_copy, "notify": None,
        "jobs": [j.model_copy(update={"station": None}) for j in schedule.spec.jobs],
    })
    return Schedule(schedule.path, spec)


def run_microscope(task: Task) -> MicroscopeResult:
    """One microscope's schedule on virtual time (in a worker process): its progress on stdout."""
    began = time.monotonic()
    schedule = demo_schedule(task)
    width = 34

    def say(text: str) -> None:
        if ": attempt " in text:
            return  # the conclusion of each attempt is said; its start is not
        if ": completed" in text:
            text = text.split("; ", 1)[0]
        print(f"{task.name[:width]:<{width}} {text}", flush=True)

    clock = VirtualClock(datetime.fromisoformat(task.start))
    Scheduler(schedule, clock, out=say).run(until=datetime.fromisoformat(task.until))
    outcomes = ScheduleState(schedule.state_dir).outcomes()
    seconds = time.monotonic() - began
    print(f"{task.name[:width]:<{width}} done: {len(outcomes)} attempts in {seconds:.0f} s", flush=True)
    return MicroscopeResult(task.name, task.runs_dir, outcomes, seconds, task.until)


def run_demo(plan: DemoPlan, jobs: int = 0, say: Callable[[str], None] = print) -> DemoSummary:
    """Run the demo (see the module's contract); ``jobs`` worker processes (0: one per processor,
    at most one per microscope)."""
    began = time.monotonic()
    work = tasks(plan)
    jobs = jobs or max(1, min(len(work), os.cpu_count() or 1))
    say(f"{len(work)} microscopes, {plan.days:g} days of virtual time from {plan.start:%Y-%m-%d} UTC, {jobs} at a time; "
        f"runs in {plan.out}, results in {shown(plan.db_url)}")
    sys.stdout.flush()
    if jobs == 1:
        results = [run_microscope(t) for t in work]
    else:  # fresh interpreters (spawn): no inherited threads, locks or database connections
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(run_microscope, work))
    summary = DemoSummary(plan, results, time.monotonic() - began)
    summary.seeds = seeds_of(results)
    summary.out_of_control = out_of_control(plan.db_url, [r.name for r in results])
    if plan.facility.policy is not None:
        summary.overdue = overdue(plan.facility.policy, plan.db_url, [r.name for r in results], plan.start + timedelta(days=plan.days))
    return summary


def seeds_of(results: list[MicroscopeResult]) -> list[int]:
    """The seed of every run folder (run.json ``station.seed``)."""
    seeds = []
    for r in results:
        for o in r.outcomes:
            if o.get("folder"):
                try:
                    seed = (read_run(Path(o["folder"])).as_dict().get("station") or {}).get("seed")
                except (OSError, ValueError):
                    continue
                if isinstance(seed, int):
                    seeds.append(seed)
    return seeds


def out_of_control(db_url: str, stations: list[str]) -> list[str]:
    """For people: each charted series (``CHARTED``) of these stations with points outside its
    control limits (a baseline of at least ``MIN_CONTROL_BASELINE`` runs), and its first one."""
    found = []
    with ResultsStore(db_url) as store:
        for protocol, metric in CHARTED:
            for key in store.chart_keys(metric, protocol=protocol):
                if key.station not in stations:
                    continue
                points = store.series(key.station, metric, key.subject, key.protocol, key.kind)
                if len(points) < MIN_CONTROL_BASELINE + 1:
                    continue
                limits, flags = evaluate([p.value for p in points], baseline=MIN_CONTROL_BASELINE)
                outside = [f for f in flags if f.rule == "outside"]
                if outside:
                    first = points[outside[0].index]
                    found.append(f"{key.station}, {protocol} {key.subject} {metric}: {len(outside)} of {len(points)} points outside "
                                 f"{limits.lower:.4g} .. {limits.upper:.4g} {key.unit or ''}; first on {first.ended_utc:%Y-%m-%d} "
                                 f"({first.value:.4g}: {outside[0].detail})")
    return found


def overdue(policy_path: Path, db_url: str, stations: list[str], at: datetime) -> list[str]:
    """For people: the checks of these stations that are overdue at ``at`` by the facility policy
    (``harness.board.policy``, the board's own rule: a required check never run is listed too)."""
    policy = read_policy(policy_path)
    last: dict[tuple[str, str], datetime] = {}
    with ResultsStore(db_url) as store:
        for run in store.history():
            if run.station in stations and run.status == "completed" and run.ended_utc is not None:
                last[(run.station, run.protocol)] = max(run.ended_utc, last.get((run.station, run.protocol), run.ended_utc))
    found = []
    for station in stations:
        for check in sorted(set(policy.checks()) | {p for s, p in last if s == station}):
            state = due_state(policy, station, check, last.get((station, check)), at)
            if state.state == NEVER_RUN:
                found.append(f"{station}: {check} (required every {(state.interval_s or 0) / 86400:g} d; never run)")
            elif state.state == OVERDUE and state.due is not None:
                when = last[(station, check)]
                every = (state.interval_s or 0) / 86400
                found.append(f"{station}: {check} (every {every:g} d; last run {when:%Y-%m-%d}, {(at - when).days} days before the end)")
    return found


def as_json(summary: DemoSummary) -> dict[str, Any]:
    """The summary as data (tests, scripts)."""
    return {"start": summary.plan.start.isoformat(), "days": summary.plan.days, "db": shown(summary.plan.db_url),
            "seconds": summary.seconds, "seeds": summary.seeds, "out_of_control": summary.out_of_control, "overdue": summary.overdue,
            "microscopes": {r.name: r.outcomes for r in summary.results}}


def write_summary(summary: DemoSummary) -> Path:
    path = summary.plan.out / "demo-summary.json"
    path.write_text(json.dumps(as_json(summary), indent=1), encoding="utf-8")
    return path
