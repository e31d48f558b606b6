"""Shared bits of the benchmarks: a simulated station variant in a temporary folder, percentiles."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _merge(data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` merged into ``data`` (nested dicts merged key by key)."""
    for key, value in extra.items():
        data[key] = _merge(data.get(key) or {}, value) if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return data


def station_file(extra: dict[str, Any], folder: Path | None = None) -> Path:
    data = _merge(yaml.safe_load((ROOT / "configs" / "simulated.yaml").read_text()), extra)
    folder = folder or Path(tempfile.mkdtemp(prefix="qc-bench-"))
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def stats_ms(errors_s: np.ndarray) -> str:
    e = np.abs(errors_s) * 1e3
    return f"p50 {np.percentile(e, 50):.3f} ms, p99 {np.percentile(e, 99):.3f} ms, max {e.max():.3f} ms"


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (timed writes end on the disk, not in the page cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
