"""What the board reads from a run folder (as the results store records it): the list of its files,
the facts of run.json the store does not hold (operator, seed, software), and the live progress of a
running run from its journal and plan.

Whose folder: a database row names its run's folder, and anyone who can write the shared database
can name any folder. So the board reads a folder for a run only when ``is_run_folder(folder,
run_id)``: the path is absolute and holds a run.json whose ``run_id`` is that run's. Otherwise
``list_files``, ``file_to_serve`` and ``run_facts`` give nothing, and ``ProgressReader.read`` reads
no journal (``foreign`` True).

Files: ``list_files(folder, run_id)`` lists the regular files directly in the folder, by name; a
symbolic link, a sub-folder or anything else is not listed. A URL names a run and one of these names;
the board serves the path of the listing's entry (``file_to_serve``), never a path built from the URL,
so no URL reaches outside the run folders the store knows.

Progress: ``ProgressReader.read(folder)`` reads the journal incrementally (only the bytes appended
since the last call, complete lines only, each parsed by ``journal.parse_record``): the fraction done
is the station time of the newest record over the plan's estimate (``run_start.estimate_s``, else
run.json ``protocol.plan.estimate_s``), below 1 until the run's ``run_end``; the current step is the
newest ``step`` record; the ETA is the wall time so far scaled by what is left (the pace so far, as
the terminal's progress bar). A run whose owner process is gone (``recovery.owners.examine``: same
host, the process ended without finishing) is said to be ``interrupted`` (``owner`` "gone"): the
store keeps its "running" row until ``microscope-qc recover`` records it, and the board says so
instead of showing a frozen bar as live. Nothing here raises for a missing or unreadable file: it is
absent.

Quiet: ``quiet_s`` is the wall time since the journal last grew (its modification time); while the
acquisition has not ended and the owner is not known to be gone, ``no_news`` is True once that is
``QUIET_S`` or more: a run that crashed on another computer (owner "other host", which this board
cannot examine) is then not shown as live for ever.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.records.journal import parse_record
from harness.records.run_folder import RunFolder
from harness.recovery.owners import examine

MAX_JSON_BYTES = 50_000_000
QUIET_S = 600.0  # no journal record for this long (wall clock) and not ended: "no news"


def is_run_folder(folder: str | Path, run_id: str) -> bool:
    """Whether ``folder`` is an absolute path holding a run.json whose run_id is ``run_id``."""
    if not str(folder) or not os.path.isabs(folder):
        return False
    return run_json(folder).get("run_id") == run_id


def list_files(folder: str | Path, run_id: str) -> dict[str, Path]:
    """Name -> path of the regular files directly in ``folder`` (no links, no sub-folders); empty if
    the folder cannot be read or is not the folder of run ``run_id``."""
    if not is_run_folder(folder, run_id):
        return {}
    out: dict[str, Path] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_symlink() or not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                        continue
                except OSError:
                    continue
                out[entry.name] = Path(entry.path)
    except OSError:
        return {}
    return dict(sorted(out.items()))


def file_to_serve(folder: str | Path, run_id: str, name: str) -> Path | None:
    """The listed file called ``name`` (exactly) of run ``run_id``'s folder, or None."""
    return list_files(folder, run_id).get(name)


def run_json(folder: str | Path) -> dict[str, Any]:
    """run.json as a dict; {} if it is missing, too large or not JSON."""
    try:
        path = RunFolder(Path(folder)).run_json
        if path.stat().st_size > MAX_JSON_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_facts(folder: str | Path, run_id: str) -> dict[str, Any]:
    """What the run page and the certificate show of run.json: operator, seed, software version,
    host, clock mode, protocol title, whether the station is simulated (each None, or False, when absent, all when the folder is not run
    ``run_id``'s)."""
    data = run_json(folder)
    if data.get("run_id") != run_id or not os.path.isabs(folder):
        data = {}

    def part(name: str) -> dict[str, Any]:
        value = data.get(name)
        return value if isinstance(value, dict) else {}

    software, station, protocol, clock = part("software"), part("station"), part("protocol"), part("clock")
    return {"operator": data.get("operator"), "seed": station.get("seed"), "software": software.get("version"),
            "tool": software.get("tool"), "clock": clock.get("mode"), "title": protocol.get("title"), "simulated": station.get("simulated") is True,
            "estimate_s": (protocol.get("plan") or {}).get("estimate_s") if isinstance(protocol.get("plan"), dict) else None}


def _utc(text: Any) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class _Tail:
    """What has been read of one journal so far."""

    offset: int = 0
    started: datetime | None = None
    estimate_s: float | None = None
    actions: int | None = None
    t_s: float = 0.0
    step: dict[str, Any] = field(default_factory=dict)
    ended: dict[str, Any] | None = None
    records: int = 0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _quiet_s(journal: Path) -> float | None:
    """Wall seconds since the journal was last written (its modification time), None without one."""
    try:
        return max(time.time() - journal.stat().st_mtime, 0.0)
    except OSError:
        return None


def _owner(folder: Path, ended: bool) -> dict[str, Any]:
    """``owner``: "alive", "gone", "other host" or "unknown" (None once the acquisition ended), and
    ``owner_detail`` for people."""
    if ended:
        return {"owner": None, "owner_detail": None}
    try:
        found = examine(folder)
    except OSError:
        found = None
    if found is None:
        return {"owner": None, "owner_detail": None}
    return {"owner": found.owner, "owner_detail": found.detail}


class ProgressReader:
    """Live progress of running runs; one per app (thread-safe; remembers how far it read each journal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tails: dict[str, _Tail] = {}

    def read(self, folder: str | Path, run_id: str, now: datetime | None = None) -> dict[str, Any]:
        """The progress of run ``run_id`` in ``folder``: ``fraction`` (0-1, or None with no plan
        estimate), ``step`` (text), ``step_index``, ``actions``, ``elapsed_s`` and ``eta_s`` (wall
        time, None when unknown), ``ended`` (the journal's run_end was written), ``records``,
        ``quiet_s`` (wall seconds since the journal last grew, None without one) and ``no_news``;
        ``foreign`` True (and nothing read) when the folder is not that run's."""
        if not is_run_folder(folder, run_id):
            return {**self._summary(_Tail(), now or datetime.now(timezone.utc)), "quiet_s": None, "no_news": False,
                    "foreign": True, "owner": None, "owner_detail": None}
        journal = RunFolder(Path(folder)).journal
        with self._lock:
            tail = self._tails.setdefault(str(journal), _Tail())
            self._advance(journal, tail)
            if tail.estimate_s is None:
                tail.estimate_s = _number(run_facts(folder, run_id).get("estimate_s"))
            summary = self._summary(tail, now or datetime.now(timezone.utc))
        owner = _owner(Path(folder), summary["ended"])
        quiet = _quiet_s(journal)
        no_news = quiet is not None and quiet >= QUIET_S and not summary["ended"] and owner["owner"] != "gone"
        return {**summary, **owner, "quiet_s": quiet, "no_news": no_news, "foreign": False}

    @staticmethod
    def _advance(path: Path, tail: _Tail) -> None:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < tail.offset:  # rewritten (repaired): read again from the start
                    tail.__init__()  # type: ignore[misc]
                f.seek(tail.offset)
                data = f.read(size - tail.offset)
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # complete lines only: a line being written is read next time
        tail.offset += end
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            record = parse_record(line)
            if record is None:
                continue
            tail.records += 1
            kind = record.get("type")
            t = _number(record.get("t_s"))
            if t is not None:
                tail.t_s = max(tail.t_s, t)
            if kind == "run_start":
                tail.started = _utc(record.get("utc"))
                tail.estimate_s = _number(record.get("estimate_s")) or tail.estimate_s
                actions = record.get("actions")
                tail.actions = actions if isinstance(actions, int) else None
            elif kind == "step":
                tail.step = record
            elif kind == "run_end":
                tail.ended = record

    @staticmethod
    def _summary(tail: _Tail, now: datetime) -> dict[str, Any]:
        if tail.ended is not None:
            fraction: float | None = 1.0
        elif tail.estimate_s:
            fraction = min(max(tail.t_s / tail.estimate_s, 0.0), 0.999)
        elif tail.actions and tail.step:
            fraction = min(int(tail.step.get("index", 0)) / tail.actions, 0.999)
        else:
            fraction = None
        elapsed = (now - tail.started).total_seconds() if tail.started else None
        eta = None
        if fraction is not None and elapsed is not None and 0.001 < fraction < 1:
            eta = max(elapsed * (1 - fraction) / fraction, 0.0)
        step = tail.step
        context = step.get("context") if isinstance(step.get("context"), dict) else {}
        text = str(step.get("kind", "")) + "".join(f" {k} {v}" for k, v in (context or {}).items())
        index = step.get("index")
        return {"fraction": fraction, "step": text.strip() or None, "step_index": index if isinstance(index, int) else None,
                "actions": tail.actions, "elapsed_s": elapsed, "eta_s": 0.0 if fraction == 1.0 else eta,
                "ended": tail.ended is not None, "status": (tail.ended or {}).get("status"), "records": tail.records}
