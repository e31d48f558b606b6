"""The state of a run folder's finishing, read from its files: ``MANIFEST.sha256`` (written, current),
what is left to finish (``unfinished``), and the run's journal reopened for appending after a crash.
Light (no analysis): recovery scans every run folder with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.common.atomic_files import replace_bytes, replace_text
from harness.common.disk_full import RESERVE_NAME
from harness.common.safe_paths import inside
from harness.records.endings import FINISHING, RUNNING
from harness.records.journal import Journal
from harness.records.provenance import sha256_file

MANIFEST = "MANIFEST.sha256"


def write_manifest(folder: Path) -> None:
    """``MANIFEST.sha256`` (sha256sum format) over every file of the run folder."""
    lines = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in (MANIFEST, RESERVE_NAME) and not path.name.endswith(".tmp"):
            lines.append(f"{sha256_file(path)}  {path.relative_to(folder).as_posix()}")
    replace_text(inside(folder, MANIFEST), "\n".join(lines) + "\n")


def manifest_current(folder: Path) -> bool:
    """True if ``MANIFEST.sha256`` lists run.json with the checksum it has now."""
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            digest, _, name = line.partition("  ")
            if name == "run.json":
                return digest == sha256_file(folder / "run.json")
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
    if status == FINISHING:
        return "finishing"
    if status == RUNNING or status is None:
        return ""
    return "" if manifest_current(folder) else "manifest"


def journal_records(path: Path) -> list[dict[str, Any]]:
    """The journal's records that read as JSON objects (a partial or garbled line is skipped)."""
    out: list[dict[str, Any]] = []
    try:
        data = path.read_bytes()
    except OSError:
        return out
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


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


def open_journal(folder: Path) -> Journal:
    """The run's journal, for appending after a crash: a partial last line dropped, numbering on."""
    path = inside(folder, "journal.jsonl")
    if path.is_file():
        repair_journal(path)
    records = journal_records(path)
    journal = Journal(path)
    journal.seq = max((r["seq"] for r in records if isinstance(r.get("seq"), int) and not isinstance(r.get("seq"), bool)), default=-1) + 1
    return journal
