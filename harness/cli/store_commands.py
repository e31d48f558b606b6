"""``microscope-qc`` commands of the results store: ``history``, ``trend``, ``import``.

Contract: each ``cmd_*`` takes the parsed arguments and returns the exit status; a user mistake
(a bad date, a folder that is not a run, a database that cannot be opened) is raised as ``UserError``.
``add_*`` define each command's arguments. ``history`` and ``trend`` end with a note when runs queued
on this computer wait for the database; ``import`` delivers them after the folders it was given
(``--pending``: only them).
"""

from __future__ import annotations

import argparse
from datetime import date, datetime
from pathlib import Path
from typing import Any

from harness.cli.cli_types import output_file
from harness.cli.shared import db_arg, table
from harness.common.errors import UserError

# Start-up stays fast: the results store (SQLAlchemy), the control charts and the trend report
# (matplotlib) are imported inside the command that needs them, never here.


def _date(text: str | None, option: str) -> Any:
    """YYYY-MM-DD (a whole UTC day) or an ISO 8601 time (naive: UTC)."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option} {text!r}: not a date (use YYYY-MM-DD, or YYYY-MM-DDTHH:MM in UTC)") from None


def _existing(db_url: str | None) -> str | None:
    """A reading command's database: an SQLite file named by ``--db`` that does not exist is a typo,
    refused, not created empty (which would say "no runs" of a database that is elsewhere). The
    default file and ``$MICROSCOPE_QC_DB`` are made on first use, as by a run."""
    import os

    import sqlalchemy as sa

    from harness.store.results_store import shown

    given = db_url
    if not given:
        return db_url
    try:
        url = sa.make_url(given)
    except Exception:  # noqa: BLE001 - the store words a bad URL itself
        return db_url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not os.path.isfile(str(url.database)):
        raise UserError(f"results database {shown(given)}: no such file (check the path; runs and imports create it)")
    return db_url


def cmd_history(args: argparse.Namespace) -> int:
    from harness.cli import store_filters
    from harness.store.results_store import ResultsStore, shown

    since, until = _date(args.since, "--since"), _date(args.until, "--until")
    store_filters.check_period(since, until, args.since, args.until)
    with ResultsStore(_existing(args.db)) as store:
        station, protocol = store_filters.station(store, args.station), store_filters.protocol(store, args.protocol)
        records = store.history(station=station, protocol=protocol, verdict=args.verdict, since=since, until=until)
        note = store.pending_note()
    if not records:
        print(f"no runs match (database {shown(store.url)})")
        _note_pending(note)
        return 0
    fmt = "%Y-%m-%d %H:%M"
    rows = [
        [r.started_utc.strftime(fmt) if r.started_utc else "-", r.station, r.protocol, r.protocol_version or "-", r.status,
         r.verdict, r.run_id[:8], r.folder]
        for r in records
    ]
    print(table(rows, ["STARTED (UTC)", "STATION", "PROTOCOL", "VERSION", "STATUS", "VERDICT", "RUN", "FOLDER"]))
    print(f"{len(records)} run{'s' if len(records) != 1 else ''} (database {shown(store.url)})")
    _note_pending(note)
    return 0


def _note_pending(note: str) -> None:
    if note:
        print(note)


def cmd_trend(args: argparse.Namespace) -> int:
    from harness.analysis.control_chart import flagged_indices
    from harness.cli import store_filters
    from harness.report.trend_report import build_charts, write_report
    from harness.store.results_store import ResultsStore

    if args.baseline < 2:
        raise UserError(f"--baseline {args.baseline}: control limits need a baseline of at least 2 runs")
    if args.run_length < 2:
        raise UserError(f"--run-length {args.run_length}: a run needs at least 2 points")
    with ResultsStore(_existing(args.db)) as store:
        station, protocol = store_filters.station(store, args.station), store_filters.protocol(store, args.protocol)
        charts = build_charts(store, args.metric, station=station, subject=args.subject, protocol=protocol,
                              kind=args.kind, baseline=args.baseline, run_length=args.run_length)
        path = write_report(charts, args.out, store.url, args.run_length)
        note = store.pending_note()
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
    _note_pending(note)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from harness.store.results_store import Busy, ResultsStore, Unreachable

    if not args.folders and not args.pending:
        raise UserError("import: name run folders, or --pending for the runs queued on this computer")
    failures = []
    with ResultsStore(args.db) as store:
        for folder in args.folders:
            try:
                print(f"{store.import_run(folder)}: {folder}")
            except (Unreachable, Busy):
                raise
            except UserError as exc:
                failures.append(str(exc))
        for folder, said in store.deliver_pending():
            print(f"{said}: {folder} (queued)")
    if failures:
        raise UserError("\n".join(failures))
    return 0


def add_history(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``history`` command's arguments."""
    p = sub.add_parser("history", help="list recorded runs from the results database")
    p.add_argument("--station", help="station name as recorded (run.json), or its station file")
    p.add_argument("--protocol", help="protocol id, e.g. power-stability-short, or its protocol file")
    p.add_argument("--verdict", help="pass, warn, fail or 'not judged'")
    p.add_argument("--since", help="runs started on or after this date (YYYY-MM-DD, UTC)")
    p.add_argument("--until", help="runs started on or before this date (YYYY-MM-DD, UTC; the whole day)")
    db_arg(p)
    p.set_defaults(func=cmd_history)


def add_trend(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``trend`` command's arguments."""
    p = sub.add_parser("trend", help="control chart of one metric over time; writes an HTML report")
    p.add_argument("metric", help="metric name, e.g. stability_pct")
    p.add_argument("--station", help="station name as recorded, or its station file (default: every station)")
    p.add_argument("--subject", help='e.g. "488 nm" (default: one chart per subject)')
    p.add_argument("--protocol", help="protocol id, or its protocol file (default: one chart per protocol)")
    p.add_argument("--kind", help="kind of result, e.g. stability or flat_field (default: every kind)")
    p.add_argument("--baseline", type=int, default=10, help="runs the control limits come from (default: the first 10)")
    p.add_argument("--run-length", type=int, default=8, help="points in a row on one side of the centre that flag a shift (default 8)")
    p.add_argument("--out", type=output_file, default=Path("trend.html"), help="the HTML report (default ./trend.html)")
    db_arg(p)
    p.set_defaults(func=cmd_trend)


def add_import(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``import`` command's arguments."""
    p = sub.add_parser("import", help="record run folders in the results database")
    p.add_argument("folders", nargs="*", type=Path, metavar="FOLDER")
    p.add_argument("--pending", action="store_true",
                   help="record the runs queued on this computer while the database was unreachable (also done after every import)")
    db_arg(p)
    p.set_defaults(func=cmd_import)
