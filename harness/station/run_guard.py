"""What a run checks before it starts and records after it ends, outside the protocol itself:
the station lock (one run per station across processes), the laser interlocks, the outcome file
a supervising scheduler reads.

A failed precondition means the run never started: no run folder, exit code 5.

Contract:
- ``held_station(path, purpose, ...)``: the one way to take a station's lock and then bring the
  station up (every command that touches the hardware, the run, the schedule service's safe state).
  Raises ``StationBusy`` (before anything is loaded) if another process holds the lock after
  ``wait_s``, ``LockDirError`` if the lock folder cannot be used, ``UserError`` for a bad station
  file; the station is unloaded and the lock released when the block ends, whatever happens.
- ``station_name(path)``: the station file's ``name``, without loading it.
- ``interlock_problems``, ``write_outcome``: see each.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.common.atomic_files import replace_json
from harness.common.resources import default_station
from harness.common.yaml_source import load_yaml, validate
from harness.station.station_file import StationFile
from harness.station.station_lock import OwnerInfo, StationLock


class PreconditionFailed(Exception):
    """The run did not start: the station is busy or not ready; nothing was touched."""


def station_name(path: str | Path | None) -> str:
    """The ``name`` of a station file, without bringing the station up."""
    doc = load_yaml(path or default_station())
    spec: StationFile = validate(doc, StationFile, "station")  # type: ignore[assignment]
    return spec.name


@contextmanager
def held_station(path: str | Path | None, purpose: str, *, wait_s: float = 0.0, on_wait: Callable[[str, OwnerInfo], None] | None = None,
                 name: str | None = None, **load: Any) -> Iterator[Any]:
    """The station, brought up under its lock (any command that touches the hardware: loading a
    station puts its lasers into their safe state, which must not happen under a running run).

    Waits up to ``wait_s`` for another process's lock (``on_wait(station name, owner)`` once, when
    waiting starts), then raises ``StationBusy``. ``name``: the station's name if the caller has
    read it already; ``load``: passed to ``Station.load`` (``time_scale``, ``clock_start``)."""
    from harness.station.station import Station  # pymmcore-plus and the drivers: imported only when a station is brought up

    name = station_name(path) if name is None else name
    lock = StationLock(name, purpose=purpose)
    lock.acquire(wait_s=wait_s, on_wait=None if on_wait is None else lambda owner: on_wait(name, owner))
    with lock, Station.load(path, **load) as station:  # a stale lock taken over is logged (WARNING) by the lock itself
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
        print(f"outcome file {path} not written: {exc}", file=sys.stderr)
