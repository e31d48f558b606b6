"""Power readings as CSV: one row per planned sample, written and flushed as it is taken; the header
names every unit, and each row says what was set (line, set point, wavelength setting, averaging,
measuring location). A sample that failed is a row with status ``missing``: rows never shift."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, TextIO

COLUMNS = [
    "sample", "deadline_s", "time_s", "lateness_s", "late", "utc", "power_W", "status",
    "lines_on", "setpoint_mW", "setpoint_pct_nominal", "meter_wavelength_nm", "averaging",
    "location", "attempts", "error",
]


class SeriesWriter:
    """Rows of a CSV written and flushed one at a time."""

    def __init__(self, path: Path, columns: list[str] = COLUMNS) -> None:
        self.path = path
        self.columns = columns
        self._file: TextIO = open(path, "w", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=columns, extrasaction="raise")
        self._csv.writeheader()
        self._file.flush()
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._csv.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in self.columns})
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_series(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
