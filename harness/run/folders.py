"""Run folder names: ``<UTC start>_<protocol id>_<station slug>_<run id[:8]>`` under the runs folder.

``make_run_folder`` creates it (never an existing one); a name that would leave the runs folder raises
``UnsafePath``; no room for it raises ``PreconditionFailed`` (the run is not started); any other
failure is a ``UserError``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from harness.common.disk_full import is_disk_full
from harness.common.disk_full import message as disk_full_message
from harness.common.errors import UserError
from harness.common.safe_paths import inside
from harness.station.run_guard import PreconditionFailed


def slug(text: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    return "-".join(p for p in out.split("-") if p)[:40] or "station"


def run_folder_name(started: datetime, protocol_id: str, station_name: str, run_id: str) -> str:
    return f"{started.strftime('%Y%m%dT%H%M%SZ')}_{protocol_id}_{slug(station_name)}_{run_id[:8]}"


def make_run_folder(runs_dir: Path, name: str) -> Path:
    folder = inside(runs_dir, name)
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        if is_disk_full(exc):
            raise PreconditionFailed(f"{disk_full_message(folder)}; the run was not started") from None
        raise UserError(f"cannot create the run folder {folder}: {exc}") from None
    return folder
