"""``microscope-qc facility ...``: the demo facility (``facility demo``): the schedules of a
facility's simulated microscopes over a month of virtual time into a fresh results database, for
the facility board (``microscope-qc serve``).

Contract: ``cmd_facility_demo`` takes the parsed arguments and returns 0 once the demo has run
(failed runs are data and are counted in its summary); a user mistake (an out folder that is not
empty, a database that already has runs without ``--append``, a bad facility file) is raised as
``UserError`` before anything runs. ``add_facility`` defines the command's arguments.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path

from harness.cli.cli_types import at_least, positive, utc_datetime


def _shipped_facility() -> Path:
    """The shipped demo facility file (configs/facility/facility.yaml of the package)."""
    return Path(str(resources.files("configs") / "facility" / "facility.yaml"))


def start_date(text: str) -> datetime:
    """``--start``: a date (midnight UTC) or an ISO 8601 date-time with its offset (``utc_datetime``)."""
    if len(text.strip()) != 10:
        return utc_datetime(text)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (2026-11-01) or an ISO 8601 date-time with offset") from None
    return utc_datetime(datetime.combine(day, datetime.min.time(), timezone.utc).isoformat())


def cmd_facility_demo(args: argparse.Namespace) -> int:
    # the scheduler, the results store (SQLAlchemy) and the analysis: imported only for this command (start-up time)
    from harness.facility.demo import demo_start, prepare, run_demo, write_summary

    start = args.start or demo_start(args.days)
    plan = prepare(args.facility or _shipped_facility(), start, args.days, args.out, args.db, append=args.append)
    summary = run_demo(plan, jobs=args.jobs)
    print()
    for line in summary.lines():
        print(line)
    print(f"Summary as data: {write_summary(summary)}")
    return 0


def add_facility(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``facility`` command and its actions."""
    p = sub.add_parser("facility", help="a facility of microscopes: the demo facility")
    fs = p.add_subparsers(dest="facility_command", required=True, metavar="ACTION")
    q = fs.add_parser("demo", help="run the demo facility's schedules over a month of virtual time into a fresh results database")
    q.add_argument("--facility", type=Path, metavar="FILE", help="facility file (default: the shipped demo facility, configs/facility/facility.yaml)")
    q.add_argument("--days", type=positive, default=30.0, help="days of virtual time (default 30)")
    q.add_argument("--start", type=start_date, metavar="DATE",
                   help="the first day (a date: midnight UTC, or an ISO date-time with offset; default: DAYS before today, so it ends today)")
    q.add_argument("--out", type=Path, default=Path("demo-facility"), metavar="FOLDER",
                   help="a new (or empty) folder for the runs, the station files and the default database (default ./demo-facility)")
    q.add_argument("--db", metavar="URL", help="results database URL (default: a new SQLite file FOLDER/facility.sqlite)")
    q.add_argument("--append", action="store_true", help="add the demo's runs to a database that already has runs")
    q.add_argument("--jobs", type=at_least(0), default=0, metavar="N", help="microscopes at a time (default 0: one per processor)")
    q.set_defaults(func=cmd_facility_demo)
