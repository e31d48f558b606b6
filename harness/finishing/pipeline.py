"""Finishing a run folder: the one pipeline after an acquisition ends, shared by ``run`` (handed to
the ``Runner`` as its finisher, ``harness.run.finisher``), ``analyze`` (its analysis step and
manifest), ``recover`` (and the automatic recovery before every run and at service start) and the
schedule service (through those). Layer: above analysis, report and the results store.

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

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common import kill_points
from harness.common.disk_full import full_path, is_disk_full
from harness.common.disk_full import message as disk_full_message
from harness.common.errors import UserError
from harness.finishing import results as analysis_step
from harness.records.endings import COMPLETED, FAILED, FINISHING, acquisition_status
from harness.records.journal import Journal, read_journal, reopen
from harness.records.manifest import write_manifest
from harness.records.run_folder import MANIFEST, RunFolder
from harness.records.run_record import read_results, read_run, write_run
from harness.run.finisher import Finished

__all__ = ["FINISHING", "Finished", "analyse", "finish", "reanalyse", "register_start"]

log = logging.getLogger(__name__)

NOT_STORED = "not recorded (--no-store)"


def analyse(folder: Path) -> tuple[dict[str, Any] | None, str]:
    """results.json, annotations and report; (results, error text for the user, "" if analysed).
    Never raises for the analysis' own failure (results.json then says why)."""
    hint = f"the data are kept; after a fix: microscope-qc analyze {folder}"
    try:
        results = analysis_step.analyse_run(folder)
    except Exception as exc:  # the data are safe; analysis can be redone with `analyze`
        log.debug("analysis of %s failed", folder, exc_info=True)
        error = f"analysis failed ({type(exc).__name__}: {exc}); {hint}"
        if is_disk_full(exc):
            error = f"analysis failed: {disk_full_message(full_path(exc, folder))}; {hint}"
        try:
            return analysis_step.write_failed_results(folder, f"{type(exc).__name__}: {exc}"), error
        except OSError:  # a full disk: results.json is written by `analyze` (or the next recover) later
            return None, error
    if results.get("status") == "analysis failed":
        return results, f"analysis failed: {results.get('analysis_error', '')}; {hint}"
    return results, ""


def reanalyse(folder: str | Path) -> tuple[dict[str, Any] | None, str]:
    """``analyze``: the analysis step again on a finished run folder, then its manifest (the results
    store is not touched: ``import`` records a run again). ``(results, "")`` when the analysis ran
    (results.json may still say ``analysis failed``: a file it refused); ``(results.json's content,
    or None if not even that could be written, the reason)`` when the analysis itself crashed.
    Raises ``UserError`` for a folder that is not a finished run (nothing is written)."""
    folder = Path(folder)
    try:
        text = RunFolder(folder).run_json.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if '"status": "finishing"' in text:
        raise UserError(f"{folder}: the run is finishing, or its process was killed while finishing; for a killed one: microscope-qc recover {folder}")
    try:
        data = analysis_step.analyse_run(folder)
    except UserError:
        raise
    except Exception as exc:  # a bug: the reason goes into results.json and the report
        reason = f"{type(exc).__name__}: {exc}"
        log.debug("analysis of %s failed", folder, exc_info=True)
        failed = analysis_step.write_failed_results(folder, reason)
        if failed is not None:
            write_manifest(folder)
        return failed, reason
    write_manifest(folder)
    return data, ""


def register_start(folder: Path, store: bool, db_url: str | None) -> str:
    """A ``running`` row in the results store for a run that has just started (its run.json written);
    what the store said. Never raises; waits a few seconds at most for a database that is not there
    (``results_store.register_start``): the run's record at its end is what counts."""
    if not store:
        return NOT_STORED
    from harness.store.results_store import register_start as register  # sqlalchemy: loaded only when the run is recorded

    try:
        return register(folder, db_url)
    except Exception as exc:  # the run goes on whatever the store does
        log.debug("registering %s failed", folder, exc_info=True)
        return f"not registered: {type(exc).__name__}: {exc}"


def _record(folder: Path, store: bool, db_url: str | None) -> str:
    """Put the run into the results store (queued when the database is unreachable: delivered later);
    what the store said. A store problem never fails the run."""
    if not store:
        return NOT_STORED
    from harness.store.results_store import record_run  # sqlalchemy: loaded only when the run is recorded

    try:
        return record_run(folder, db_url)
    except UserError as exc:
        return f"NOT recorded: {exc}"
    except Exception as exc:
        if is_disk_full(exc) or "disk is full" in str(exc):  # e.g. a database on a full disk ("database or disk is full")
            return f"NOT recorded: the database's disk is full; record it later with: microscope-qc import {folder}"
        return f"NOT recorded: {type(exc).__name__}: {exc}; record it later with: microscope-qc import {folder}"


def open_journal(folder: Path) -> Journal:
    """The run's journal, for appending after a crash: a partial last line dropped, numbering on."""
    return reopen(RunFolder(folder).journal)


def _read_run(folder: Path) -> dict[str, Any]:
    return read_run(folder).as_dict()


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
    records = read_journal(RunFolder(folder).journal, missing_ok=True)
    steps = {r.get("step") for r in records if r.get("type") == "finishing"}
    status = acquisition_status(run)
    reason = str((run.get("acquisition") or {}).get("reason") or "") if run.get("status") == FINISHING else str(run.get("reason") or "")
    try:
        # 1. analysis
        results: dict[str, Any] | None = None
        analysis_error = ""
        results_file = RunFolder(folder).results_json
        if not analysable:
            journal.write("finishing", None, sync=True, step="analysed", skipped="run.json has no protocol (rebuilt from the journal)")
        elif not reanalyse and results_file.is_file() and ("analysed" in steps or run.get("status") != FINISHING):
            try:
                results = read_results(folder).as_dict()
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
        write_run(folder, run)
    kill_points.reached("finishing:after_run_json")
    # 4. the manifest
    try:
        write_manifest(folder)
    except OSError as exc:  # e.g. the disk is full: the folder is not complete; the next recover tries again
        reason = (reason + "; " if reason else "") + f"{MANIFEST} not written: {exc}"
        if status == COMPLETED:
            status = FAILED
        run.update(status=status, reason=reason)
        try:
            write_run(folder, run)
        except OSError:
            pass
    kill_points.reached("finishing:done")
    return Finished(status, reason, results, analysis_error, stored)

