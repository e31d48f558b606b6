"""``microscope-qc schedule ...``: the unattended service (``run``), what is due next (``list``),
one job now (``run-now``), the last outcomes (``last``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from harness.cli.cli_types import at_least
from harness.common.errors import EXIT_PRECONDITION, EXIT_RUN_FAILED, EXIT_USER, UserError

# the modules each command needs are imported inside it: ``microscope-qc --help`` stays fast


def cmd_schedule_run(args: argparse.Namespace) -> int:
    from harness.station.station_lock import StationBusy, StationLock
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.scheduler import Scheduler

    schedule = read_schedule_file(args.file)
    service_lock = StationLock(f"schedule {schedule.spec.schedule}", purpose="schedule service")
    try:
        service_lock.acquire()  # a stale lock taken over is logged (WARNING) by the lock itself
    except StationBusy as exc:
        raise UserError(f"the schedule {schedule.spec.schedule!r} is already being run by another service: pid {exc.owner.pid} "
                        f"on {exc.owner.hostname} -- lock file {exc.path}") from None
    with service_lock:
        from harness.run.preflight import PreflightFailed, preflight_schedule

        reports = [report for _, report in preflight_schedule(schedule, load=True)]
        problems = [problem for report in reports for problem in report.problems]
        if problems:  # a job that cannot run is found now, not at 2 a.m.
            raise PreflightFailed(f"{schedule.path}: not started, a job cannot run:\n" + "\n".join(problems))
        for report in reports:  # disk space may be freed before the job is due: a warning here, a precondition then
            if report.no_space:
                print(f"warning: {report.no_space}", file=sys.stderr)
        scheduler = Scheduler(schedule)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda s, f: scheduler.terminate())
        jobs = len(schedule.spec.jobs)
        print(f"schedule {schedule.spec.schedule!r} ({schedule.path}): {jobs} job{'s' if jobs != 1 else ''}, time zone {schedule.spec.timezone}; "
              f"runs in {schedule.runs_dir}; stop with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
        scheduler.run()
        print("schedule service stopped", file=sys.stderr)
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.schedule_state import ScheduleState

    schedule = read_schedule_file(args.file)
    state = ScheduleState(schedule.state_dir)
    last = {o["job"]: o for o in state.outcomes()}
    now = datetime.now(timezone.utc)
    print(f"schedule {schedule.spec.schedule!r}, time zone {schedule.spec.timezone}, now {now.astimezone(schedule.tz):%a %Y-%m-%d %H:%M %Z}")
    for job in schedule.spec.jobs:
        when = f"cron '{job.cron}'" if job.cron else f"every {_duration(job.every or 0)}"
        times = []
        if job.enabled:
            it = schedule.due_times(job, now)
            times = [f"{next(it).astimezone(schedule.tz):%a %Y-%m-%d %H:%M}" for _ in range(args.count)]
        prev = last.get(job.name)
        prev_text = (f"{prev['outcome']}{' ' + prev['verdict'] if prev.get('verdict') else ''} at "
                     f"{datetime.fromisoformat(prev['time']).astimezone(schedule.tz):%a %Y-%m-%d %H:%M}") if prev else "never run"
        pending = [p for p in state.pending if p.job == job.name]
        print(f"  {job.name:<20} {Path(job.protocol).stem:<24} {when}; missed: {job.missed}; last: {prev_text}")
        retry = f"{datetime.fromisoformat(pending[0].not_before).astimezone(schedule.tz):%a %Y-%m-%d %H:%M}" if pending else ""
        print(f"  {'':<20} next: {', '.join(times) if times else 'disabled'}" + (f"; pending attempt {pending[0].attempt} at {retry}" if pending else ""))
    return 0


def cmd_schedule_run_now(args: argparse.Namespace) -> int:
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.scheduler import Scheduler

    schedule = read_schedule_file(args.file)
    job = schedule.job(args.job)
    wait = schedule.preconditions_of(job).station_free_within
    print(f"{job.name}: if the station is in use, waiting up to {wait:g} s for it", file=sys.stderr)
    outcome = Scheduler(schedule).run_now(args.job)
    print(f"{outcome.job}: {outcome.outcome}{' ' + outcome.verdict if outcome.verdict else ''}"
          + (f" ({outcome.reason})" if outcome.reason else "") + (f"\n{outcome.folder}" if outcome.folder else ""))
    from harness.records.endings import OUTCOMES, exit_code

    if outcome.outcome == "not started" and outcome.reason.startswith("preflight: "):
        return EXIT_USER  # the job's files do not preflight: nothing was touched
    if outcome.outcome in ("not started", "skipped"):
        return EXIT_PRECONDITION
    return exit_code(outcome.outcome) if outcome.outcome in OUTCOMES else EXIT_RUN_FAILED


def cmd_schedule_last(args: argparse.Namespace) -> int:
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.schedule_state import ScheduleState

    schedule = read_schedule_file(args.file)
    outcomes = ScheduleState(schedule.state_dir).outcomes()
    if args.job is not None:
        outcomes = [o for o in outcomes if o["job"] == args.job]
        if not outcomes:
            schedule.job(args.job)  # a job not in the file (nor in its record) is a typo: say which jobs there are
    if not outcomes:
        print("no outcomes recorded yet")
        return 0
    for o in outcomes[-args.count:]:
        t = datetime.fromisoformat(o["time"]).astimezone(schedule.tz)
        sent = ", ".join(f"{d['event']} via {d['channel']}{'' if d['ok'] else ' FAILED'}" for d in o.get("notified", []))
        print(f"{t:%a %Y-%m-%d %H:%M}  {o['job']:<20} #{o['attempt']} {o['outcome']:<15} {o.get('verdict') or '':<10} "
              f"{o.get('reason', '')[:200]}{'  [notified: ' + sent + ']' if sent else ''}")
        if o.get("folder"):
            print(f"{'':<22}{o['folder']}")
    return 0


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``schedule`` command and its actions."""
    p = sub.add_parser("schedule", help="unattended QC: run a schedule file's jobs when they are due")
    ss = p.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    q = ss.add_parser("run", help="the long-running service (systemd / Task Scheduler)")
    q.add_argument("file", type=Path, help="schedule file (YAML)")
    q.set_defaults(func=cmd_schedule_run)
    q = ss.add_parser("list", help="what is due next, and each job's last outcome")
    q.add_argument("file", type=Path)
    q.add_argument("--count", "-n", type=at_least(1), default=3, help="next times per job (default 3)")
    q.set_defaults(func=cmd_schedule_list)
    q = ss.add_parser("run-now", help="run one job now (preconditions checked, outcome recorded; not notified, a person is there, except an unsafe ending)")
    q.add_argument("file", type=Path)
    q.add_argument("job")
    q.set_defaults(func=cmd_schedule_run_now)
    q = ss.add_parser("last", help="the last outcomes")
    q.add_argument("file", type=Path)
    q.add_argument("--job", help="only this job's outcomes")
    q.add_argument("--count", "-n", type=at_least(1), default=20, help="how many (default the last 20)")
    q.set_defaults(func=cmd_schedule_last)
