"""Power readings as CSV: one row per planned sample, written and flushed as it is taken; the header
names every unit, and each row says what was set (line, set point, wavelength setting, averaging,
measuring location). A sample that failed is a row with status ``missing``: rows never shift.

Each row is appended whole or not at all (``disk_full.append_whole``): a row cut short by a full
disk is cut off again and ``DiskFull`` raised; the row is kept and written first by the next
``write`` or by ``close`` (once space was freed), or dropped by ``close`` if there is still no room
(``rows`` then counts only the rows on disk).

``SeriesWriter`` is the ``csv`` series writer of ``harness.records.writers`` (its ``SeriesWriter`` contract)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from harness.common.disk_full import DiskFull, append_whole, is_disk_full

COLUMNS = [
    "sample", "deadline_s", "time_s", "lateness_s", "late", "utc", "power_W", "status",
    "lines_on", "setpoint_mW", "setpoint_pct_nominal", "meter_wavelength_nm", "averaging",
    "location", "attempts", "error",
]


class SeriesWriter:
    """Rows of a CSV written one at a time, each whole or not at all."""

    def __init__(self, path: Path, columns: list[str] = COLUMNS) -> None:
        self.path = path
        self.columns = columns
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._size = 0
        self._pending: list[bytes] = []
        self.rows = 0  # rows written or pending
        try:
            self._append(self._format(None))
        except OSError:
            os.close(self._fd)
            self._fd = None
            path.unlink(missing_ok=True)  # not even its header: no file rather than an empty one
            raise

    def _format(self, row: dict[str, Any] | None) -> bytes:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="raise")
        if row is None:
            writer.writeheader()
        else:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in self.columns})
        return buf.getvalue().encode("utf-8")

    def _append(self, data: bytes) -> None:
        self._pending.append(data)
        self._drain()

    def _drain(self) -> None:
        assert self._fd is not None
        try:
            while self._pending:
                self._size = append_whole(self._fd, self._pending[0], self._size)
                self._pending.pop(0)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.path) from exc
            raise

    def write(self, row: dict[str, Any]) -> None:
        data = self._format(row)
        self.rows += 1
        self._append(data)

    def close(self) -> None:
        """Write what is pending (``DiskFull`` if it still does not fit: those rows are dropped) and close."""
        if self._fd is None:
            return
        try:
            self._drain()
        finally:
            header_pending = self._size == 0 and bool(self._pending)
            self.rows -= len(self._pending) - int(header_pending)
            self._pending.clear()
            os.close(self._fd)
            self._fd = None


def read_series(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
