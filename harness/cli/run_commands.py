"""``microscope-qc`` commands of one run: ``run`` (a protocol on a station), ``analyze`` (a run
folder again, from its files), ``recover`` (run folders a killed run process left behind).

Contract: each ``cmd_*`` takes the parsed arguments and returns the exit status (``run``: the
ending's, ``endings.exit_code``; a failed precondition: 5, with the outcome file written for a
supervising service); a user mistake is raised as ``UserError``. ``run`` first recovers what killed
runs left in its runs folder, then takes the station's lock and brings the station up
(``run_guard.held_station``); Ctrl-C and SIGTERM are ignored from the end of the acquisition until
the outcome is written. ``add_*`` define each command's arguments.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from harness.cli import shared
from harness.cli.cli_types import at_least, excludes, non_empty, non_negative, output_file, output_folder, positive, utc_datetime
from harness.cli.shared import db_arg, station_arg
from harness.common import shipped
from harness.common.errors import EXIT_PRECONDITION, EXIT_RUN_FAILED, UserError
from harness.records.run_folder import RunFolder

# Start-up stays fast: the runner, the analysis, recovery and the station (numpy, pymmcore-plus,
# tifffile, matplotlib, SQLAlchemy) are imported inside the command that needs them, never here.


def cmd_run(args: argparse.Namespace) -> int:
    from harness.finishing.results import summary
    from harness.finishing.runner import FinishingRunner as Runner
    from harness.records.endings import UNSAFE, exit_code
    from harness.run.preflight import PreflightFailed, file_facts, preflight
    from harness.station.run_guard import PreconditionFailed, held_station, interlock_problems, write_outcome
    from harness.station.station_lock import StationBusy

    excludes(args, "no_store", "db")
    try:  # what the files alone tell, before the station is touched; again with the devices below
        preflight(args.protocol, file_facts(args.station), args.runs_dir).raise_if_failed()
    except UserError as exc:
        write_outcome(args.outcome, status="not started", reason=f"preflight: {exc}", user_error=True)
        raise
    except PreconditionFailed as exc:  # the data would not fit on the disk
        write_outcome(args.outcome, status="not started", reason=str(exc), precondition=True)
        print(f"not started: {exc}", file=sys.stderr)
        return EXIT_PRECONDITION
    _recover_interrupted(args.runs_dir, args.db, store=not args.no_store)
    try:
        with held_station(args.station, f"run {args.protocol.stem}", wait_s=args.wait_for_station, on_wait=lambda name, owner: print(
                f"station '{name}' is in use by {owner.describe()}; waiting up to {args.wait_for_station:g} s", file=sys.stderr),
                time_scale=args.time_scale, clock_start=args.clock_start, seed=args.seed) as station:
            if args.check_interlock and (problems := interlock_problems(station)):
                raise PreconditionFailed("interlock open: " + "; ".join(problems))
            try:
                runner = Runner(station, args.protocol, runs_dir=args.runs_dir, operator=args.operator, quiet=args.quiet, assume_yes=args.yes,
                                store=not args.no_store, db_url=args.db, job_tag=_job_tag(args.job_tag))
            except PreflightFailed as exc:
                write_outcome(args.outcome, status="not started", reason=f"preflight: {exc}", user_error=True)
                raise
            if not args.quiet:
                print(f"Protocol: {runner.protocol.title} ({args.protocol})", file=sys.stderr)
                print(f"Station:  {station.name}; {len(runner.plan.actions)} actions, about {runner.plan.estimate_s / 60:.1f} min of station time"
                      + (f" ({station.clock.describe()})" if station.sim else ""), file=sys.stderr)
            # Ctrl-C and SIGTERM stay ignored from the end of the acquisition until the outcome is
            # written (and, as the command's own process, until it exits): finishing (analysis, store
            # record, manifest) and the outcome file are never cut short
            handlers = _signal_handlers()
            outcome = runner.run(on_folder=lambda f: None if args.quiet else print(f"Run folder: {f}", file=sys.stderr), restore_signals=False)
    except (StationBusy, PreconditionFailed) as exc:
        write_outcome(args.outcome, status="not started", reason=str(exc), precondition=True)
        print(f"not started: {exc}", file=sys.stderr)
        return EXIT_PRECONDITION
    from harness.common.disk_full import show_unwritten

    show_unwritten(runner)
    if runner.left_for_recovery:  # a full disk kept a file from being finished: `recover` finishes and records it
        stored = f"not recorded yet: free space, then run microscope-qc recover --runs-dir {args.runs_dir}"
    else:
        stored = runner.stored  # recorded by the run's finishing (harness.finishing)
    word = outcome.outcome
    write_outcome(args.outcome, status=outcome.status, outcome=word, reason=outcome.reason, folder=str(outcome.folder),
                  verdict=(runner.results or {}).get("verdict"), analysis_error=runner.analysis_error, stored=stored,
                  safe_state=runner.safe_state)
    if runner.results is not None and not args.quiet:
        print(summary(runner.results), file=sys.stderr)
        if runner.results.get("report"):
            print(f"report: {outcome.folder / runner.results['report']}", file=sys.stderr)
    if runner.analysis_error:
        print(runner.analysis_error, file=sys.stderr)
    if not args.quiet or stored.startswith("queued"):
        print(f"results store: {stored}", file=sys.stderr)
    if word == UNSAFE:
        print("URGENT: the safe state was NOT confirmed: a laser may still be emitting. Check the lasers at the "
              "station and switch them off by hand; " + "; ".join(runner.safe_state.get("failures", [])), file=sys.stderr)
    print(f"{word}: {outcome.folder}")
    if outcome.reason:
        print(f"reason: {outcome.reason}", file=sys.stderr)
    if not shared.EXITS_AFTER_COMMAND:  # called in-process (tests, embedding): its handlers come back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return exit_code(word)


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _job_tag(text: str | None) -> dict[str, Any] | None:
    """``--job-tag`` (JSON, set by the schedule service): which job and due time a run is for."""
    if not text:
        return None
    try:
        tag = json.loads(text)
    except ValueError:
        tag = None
    if not isinstance(tag, dict):
        raise UserError(f"--job-tag {text!r}: not a JSON object")
    return tag


def cmd_analyze(args: argparse.Namespace) -> int:
    """Exit 0 when analysed, 6 when the analysis failed or refused its input (one message, never a
    traceback; results.json and the report say why), 2 for a folder that is not a finished run."""
    from harness.common.errors import EXIT_ANALYSIS_FAILED
    from harness.finishing.pipeline import reanalyse
    from harness.finishing.results import summary

    folder = Path(args.folder)
    data, crash = reanalyse(folder)  # UserError (exit 2) for a folder that is not a finished run
    if crash or data is None:  # a bug: one message; the reason is in results.json and the report
        print(f"analysis failed: {crash}; the run's data are unchanged (results.json says so)", file=sys.stderr)
        return EXIT_ANALYSIS_FAILED
    print(summary(data))
    print(f"wrote {RunFolder(folder).results_json}")
    if data.get("report"):
        print(f"report: {folder / data['report']}")
    if data.get("status") == "analysis failed":
        print(f"analysis failed: {data.get('analysis_error')}", file=sys.stderr)
        return EXIT_ANALYSIS_FAILED
    return 0


def _recover_interrupted(runs_dir: Path, db: str | None, store: bool = True) -> None:
    """Before a run: finish the run folders that a killed run process left behind (cheap when none)."""
    from harness.unattended.recover_and_record import recover_and_record

    try:
        recover_and_record(runs_dir, db_url=db, store=store, say=lambda text: print(text, file=sys.stderr))
    except Exception as exc:  # never keeps a run from starting
        print(f"recovery of interrupted runs in {runs_dir} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def cmd_recover(args: argparse.Namespace) -> int:
    from harness.recovery.recover import scan_runs
    from harness.unattended.recover_and_record import recover_and_record

    if args.force and not args.folders:
        raise UserError("--force only applies to named FOLDERs (recovering --runs-dir never takes over a run of another host)")
    if missing := [str(f) for f in args.folders if not f.is_dir()]:
        raise UserError(f"not a folder: {', '.join(missing)}")
    if not args.folders and not args.runs_dir.is_dir():
        raise UserError(f"--runs-dir {args.runs_dir}: no such folder")
    if args.folders:
        reports = recover_and_record(folders=args.folders, force=args.force, db_url=args.db, say=print, details=True)
    else:
        found = scan_runs(args.runs_dir)
        for candidate in found:
            if candidate.owner != "gone":
                print(f"left alone: {candidate.folder} ({candidate.detail})")
        reports = recover_and_record(args.runs_dir, db_url=args.db, say=print, details=True)
        if not found:
            print(f"no interrupted runs in {args.runs_dir}")
    return EXIT_RUN_FAILED if any(r.outcome == "failed" for r in reports) else 0


def add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``run`` command's arguments."""
    p = sub.add_parser("run", help="run a QC protocol on a station; prints the run folder")
    p.add_argument("protocol", type=shipped.protocol, help="protocol file, or a shipped protocol by name, e.g. power-stability-short")
    station_arg(p)
    p.add_argument("--runs-dir", type=output_folder, default=Path("runs"), help="where run folders go (default ./runs)")
    p.add_argument("--operator", type=non_empty, help="who runs it (default: the login name)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output (unattended use)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask the operator to confirm specimens")
    p.add_argument("--time-scale", type=positive, help="simulated station: run on real time this many times faster instead of "
                                                       "the station file's clock (1: real time, for demonstrations)")
    p.add_argument("--clock-start", type=utc_datetime, metavar="DATETIME",
                   help="simulated station: the date-time its clock starts at (ISO 8601 with offset; set by the schedule service on virtual time)")
    p.add_argument("--seed", type=at_least(0), metavar="N",
                   help="simulated station: seed this run's noise and sample with N instead of the station file's simulation.seed "
                        "(kept in run.json; set by the schedule service, one per run)")
    p.add_argument("--wait-for-station", type=non_negative, default=0.0, metavar="SECONDS",
                   help="if another run holds the station, wait this long for it (default: refuse at once)")
    p.add_argument("--check-interlock", action="store_true", help="refuse to start if a laser reports an open interlock")
    p.add_argument("--outcome", type=output_file, metavar="FILE", help="write the outcome as JSON (for a supervising scheduler)")
    p.add_argument("--db", metavar="URL", help="results database URL (default: $MICROSCOPE_QC_DB, else results.sqlite in the user data folder)")
    p.add_argument("--no-store", action="store_true", help="do not record the run in the results store")
    p.add_argument("--job-tag", metavar="JSON", help="set by the schedule service: the job and due time this run is for (kept in run.json)")
    p.set_defaults(func=cmd_run)


def add_analyze(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``analyze`` command's arguments."""
    p = sub.add_parser("analyze", help="(re)compute metrics and verdicts of a run folder from its files alone")
    p.add_argument("folder", type=Path)
    p.set_defaults(func=cmd_analyze)


def add_recover(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``recover`` command's arguments."""
    p = sub.add_parser("recover", help="finish run folders left behind by a killed run process (kill -9, power loss)")
    p.add_argument("folders", nargs="*", type=Path, metavar="FOLDER", help="run folders (default: every interrupted run in --runs-dir)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders are (default ./runs)")
    p.add_argument("--force", action="store_true", help="also a named FOLDER whose run process is on another host or unknown")
    db_arg(p)
    p.set_defaults(func=cmd_recover)
