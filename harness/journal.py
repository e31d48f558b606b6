"""The run journal: an append-only JSON-lines stream, the source of truth of a run. Every record
(reading, frame, setting, log line, error) is written and flushed as it happens; step boundaries
and the end of the run are also synced to disk."""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO


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
        self._file: TextIO | None = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.seq = 0

    def write(self, record_type: str, t: float | None = None, /, *, sync: bool = False, **fields: Any) -> None:
        """Append one record: its type, station time ``t`` (s since the run started) and fields."""
        record = {"seq": self.seq, "type": record_type, "utc": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
        if t is not None:
            record["t_s"] = round(t, 6)
        record.update(_clean(fields))
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            if self._file is None:
                return
            self._file.write(line + "\n")
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
            self.seq += 1

    def sync(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None


def read_journal(path: Path) -> list[dict[str, Any]]:
    """All complete records (a line cut short by a crash is left out)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
