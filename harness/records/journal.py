"""The run journal: an append-only JSON-lines stream, the source of truth of a run. Every record
(reading, frame, setting, log line, error) is written as it happens, a whole line or nothing
(``disk_full.append_whole``); step boundaries and the end of the run are also synced to disk.

A record that cannot be written (a full disk) raises ``DiskFull`` and is kept in ``unwritten``, in
order: the next write (e.g. once the run's space reserve is released) writes it first. With
``tolerant`` set (while a run ends), a write never raises: what could not be written stays in
``unwritten`` for the caller to show."""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common.disk_full import DiskFull, append_whole, is_disk_full


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._lock = threading.Lock()
        self.seq = 0
        self.unwritten: list[str] = []  # records not on disk yet (disk full), oldest first
        self.tolerant = False

    def write(self, record_type: str, t: float | None = None, /, *, sync: bool = False, **fields: Any) -> None:
        """Append one record: its type, station time ``t`` (s since the run started) and fields."""
        record = {"seq": self.seq, "type": record_type, "utc": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
        if t is not None:
            record["t_s"] = round(t, 6)
        record.update(_clean(fields))
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            if self._fd is None:
                return
            self.unwritten.append(line)
            self.seq += 1
            try:
                self._drain(sync)
            except OSError:
                if not self.tolerant:
                    raise

    def _drain(self, sync: bool) -> None:
        assert self._fd is not None
        try:
            while self.unwritten:
                self._size = append_whole(self._fd, (self.unwritten[0] + "\n").encode("utf-8"), self._size)
                self.unwritten.pop(0)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.path) from exc
            raise

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    self._drain(True)
                except OSError:
                    if not self.tolerant:
                        raise

    def close(self) -> None:
        """Write what is pending, sync and close (never raises with ``tolerant``)."""
        with self._lock:
            if self._fd is None:
                return
            try:
                self._drain(True)
            except OSError:
                if not self.tolerant:
                    raise
            finally:
                if self.tolerant or not self.unwritten:
                    os.close(self._fd)
                    self._fd = None


def parse_record(line: str) -> dict[str, Any] | None:
    """One journal line as a record, or None. A line a full disk once cut short, with the next
    record appended to the fragment (journals written before records were appended whole), gives
    that next record: it is complete, only its prefix is not."""
    try:
        record = json.loads(line)
    except ValueError:
        start = line.rfind('{"seq":', 1)
        if start <= 0:
            return None
        try:
            record = json.loads(line[start:])
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


def read_journal(path: Path) -> list[dict[str, Any]]:
    """All complete records (a line cut short by a crash is left out)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        record = parse_record(line)
        if record is not None:
            out.append(record)
    return out
