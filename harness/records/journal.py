"""The run journal: an append-only JSON-lines stream, the source of truth of a run. Every record
(reading, frame, setting, log line, error) is written as it happens, a whole line or nothing
(``disk_full.append_whole``); step boundaries and the end of the run are also synced to disk.

A record that cannot be written (a full disk) raises ``DiskFull`` and is kept in ``unwritten``, in
order: the next write (e.g. once the run's space reserve is released) writes it first. With
``tolerant`` set (while a run ends), a write never raises: what could not be written stays in
``unwritten`` for the caller to show.

Reading: ``read_journal`` is the one reader of a journal file. It is tolerant: bytes that are not
UTF-8 are replaced, a line cut short by a crash is left out, a line a full disk once cut short with
the next record appended to it gives that next record (``parse_record``), and the keys journals
wrote before they took the CSV's names (``power_w``, ``setpoint_mw``) are read as ``power_W`` and
``setpoint_mW``. ``repair_journal`` drops a trailing partial line for good, ``reopen`` continues a
journal after a crash (numbering on). Field names of values with a unit are the CSV's
(``power_W``, ``setpoint_mW``)."""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common.atomic_files import replace_bytes
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


OLD_KEYS = {"power_w": "power_W", "setpoint_mw": "setpoint_mW"}
"""Keys journals wrote before they used the CSV's names -> the names read now."""


def _current_keys(record: dict[str, Any]) -> dict[str, Any]:
    if not any(old in record for old in OLD_KEYS):
        return record
    return {OLD_KEYS[k] if k in OLD_KEYS and OLD_KEYS[k] not in record else k: v for k, v in record.items()}


def read_journal(path: Path, missing_ok: bool = False) -> list[dict[str, Any]]:
    """All complete records, in order (see the module's doc). ``missing_ok``: no file (or one that
    cannot be read) gives no records instead of ``OSError``."""
    try:
        data = path.read_bytes()
    except OSError:
        if missing_ok:
            return []
        raise
    out = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        record = parse_record(line)  # also the whole record after a fragment a full disk left
        if record is not None:
            out.append(_current_keys(record))
    return out


def next_seq(records: list[dict[str, Any]]) -> int:
    """The sequence number the next record of a journal holding ``records`` gets."""
    return max((r["seq"] for r in records if isinstance(r.get("seq"), int) and not isinstance(r.get("seq"), bool)), default=-1) + 1


def repair_journal(path: Path) -> bytes:
    """Drop a trailing partial line, and trailing lines of nothing but NUL bytes (what a power loss
    can leave); the bytes dropped (empty if none). A whole line that is not JSON stays (readers skip
    it): it is not ours to judge."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    while keep > 0:
        start = data.rfind(b"\n", 0, keep - 1) + 1
        if data[start:keep].strip(b"\0 \t\r\n"):
            break
        keep = start
    if keep == len(data):
        return b""
    replace_bytes(path, data[:keep])
    return data[keep:]


def reopen(path: Path, repair: bool = True) -> Journal:
    """A run's journal, for appending after its writer ended (a crash, or finishing in another
    process): a partial last line dropped (``repair``), numbering on. A missing file is created."""
    if repair and path.is_file():
        repair_journal(path)
    records = read_journal(path, missing_ok=True)
    journal = Journal(path)
    journal.seq = next_seq(records)
    return journal
