"""What a run checks before it starts and records after it ends, outside the protocol itself:
the station lock (one run per station across processes), the laser interlocks, the outcome file
a supervising scheduler reads, and the results store.

A failed precondition means the run never started: no run folder, exit code 5.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.common.atomic_files import replace_json
from harness.common.errors import UserError
from harness.common.yaml_source import load_yaml, validate
from harness.station.station_file import StationFile


class PreconditionFailed(Exception):
    """The run did not start: the station is busy or not ready; nothing was touched."""


def station_name(path: str | Path | None) -> str:
    """The ``name`` of a station file, without bringing the station up."""
    from harness.common.resources import default_station

    doc = load_yaml(path or default_station())
    spec: StationFile = validate(doc, StationFile, "station")  # type: ignore[assignment]
    return spec.name


@contextmanager
def held_station(path: str | Path | None, purpose: str) -> Iterator[Any]:
    """The station, brought up under its lock (any command that touches the hardware: loading a
    station puts its lasers into their safe state, which must not happen under a running run).
    Raises ``StationBusy`` at once if another process holds it."""
    from harness.station.station import Station
    from harness.station.station_lock import StationLock

    lock = StationLock(station_name(path), purpose=purpose)
    lock.acquire()
    with lock, Station.load(path) as station:
        yield station


def interlock_problems(station: Any) -> list[str]:
    """Lasers whose device reports an open interlock (devices that report none are not judged)."""
    problems = []
    core = station.core
    for key, line in station.lasers.items():
        try:
            if core.hasProperty(line.label, "Interlock"):
                state = core.getProperty(line.label, "Interlock")
                if str(state).lower() != "closed":
                    problems.append(f"{key} nm laser ({line.label}): interlock {state}")
        except RuntimeError as exc:
            problems.append(f"{key} nm laser ({line.label}): interlock cannot be read ({exc})")
    return problems


def write_outcome(path: Path | None, **fields: Any) -> None:
    """A small JSON file for a supervising process (the scheduler): status, folder, verdict, reason."""
    if path is None:
        return
    try:
        replace_json(path, fields)
    except OSError as exc:  # a full disk: the supervisor reads the exit status alone; say it
        import sys

        print(f"outcome file {path} not written: {exc}", file=sys.stderr)


def record(folder: Path, db_url: str | None) -> str:
    """Put the run into the results store; a store problem never fails the run (it is said)."""
    from harness.store.results_store import record_run

    try:
        return record_run(folder, db_url)
    except UserError as exc:
        return f"NOT recorded: {exc}"
    except Exception as exc:  # e.g. a database on a full disk ("database or disk is full")
        from harness.common.disk_full import is_disk_full

        if not (is_disk_full(exc) or "disk is full" in str(exc)):
            raise
        return f"NOT recorded: the database's disk is full; record it later with: microscope-qc import {folder}"
