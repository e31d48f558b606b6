"""The ``microscope-qc`` command: one tool, with subcommands to list and check a station.

Every user mistake ends in one message and exit status 2, a device failure in one message and exit
status 3; the station is always put into its safe state and unloaded before the process exits."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devices.errors import DeviceError, SafetyLimitError
from harness import __version__
from harness.cli.cli_types import at_least, excludes, finite, needs, non_empty, non_negative, output_file, output_folder, positive, utc_datetime
from harness.common import shipped
from harness.common.errors import EXIT_DEVICE, EXIT_INTERRUPTED, EXIT_PRECONDITION, EXIT_RUN_FAILED, EXIT_USER, StationError, UserError

# Start-up stays fast (``--help``, ``validate``): heavy modules (numpy, analysis, runner, station and
# pymmcore-plus, the results store and SQLAlchemy, matplotlib, scipy, tifffile) are imported inside
# the command that needs them, never here.


def _station_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", "-s", type=shipped.station, default=None,
                   help="station file, or a shipped one by name: simulated, demo-micromanager (default: simulated)")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


# --- commands ------------------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    from harness.station.run_guard import held_station

    with held_station(args.station, "devices") as station:
        records = station.device_records()
        if args.json:
            print(json.dumps([{"label": r.label, "role": r.role, **r.identity.as_dict(), "properties": r.properties} for r in records], indent=2))
            return 0
        print(f"Station: {station.name}  ({station.path})")
        if station.sim is not None:
            print(f"Simulated: seed {station.sim.world.seed}, {station.clock.describe()}")
        rows = [
            [r.role, r.label, r.identity.kind, r.identity.vendor, r.identity.model, r.identity.serial or "-", r.identity.firmware or "-",
             "; ".join(f"{k} {v}" for k, v in r.properties.items())]
            for r in records
        ]
        print(_table(rows, ["ROLE", "LABEL", "KIND", "VENDOR", "MODEL", "SERIAL", "FIRMWARE", "STATE"]))
    return 0


def _file_kind(doc: Any) -> str:
    from harness.common.file_kinds import guess_kind

    return guess_kind(doc)


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.common.yaml_source import load_yaml, validate
    from harness.protocol.plan import expand, lines_named
    from harness.protocol.protocol_file import ProtocolFile, check_acceptance
    from harness.run.preflight import station_file_problems
    from harness.station.station_file import StationFile

    failures, against_station = [], []
    for path in args.files:
        try:
            doc = load_yaml(path)
            kind = _file_kind(doc)
            if kind == "protocol":
                protocol = validate(doc, ProtocolFile, "protocol")
                check_acceptance(protocol, doc)  # type: ignore[arg-type]
                if args.station is not None:
                    against_station.append(path)  # preflight below, with the station loaded once
                    continue
                # unroll the loops too: a mistake inside a loop shows only with the values; with no
                # station at hand, every line the protocol names is taken to exist
                plan = expand(protocol, doc, lines_named(doc.data))
                print(f"{path}: valid protocol ({len(plan.actions)} actions, about {plan.estimate_s / 60:.1f} min, needs {', '.join(sorted(plan.roles))})")
            elif kind == "schedule":
                from harness.run.preflight import validate_schedule
                from harness.unattended.schedule_file import read_schedule_file

                failures += validate_schedule(read_schedule_file(path), print)
            else:
                spec = validate(doc, StationFile, "station")
                problems = station_file_problems(spec, doc)  # type: ignore[arg-type]
                if problems:
                    raise UserError("\n".join(problems))
                print(f"{path}: valid station file (roles fit their devices; C++ devices' kinds are checked when the station loads)")
        except UserError as exc:
            failures.append(str(exc))
    if against_station:
        from harness.run.preflight import validate_protocols

        failures += validate_protocols(against_station, args.station, args.runs_dir, print)
    if failures:
        raise UserError("\n".join(failures))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Exit 0 when analysed, 6 when the analysis failed or refused its input (one message, never a
    traceback; results.json and the report say why), 2 for a folder that is not a finished run."""
    from harness.analysis.analyse import analyse_run, summary, write_failed_results
    from harness.common.errors import EXIT_ANALYSIS_FAILED
    from harness.run.finishing import write_manifest

    folder = Path(args.folder)
    if '"status": "finishing"' in _text_or_empty(folder / "run.json"):
        raise UserError(f"{folder}: the run is finishing, or its process was killed while finishing; for a killed one: microscope-qc recover {folder}")
    try:
        data = analyse_run(folder)
    except UserError:
        raise
    except Exception as exc:  # a bug: one message; the reason goes into results.json and the report
        reason = f"{type(exc).__name__}: {exc}"
        logging.getLogger(__name__).debug("analysis of %s failed", folder, exc_info=True)
        if write_failed_results(folder, reason) is not None:
            write_manifest(folder)
        print(f"analysis failed: {reason}; the run's data are unchanged (results.json says so)", file=sys.stderr)
        return EXIT_ANALYSIS_FAILED
    write_manifest(folder)
    print(summary(data))
    print(f"wrote {folder / 'results.json'}")
    if data.get("report"):
        print(f"report: {folder / data['report']}")
    if data.get("status") == "analysis failed":
        print(f"analysis failed: {data.get('analysis_error')}", file=sys.stderr)
        return EXIT_ANALYSIS_FAILED
    return 0


def _text_or_empty(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.protocol.protocol_file import ProtocolFile
    from harness.station.station_file import StationFile
    from harness.unattended.schedule_file import ScheduleFile

    models = {"protocol": ProtocolFile, "station": StationFile, "schedule": ScheduleFile}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path = args.out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.analysis.analyse import summary
    from harness.records.endings import UNSAFE, exit_code
    from harness.run.preflight import PreflightFailed, file_facts, preflight
    from harness.run.runner import Runner
    from harness.station.run_guard import PreconditionFailed, interlock_problems, station_name, write_outcome
    from harness.station.station import Station
    from harness.station.station_lock import StationBusy, StationLock

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
    name = station_name(args.station)
    lock = StationLock(name, purpose=f"run {args.protocol.stem}")
    try:
        lock.acquire(wait_s=args.wait_for_station, on_wait=lambda owner: print(
            f"station '{name}' is in use by {owner.describe()}; waiting up to {args.wait_for_station:g} s", file=sys.stderr))
        # a stale lock taken over is logged (WARNING) by the lock itself
        with lock, Station.load(args.station, time_scale=args.time_scale, clock_start=args.clock_start) as station:
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
        stored = runner.stored  # recorded by the run's finishing (finishing.py)
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
    if not args.quiet:
        print(f"results store: {stored}", file=sys.stderr)
    if word == UNSAFE:
        print("URGENT: the safe state was NOT confirmed: a laser may still be emitting. Check the lasers at the "
              "station and switch them off by hand; " + "; ".join(runner.safe_state.get("failures", [])), file=sys.stderr)
    print(f"{word}: {outcome.folder}")
    if outcome.reason:
        print(f"reason: {outcome.reason}", file=sys.stderr)
    if not _EXITS_AFTER_COMMAND:  # called in-process (tests, embedding): its handlers come back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return exit_code(word)


_EXITS_AFTER_COMMAND = False  # set by main(): the process ends when the command returns


def _signal_handlers() -> dict[int, Any]:
    import threading

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


def _line(station: Any, name: str | None):
    if name is None:
        return None
    key = name.removesuffix("nm").strip()
    if key not in station.lasers:
        raise UserError(f"no laser line {name!r} on this station (lines: {', '.join(station.lasers) or 'none'})")
    return station.lasers[key]


METER_POWER_MW, METER_SETTLE_S, SNAP_POWER_MW = 1.0, 1.0, 10.0


def cmd_meter(args: argparse.Namespace) -> int:
    from harness.station.run_guard import held_station

    needs(args, "line", "power_mw", "settle_s")
    power_mw = METER_POWER_MW if args.power_mw is None else args.power_mw
    with held_station(args.station, "meter") as station:
        meter = station.power_meter
        if meter is None:
            raise UserError(f"{station.path}: the station has no power meter role")
        line = _line(station, args.line)
        if args.zero:
            station.safe_state()
            meter.zero()
            print("zeroed (all lines off)")
        if args.averaging is not None:
            meter.set_averaging(args.averaging)
        wavelength = args.wavelength_nm or (line.wavelength_nm if line else None)
        if wavelength:
            meter.set_wavelength_nm(wavelength)
        try:
            if line is not None:
                line.set_setpoint_mw(power_mw)
                line.set_emission(True)
                station.clock.sleep(METER_SETTLE_S if args.settle_s is None else args.settle_s)
            watts = meter.read_w()
        finally:
            if line is not None:
                line.set_emission(False)
        what = f"line {line.name} nm at {power_mw:g} mW" if line else "as it is"
        print(f"{meter.label}: {watts * 1e3:.6g} mW  (wavelength setting {meter.wavelength_nm():g} nm, {what}, at {meter.location})")
    return 0


def cmd_snap(args: argparse.Namespace) -> int:
    import numpy as np

    from harness.station.run_guard import held_station

    needs(args, "line", "power_mw")
    power_mw = SNAP_POWER_MW if args.power_mw is None else args.power_mw
    if args.out is not None:
        from harness.run.snapshot import ome_tiff_path

        args.out = ome_tiff_path(args.out)  # checked before anything is touched
    with held_station(args.station, "snap") as station:
        camera = station.camera
        if camera is None:
            raise UserError(f"{station.path}: the station has no camera role")
        if args.sample:
            if station.sim is None:
                raise UserError("--sample only applies to a simulated station")
            station.sim.world.mount_sample(args.sample)
        line = _line(station, args.line)
        if args.exposure_ms is not None:
            camera.set_exposure_ms(args.exposure_ms)
        try:
            if line is not None:
                line.set_setpoint_mw(power_mw)
                line.set_emission(True)
            image = camera.snap()
        finally:
            if line is not None:
                line.set_emission(False)
        bits = int(station.core.getProperty(camera.label, "BitDepth")) if station.core.hasProperty(camera.label, "BitDepth") else camera.bit_depth()
        top = 2**bits - 1
        print(
            f"{camera.label}: {image.shape[1]}x{image.shape[0]} {image.dtype}, exposure {camera.exposure_ms():g} ms, "
            f"mean {image.mean():.1f}, min {image.min()}, max {image.max()}, saturated {np.mean(image >= top) * 100:.3f} %"
        )
        if args.out is not None:
            from harness.run.snapshot import write_snapshot

            lit = {line.name: power_mw} if line is not None else {}
            print(f"saved {write_snapshot(station, image, args.out, lit, camera.exposure_ms())}")
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    from harness.station.run_guard import held_station

    with held_station(args.station, "move") as station:
        if station.xy_stage is None:
            raise UserError(f"{station.path}: the station has no XY stage role")
        if args.z is not None and station.z_drive is None:
            raise UserError(f"{station.path}: the station has no Z drive role (--z)")
        station.xy_stage.move_to(args.x, args.y)
        x, y = station.xy_stage.position_um()
        print(f"{station.xy_stage.label}: at ({x:.3f}, {y:.3f}) um")
        if args.z is not None:
            station.z_drive.move_to(args.z)
            print(f"{station.z_drive.label}: at {station.z_drive.position_um():.3f} um")
        if station.sim is not None and station.xy_stage.label in station.sim.world.xy_stages:
            true = station.sim.world.xy_stages[station.xy_stage.label].true()
            print(f"  (simulated ground truth: carriage at ({true['x']:.3f}, {true['y']:.3f}) um)")
    return 0


# --- results store: history, trends, import ------------------------------------------------------
def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help="results database URL (default: $MICROSCOPE_QC_DB, else results.sqlite in the user data folder)")


def _date(text: str | None, option: str) -> Any:
    """YYYY-MM-DD (a whole UTC day) or an ISO 8601 time (naive: UTC)."""
    from datetime import date, datetime

    if text is None:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option} {text!r}: not a date (use YYYY-MM-DD, or YYYY-MM-DDTHH:MM in UTC)") from None


def cmd_history(args: argparse.Namespace) -> int:
    from harness.store import store_filters
    from harness.store.results_store import ResultsStore, shown

    since, until = _date(args.since, "--since"), _date(args.until, "--until")
    store_filters.check_period(since, until, args.since, args.until)
    with ResultsStore(args.db) as store:
        station, protocol = store_filters.station(store, args.station), store_filters.protocol(store, args.protocol)
        records = store.history(station=station, protocol=protocol, verdict=args.verdict, since=since, until=until)
    if not records:
        print(f"no runs match (database {shown(store.url)})")
        return 0
    fmt = "%Y-%m-%d %H:%M"
    rows = [
        [r.started_utc.strftime(fmt) if r.started_utc else "-", r.station, r.protocol, r.protocol_version or "-", r.status,
         r.verdict, r.run_id[:8], r.folder]
        for r in records
    ]
    print(_table(rows, ["STARTED (UTC)", "STATION", "PROTOCOL", "VERSION", "STATUS", "VERDICT", "RUN", "FOLDER"]))
    print(f"{len(records)} run{'s' if len(records) != 1 else ''} (database {shown(store.url)})")
    return 0


def cmd_trend(args: argparse.Namespace) -> int:
    from harness.analysis.control_chart import flagged_indices
    from harness.report.trend_report import build_charts, write_report
    from harness.store import store_filters
    from harness.store.results_store import ResultsStore

    if args.baseline < 2:
        raise UserError(f"--baseline {args.baseline}: control limits need a baseline of at least 2 runs")
    if args.run_length < 2:
        raise UserError(f"--run-length {args.run_length}: a run needs at least 2 points")
    with ResultsStore(args.db) as store:
        station, protocol = store_filters.station(store, args.station), store_filters.protocol(store, args.protocol)
        charts = build_charts(store, args.metric, station=station, subject=args.subject, protocol=protocol,
                              kind=args.kind, baseline=args.baseline, run_length=args.run_length)
        path = write_report(charts, args.out, store.url, args.run_length)
    for c in charts:
        lim, unit = c.limits, f" {c.key.unit}" if c.key.unit else ""
        limits = lim.describe(c.key.unit)
        flagged = flagged_indices(c.flags)
        print(f"{c.title}: {len(c.points)} run{'s' if len(c.points) != 1 else ''}, centre {lim.centre:.5g}{unit}, {limits}; "
              + (f"{len(flagged)} flagged" if flagged else "none flagged"))
        for i in flagged:
            p = c.points[i]
            why = "; ".join(f.detail for f in c.flags_at(i))
            print(f"  FLAG {p.ended_utc:%Y-%m-%d %H:%M}  run {p.run_id[:8]}  {p.value:.5g}{unit}  {why}")
    print(f"wrote {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from harness.store.results_store import ResultsStore

    failures = []
    with ResultsStore(args.db) as store:
        for folder in args.folders:
            try:
                print(f"{store.import_run(folder)}: {folder}")
            except UserError as exc:
                failures.append(str(exc))
    if failures:
        raise UserError("\n".join(failures))
    return 0


# --- crash recovery --------------------------------------------------------------------------------
def _recover_interrupted(runs_dir: Path, db: str | None, store: bool = True) -> None:
    """Before a run: finish the run folders that a killed run process left behind (cheap when none)."""
    from harness.recovery.recover import recover_all

    try:
        reports = recover_all(runs_dir, store=store, db_url=db)
    except Exception as exc:  # never keeps a run from starting
        print(f"recovery of interrupted runs in {runs_dir} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    for report in reports:
        print(report.line(), file=sys.stderr)
        if report.outcome == "recovered" and store:
            print(f"  results store: {report.stored}", file=sys.stderr)


def cmd_recover(args: argparse.Namespace) -> int:
    from harness.recovery.recover import recover_all, recover_run, scan_runs

    if args.force and not args.folders:
        raise UserError("--force only applies to named FOLDERs (recovering --runs-dir never takes over a run of another host)")
    if missing := [str(f) for f in args.folders if not f.is_dir()]:
        raise UserError(f"not a folder: {', '.join(missing)}")
    if not args.folders and not args.runs_dir.is_dir():
        raise UserError(f"--runs-dir {args.runs_dir}: no such folder")
    if args.folders:
        reports = [recover_run(folder, force=args.force, store=True, db_url=args.db) for folder in args.folders]
    else:
        found = scan_runs(args.runs_dir)
        for candidate in found:
            if candidate.owner != "gone":
                print(f"left alone: {candidate.folder} ({candidate.detail})")
        reports = recover_all(args.runs_dir, store=True, db_url=args.db)
        if not found:
            print(f"no interrupted runs in {args.runs_dir}")

    for report in reports:
        print(report.line())
        for detail in report.details:
            print(f"  {detail}")
        if report.outcome == "recovered":
            print(f"  results store: {report.stored}")
    return EXIT_RUN_FAILED if any(r.outcome == "failed" for r in reports) else 0


# --- entry point ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microscope-qc", description="Quality control of light microscopes (QUAREP-LiMi) through Micro-Manager.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the devices do")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("devices", help="list every device of a station with its identity and state")
    _station_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("run", help="run a QC protocol on a station; prints the run folder")
    p.add_argument("protocol", type=shipped.protocol, help="protocol file, or a shipped protocol by name, e.g. power-stability-short")
    _station_arg(p)
    p.add_argument("--runs-dir", type=output_folder, default=Path("runs"), help="where run folders go (default ./runs)")
    p.add_argument("--operator", type=non_empty, help="who runs it (default: the login name)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output (unattended use)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask the operator to confirm specimens")
    p.add_argument("--time-scale", type=positive, help="simulated station: run on real time this many times faster instead of "
                                                       "the station file's clock (1: real time, for demonstrations)")
    p.add_argument("--clock-start", type=utc_datetime, metavar="DATETIME",
                   help="simulated station: the date-time its clock starts at (ISO 8601 with offset; set by the schedule service on virtual time)")
    p.add_argument("--wait-for-station", type=non_negative, default=0.0, metavar="SECONDS",
                   help="if another run holds the station, wait this long for it (default: refuse at once)")
    p.add_argument("--check-interlock", action="store_true", help="refuse to start if a laser reports an open interlock")
    p.add_argument("--outcome", type=output_file, metavar="FILE", help="write the outcome as JSON (for a supervising scheduler)")
    p.add_argument("--db", metavar="URL", help="results database URL (default: $MICROSCOPE_QC_DB, else results.sqlite in the user data folder)")
    p.add_argument("--no-store", action="store_true", help="do not record the run in the results store")
    p.add_argument("--job-tag", metavar="JSON", help="set by the schedule service: the job and due time this run is for (kept in run.json)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("analyze", help="(re)compute metrics and verdicts of a run folder from its files alone")
    p.add_argument("folder", type=Path)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("validate", help="check protocol, station and schedule files; with --station, preflight protocols on that station")
    p.add_argument("files", nargs="+", type=shipped.any_file, metavar="FILE", help="protocol, station or schedule files (or shipped ones by name)")
    p.add_argument("--station", "-s", type=shipped.station, default=None,
                   help="check each protocol against this station (loaded if its devices can be reached: roles, limits, camera, properties, disk)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs would be written, for the disk-space check (default ./runs)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="export JSON Schemas of protocol, station and schedule files (for editors)")
    p.add_argument("--out", type=output_folder, default=Path("schemas"), help="folder for the schema files (default ./schemas)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("meter", help="read the power meter once (optionally with one laser line on)")
    _station_arg(p)
    p.add_argument("--line", help="laser line to switch on for the reading, e.g. 488")
    p.add_argument("--power-mw", type=positive, help=f"set point for --line (default {METER_POWER_MW:g} mW)")
    p.add_argument("--wavelength-nm", type=positive, help="meter wavelength setting (default: the line's)")
    p.add_argument("--averaging", type=at_least(1), help="samples averaged per reading")
    p.add_argument("--settle-s", type=non_negative, help=f"wait after emission on, with --line (station time; default {METER_SETTLE_S:g} s)")
    p.add_argument("--zero", action="store_true", help="zero the meter first, all lines off")
    p.set_defaults(func=cmd_meter)

    p = sub.add_parser("snap", help="snap one camera frame and show its statistics")
    _station_arg(p)
    p.add_argument("--exposure-ms", type=positive, help="exposure time (default: the camera's current one)")
    p.add_argument("--line", help="laser line on during the exposure, e.g. 488")
    p.add_argument("--power-mw", type=positive, help=f"set point for --line (default {SNAP_POWER_MW:g} mW)")
    p.add_argument("--sample", choices=["bead_field", "uniform_slide"], help="simulated station: the sample to mount")
    p.add_argument("--out", type=output_file, metavar="FILE.ome.tif",
                   help="save the frame as OME-TIFF with the station's metadata (.ome.tif is added to the name if missing)")
    p.set_defaults(func=cmd_snap)

    p = sub.add_parser("move", help="move the XY stage (and Z drive) and report the position")
    _station_arg(p)
    p.add_argument("x", type=finite, help="um")
    p.add_argument("y", type=finite, help="um")
    p.add_argument("--z", type=finite, help="um")
    p.set_defaults(func=cmd_move)

    p = sub.add_parser("history", help="list recorded runs from the results database")
    p.add_argument("--station", help="station name as recorded (run.json), or its station file")
    p.add_argument("--protocol", help="protocol id, e.g. power-stability-short, or its protocol file")
    p.add_argument("--verdict", help="pass, warn, fail or 'not judged'")
    p.add_argument("--since", help="runs started on or after this date (YYYY-MM-DD, UTC)")
    p.add_argument("--until", help="runs started on or before this date (YYYY-MM-DD, UTC; the whole day)")
    _db_arg(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("trend", help="control chart of one metric over time; writes an HTML report")
    p.add_argument("metric", help="metric name, e.g. stability_pct")
    p.add_argument("--station", help="station name as recorded, or its station file (default: every station)")
    p.add_argument("--subject", help='e.g. "488 nm" (default: one chart per subject)')
    p.add_argument("--protocol", help="protocol id, or its protocol file (default: one chart per protocol)")
    p.add_argument("--kind", help="kind of result, e.g. stability or flat_field (default: every kind)")
    p.add_argument("--baseline", type=int, default=10, help="runs the control limits come from (default: the first 10)")
    p.add_argument("--run-length", type=int, default=8, help="points in a row on one side of the centre that flag a shift (default 8)")
    p.add_argument("--out", type=output_file, default=Path("trend.html"), help="the HTML report (default ./trend.html)")
    _db_arg(p)
    p.set_defaults(func=cmd_trend)

    p = sub.add_parser("import", help="record run folders in the results database")
    p.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    _db_arg(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("recover", help="finish run folders left behind by a killed run process (kill -9, power loss)")
    p.add_argument("folders", nargs="*", type=Path, metavar="FOLDER", help="run folders (default: every interrupted run in --runs-dir)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders are (default ./runs)")
    p.add_argument("--force", action="store_true", help="also a named FOLDER whose run process is on another host or unknown")
    _db_arg(p)
    p.set_defaults(func=cmd_recover)

    from harness.cli.schedule_cli import add_parser as add_schedule_parser

    add_schedule_parser(sub)
    return parser


_OWN_LOGGERS = ("harness", "devices", "simulators")


def _configure_logging(verbose: bool) -> None:
    """Warnings and errors on stderr; with ``-v`` also what the harness and the drivers do (every
    SCPI exchange, every device loaded), but not the chatter of third-party libraries. The levels sit
    on the handler, not on the root logger: importing pymmcore-plus sets the root logger to DEBUG."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "microscope_qc", False)]:
        root.removeHandler(old)  # run() called again in one process
    handler = logging.StreamHandler()
    handler.microscope_qc = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda r: r.levelno >= logging.WARNING or (verbose and r.name.split(".")[0] in _OWN_LOGGERS))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for chatty in ("pyvisa", "pymmcore-plus"):  # DEBUG on every read and property: not even built
        logging.getLogger(chatty).setLevel(logging.WARNING)


def run(argv: Sequence[str] | None, out: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except StationError as exc:  # a device that cannot be reached: not the user's mistake, may be retried
        out(f"device error: {exc}")
        return EXIT_DEVICE
    except UserError as exc:
        out(f"error: {exc}")
        return EXIT_USER
    except SafetyLimitError as exc:  # a value the user asked for, refused before anything was sent
        out(f"error: {exc}")
        return EXIT_USER
    except DeviceError as exc:
        out(f"device error: {exc}")
        return EXIT_DEVICE
    except BrokenPipeError:  # the reader went away (`... | head`): nothing more to say to it
        _stdout_to_devnull()
        return 0
    except KeyboardInterrupt:
        out("interrupted: devices were put into their safe state")
        return EXIT_INTERRUPTED
    except OSError as exc:
        from harness.common.disk_full import full_path, is_disk_full, message

        if not is_disk_full(exc):
            raise
        out(message(full_path(exc)))  # one message, not a traceback; a run's own ending says where its data are
        return EXIT_RUN_FAILED
    except Exception as exc:
        from harness.station.station_lock import StationBusy  # imported here: only the commands that take the lock need it

        if isinstance(exc, StationBusy):
            out(f"not started: {exc}")
            return EXIT_PRECONDITION
        raise


def _stdout_to_devnull() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main() -> None:
    global _EXITS_AFTER_COMMAND
    _EXITS_AFTER_COMMAND = True
    code = run(None)
    try:
        sys.stdout.flush()  # what is still buffered goes now, where a reader that went away can be told apart
    except BrokenPipeError:
        _stdout_to_devnull()
    sys.exit(code)
