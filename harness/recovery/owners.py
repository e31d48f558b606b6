"""Finding run folders that did not finish, and whether their owner process is alive.

A run folder names its owner process in run.json ``process`` (pid, create time, host). ``examine``
says what is known of one folder (``Candidate``: its owner ``gone``, ``alive``, ``other host`` or
``unknown``, and why), ``scan_runs`` does it for every folder of a runs directory, cheaply skipping
finished ones (final status and a current manifest); ``find_interrupted`` keeps those whose owner is
gone. Nothing here writes a file; owner liveness is ``harness.common.process_owner``'s. Nothing raises
for a bad folder except ``OSError`` from listing it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.common.process_owner import liveness
from harness.records.manifest import manifest_current, unfinished
from harness.records.run_folder import RunFolder
from harness.records.run_record import RunStatus, read_run

ORPHAN_GRACE_S = 60.0
"""A folder with a journal but no readable run.json names no owner: it is taken as abandoned only
when none of its files changed for this long (a live run writes run.json within a second)."""


@dataclass
class Candidate:
    """A run folder that did not finish, and what is known of its owner process."""

    folder: Path
    owner: str  # "gone" | "alive" | "other host" | "unknown"
    detail: str


def read_run_or_none(folder: Path) -> dict[str, Any] | None:
    """run.json as a dict (validated by ``RunRecord``), or None if it is missing or unreadable."""
    try:
        return read_run(folder).as_dict()
    except (OSError, ValueError):
        return None


def owner_state(run: dict[str, Any]) -> tuple[str, str]:
    """("gone" | "alive" | "other host" | "unknown", why) for the process that owns a run."""
    proc = run.get("process")
    pid = proc.get("pid") if isinstance(proc, dict) else None
    if not isinstance(proc, dict) or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "unknown", "run.json names no owner process (written by an older version)"
    expected = proc.get("create_time")
    return liveness(pid, float(expected) if isinstance(expected, (int, float)) else None, proc.get("hostname"))


def _newest_change(folder: Path) -> float:
    times = [folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir() if p.is_file()]
    return max(times)


def examine(folder: Path) -> Candidate | None:
    """What is known about a folder that did not finish; None for a finished (or not a run) folder."""
    folder = Path(folder)
    run = read_run_or_none(folder)
    if run is None:
        if not RunFolder(folder).journal.is_file():
            return None
        age = time.time() - _newest_change(folder)
        what = "no readable run.json" if RunFolder(folder).run_json.exists() else "no run.json"
        if age < ORPHAN_GRACE_S:
            return Candidate(folder, "unknown", f"{what}, and files changed {age:.0f} s ago: may still be starting")
        return Candidate(folder, "gone", f"{what}; nothing changed for {age:.0f} s")
    if run.get("status") != RunStatus.RUNNING:
        left = unfinished(folder, run)
        if not left:
            return None
        owner, detail = owner_state(run)
        what = "finishing was cut off" if left == "finishing" else "its manifest is missing or out of date"
        return Candidate(folder, owner, f"{what}; {detail}")
    owner, detail = owner_state(run)
    return Candidate(folder, owner, detail)


def scan_runs(runs_dir: str | Path) -> list[Candidate]:
    """Every run folder in ``runs_dir`` that did not finish, with its owner's state."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        run_file = RunFolder(folder).run_json
        try:  # cheap for the usual case: a finished run's run.json is not running nor finishing, and its manifest is current
            if run_file.is_file():
                text = run_file.read_text(encoding="utf-8", errors="replace")
                if '"status": "running"' not in text and '"status": "finishing"' not in text:
                    if manifest_current(folder):
                        continue
        except OSError:
            pass
        candidate = examine(folder)
        if candidate is not None:
            found.append(candidate)
    return found


def find_interrupted(runs_dir: str | Path) -> list[Path]:
    """Run folders whose run says "running" but whose owner process is gone (on this host)."""
    return [c.folder for c in scan_runs(runs_dir) if c.owner == "gone"]
