"""Finishing a run folder: the one pipeline after an acquisition ends, shared by ``run``, ``recover``
(and the automatic recovery before every run and at service start) and the schedule service.

Status words (run.json ``status``, see ``endings.py``):

- ``running``: the acquisition is under way (its owner process is run.json ``process``);
- ``finishing``: the acquisition has ended; its own outcome is recorded in run.json ``acquisition``
  (``status``: completed | failed | aborted | interrupted, ``reason``) and in the journal's ``run_end``
  (or ``recovered``) record. Analysis, store record and manifest are under way, or were cut off;
- completed | failed | aborted | interrupted: final, written only when analysis and the store record
  are done; the manifest follows it.

The steps, each journaled (``finishing`` records with ``step``; the last journal record is
``finished``):

1. analysis: results.json, the QC annotations inside the OME-TIFFs, the report (an analysis that
   fails is recorded in results.json, never raised);
2. the results store record (skipped with ``store=False``; a store problem is said, never fatal);
3. the journal's ``finished`` record, then run.json with its final status (``finished_utc``);
4. ``MANIFEST.sha256`` over every file, run.json included.

A folder is finished when run.json's status is final and ``MANIFEST.sha256`` lists run.json with its
current checksum (``unfinished`` says what is left). Resumption: ``finish`` is idempotent; run again
on a folder cut off anywhere above, it redoes what is not done: the analysis unless the journal
records it (and results.json is there), the store record always (importing a run twice is
harmless), and the final run.json and manifest. A run killed during finishing keeps its
acquisition's outcome: a completed acquisition is still ``completed``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common import kill_points
from harness.common.atomic_files import replace_json, replace_text
from harness.common.disk_full import RESERVE_NAME, full_path, is_disk_full
from harness.common.disk_full import message as disk_full_message
from harness.common.safe_paths import inside
from harness.records.endings import COMPLETED, FAILED, FINISHING, RUNNING, acquisition_status
from harness.records.journal import Journal
from harness.records.provenance import sha256_file

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.sha256"
NOT_STORED = "not recorded (--no-store)"


@dataclass
class Finished:
    status: str  # the final run.json status
    reason: str
    results: dict[str, Any] | None
    analysis_error: str  # "" when analysed
    stored: str  # what the results store said


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


def _journal_records(path: Path) -> list[dict[str, Any]]:
    out = []
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


def open_journal(folder: Path) -> Journal:
    """The run's journal, for appending after a crash: a partial last line dropped, numbering on."""
    from harness.recovery.recover import repair_journal

    path = inside(folder, "journal.jsonl")
    if path.is_file():
        repair_journal(path)
    records = _journal_records(path)
    journal = Journal(path)
    journal.seq = max((r["seq"] for r in records if isinstance(r.get("seq"), int) and not isinstance(r.get("seq"), bool)), default=-1) + 1
    return journal


def analyse(folder: Path) -> tuple[dict[str, Any] | None, str]:
    """results.json, annotations and report; (results, error text for the user, "" if analysed).
    Never raises for the analysis' own failure (results.json then says why)."""
    from harness.analysis.analyse import analyse_run, write_failed_results

    hint = f"the data are kept; after a fix: microscope-qc analyze {folder}"
    try:
        results = analyse_run(folder)
    except Exception as exc:  # the data are safe; analysis can be redone with `analyze`
        log.debug("analysis of %s failed", folder, exc_info=True)
        error = f"analysis failed ({type(exc).__name__}: {exc}); {hint}"
        if is_disk_full(exc):
            error = f"analysis failed: {disk_full_message(full_path(exc, folder))}; {hint}"
        try:
            return write_failed_results(folder, f"{type(exc).__name__}: {exc}"), error
        except OSError:  # a full disk: results.json is written by `analyze` (or the next recover) later
            return None, error
    if results.get("status") == "analysis failed":
        return results, f"analysis failed: {results.get('analysis_error', '')}; {hint}"
    return results, ""


def _record(folder: Path, store: bool, db_url: str | None) -> str:
    if not store:
        return NOT_STORED
    from harness.station.run_guard import record

    try:
        return record(folder, db_url)
    except Exception as exc:  # a store problem never fails the run (record() already turns its own into text)
        return f"NOT recorded: {type(exc).__name__}: {exc}; record it later with: microscope-qc import {folder}"


def _read_run(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{folder / 'run.json'}: not a run record")
    return data


def finish(folder: str | Path, journal: Journal | None = None, store: bool = False, db_url: str | None = None,
           analysable: bool = True, reanalyse: bool = False) -> Finished:
    """Do what is left of a folder's finishing (see the module's doc) and close ``journal`` (the run's
    own, still open; None: the journal is reopened for appending). ``analysable=False``: a run.json
    rebuilt from the journal (no protocol): not analysed. ``reanalyse``: analysed again although
    done before (a stack was rebuilt since)."""
    folder = Path(folder)
    run = _read_run(folder)
    if journal is None:
        journal = open_journal(folder)
    records = _journal_records(folder / "journal.jsonl")
    steps = {r.get("step") for r in records if r.get("type") == "finishing"}
    status = acquisition_status(run)
    reason = str((run.get("acquisition") or {}).get("reason") or "") if run.get("status") == FINISHING else str(run.get("reason") or "")
    try:
        # 1. analysis
        results: dict[str, Any] | None = None
        analysis_error = ""
        results_file = folder / "results.json"
        if not analysable:
            journal.write("finishing", None, sync=True, step="analysed", skipped="run.json has no protocol (rebuilt from the journal)")
        elif not reanalyse and results_file.is_file() and ("analysed" in steps or run.get("status") != FINISHING):
            try:
                results = json.loads(results_file.read_text(encoding="utf-8"))
                if results.get("status") == "analysis failed":
                    analysis_error = f"analysis failed: {results.get('analysis_error', '')}"
            except (OSError, ValueError, AttributeError):
                results = None
        if analysable and results is None:
            results, analysis_error = analyse(folder)
            journal.write("finishing", None, sync=True, step="analysed", verdict=(results or {}).get("verdict"),
                          analysis_error=analysis_error or None)
        kill_points.reached("finishing:after_results")
        # 2. the results store
        stored = _record(folder, store, db_url)
        journal.write("finishing", None, sync=True, step="recorded", stored=stored)
        kill_points.reached("finishing:after_record")
        # 3. the final status
        journal.write("finished", None, sync=True, status=status)
    finally:
        journal.close()
    run = _read_run(folder)  # the analysis may have recorded new checksums of annotated files
    if run.get("status") == FINISHING:
        run.pop("acquisition", None)
        run.update(status=status, reason=reason, finished_utc=datetime.now(timezone.utc).isoformat())
        replace_json(inside(folder, "run.json"), run)
    kill_points.reached("finishing:after_run_json")
    # 4. the manifest
    try:
        write_manifest(folder)
    except OSError as exc:  # e.g. the disk is full: the folder is not complete; the next recover tries again
        reason = (reason + "; " if reason else "") + f"MANIFEST.sha256 not written: {exc}"
        if status == COMPLETED:
            status = FAILED
        run.update(status=status, reason=reason)
        try:
            replace_json(inside(folder, "run.json"), run)
        except OSError:
            pass
    kill_points.reached("finishing:done")
    return Finished(status, reason, results, analysis_error, stored)
