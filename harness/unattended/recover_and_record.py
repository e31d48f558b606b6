"""Recover then record: finish the run folders that killed run processes left behind, record each in
the results store (the recovery's finishing does that), and say what happened, one report at a time.

Used before a run (``run``), by ``recover``, by the schedule service at start and after a run
process died, so that all of them recover, record and say it the same way.

Contract:
- ``recover_and_record(runs_dir=..., db_url=...)``: every interrupted run of ``runs_dir`` (owner
  gone); ``folders=[...]``: those folders (``force``: also a run whose owner is on another host or
  unknown). ``store`` False: recovered but not recorded. Returns the reports, in order.
- Each report is said through ``say`` (``said(report, ...)``: its line, with ``details`` what was done,
  and for a recovered run what the results store said). A folder that fails is a report with outcome
  ``failed``, never an exception; a ``runs_dir`` that cannot be scanned raises ``OSError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from harness.recovery.recover import RecoveryReport, recover_all, recover_run


def said(report: RecoveryReport, store: bool = True, details: bool = False) -> str:
    """The report as the terminal shows it: its line, then (``details``) what was done, then for a
    recovered run what the results store said (``store``)."""
    lines = [report.line()]
    if details:
        lines += [f"  {detail}" for detail in report.details]
    if report.outcome == "recovered" and store:
        lines.append(f"  results store: {report.stored or 'not recorded'}")
    return "\n".join(lines)


def recover_and_record(runs_dir: Path | None = None, folders: Sequence[Path] = (), *, db_url: str | None, store: bool = True,
                       force: bool = False, say: Callable[[str], None] | None = None, details: bool = False) -> list[RecoveryReport]:
    """Recover ``folders`` (else every interrupted run of ``runs_dir``), recording them in the results
    store ``db_url`` (``store``); each report said through ``say``."""
    if folders:
        reports = [recover_run(folder, force=force, store=store, db_url=db_url) for folder in folders]
    elif runs_dir is not None:
        reports = recover_all(runs_dir, store=store, db_url=db_url)
    else:
        reports = []
    if say is not None:
        for report in reports:
            say(said(report, store, details))
    return reports
