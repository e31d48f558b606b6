"""A run folder's files with their checksums: the ``files`` entries of run.json and ``MANIFEST.sha256``.

The one place that says how a data file is listed in run.json (``series_entry``,
``frame_log_entry``, ``stack_entry``: kind, what it belongs to, rows or frames, sha256), how the
files of a folder are found again from the folder alone (``folder_entries``, for recovery), and how
the manifest is written and checked. Callers may rely on: entries are plain dicts as run.json holds
them (``run_record.FileEntry``); ``write_manifest`` lists every file of the folder (sub-folders
included, sorted, POSIX paths) except the manifest itself, the space reserve and ``*.tmp`` files,
and raises ``OSError`` (e.g. a full disk) with the old manifest left as it was."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.common.atomic_files import replace_text
from harness.common.disk_full import RESERVE_NAME
from harness.records.provenance import sha256_file
from harness.records.run_folder import MANIFEST, RUN_JSON, TMP_SUFFIX, RunFolder, frame_log_name, stack_of_frame_log
from harness.records.run_record import RunStatus
from harness.records.series_writer import COLUMNS as SERIES_COLUMNS


def series_entry(path: Path, series: str, rows: int) -> dict[str, Any]:
    return {"kind": "power_series", "series": series, "rows": rows, "sha256": sha256_file(path)}


def frame_log_entry(path: Path, stack: str, rows: int) -> dict[str, Any]:
    return {"kind": "frame_log", "stack": stack, "rows": rows, "sha256": sha256_file(path)}


def stack_entry(path: Path, stack: str, frames: int, placeholder_pages: int, planned: int, checksum: bool = True) -> dict[str, Any]:
    """An OME-TIFF stack; ``checksum=False``: not finalized yet, its sha256 is null."""
    return {"kind": "ome_tiff", "stack": stack, "frames": frames, "placeholder_pages": placeholder_pages,
            "planned": planned, "sha256": sha256_file(path) if checksum else None}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file (bytes that are not UTF-8 kept as surrogates)."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def is_series_file(path: Path) -> bool:
    """A power series CSV: its first bytes are the series header (bytes: \\r\\n kept)."""
    header = (",".join(SERIES_COLUMNS) + "\r\n").encode("utf-8")
    with open(path, "rb") as f:
        return f.read(len(header)) == header


def folder_entries(folder: Path, stacks: Iterable[str], stack_entries: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The ``files`` of run.json found from the folder alone, as the runner lists them (power
    series, frame logs of ``stacks``, then the stacks' given entries), and the rows whose status
    is ``missing`` in all CSVs."""
    frame_logs = {frame_log_name(s) for s in stacks}
    files: dict[str, Any] = {}
    frame_entries: dict[str, Any] = {}
    missing = 0
    for path in sorted(RunFolder(folder).path.glob("*.csv")):
        rows = read_rows(path)
        missing += sum(1 for r in rows if r.get("status") == "missing")
        if path.name in frame_logs:
            frame_entries[path.name] = frame_log_entry(path, stack_of_frame_log(path.name), len(rows))
        elif is_series_file(path):
            files[path.name] = series_entry(path, path.stem, len(rows))
    files.update(frame_entries)
    files.update(stack_entries)
    return files, missing


def write_manifest(folder: Path) -> None:
    """``MANIFEST.sha256`` (sha256sum format) over every file of the run folder."""
    lines = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in (MANIFEST, RESERVE_NAME) and not path.name.endswith(TMP_SUFFIX):
            lines.append(f"{sha256_file(path)}  {path.relative_to(folder).as_posix()}")
    replace_text(RunFolder(folder).manifest, "\n".join(lines) + "\n")


def manifest_current(folder: Path) -> bool:
    """True if ``MANIFEST.sha256`` lists run.json with the checksum it has now."""
    run_folder = RunFolder(folder)
    try:
        text = run_folder.manifest.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            digest, _, name = line.partition("  ")
            if name == RUN_JSON:
                return digest == sha256_file(run_folder.run_json)
    except OSError:
        return False
    return False


def unfinished(folder: Path, run: dict[str, Any] | None) -> str:
    """What is left of a folder's finishing: ``""`` (nothing, or not a finished acquisition: a run
    still ``running`` is recovery's), ``"finishing"`` (analysis, store, run.json, manifest) or
    ``"manifest"`` (run.json is final: the manifest, and the analysis if results.json is missing)."""
    if not isinstance(run, dict):
        return ""
    status = run.get("status")
    if status == RunStatus.FINISHING:
        return "finishing"
    if status == RunStatus.RUNNING or status is None:
        return ""
    return "" if manifest_current(folder) else "manifest"
