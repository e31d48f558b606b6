"""Crash recovery: finish a run folder whose run process died (kill -9, power loss, a crash of Python
itself) before the runner could end it, so that it reads like any other run that did not complete.

Such a folder has run.json status ``running`` and an owner process (pid, create time, host, written
by the runner) that is gone; the journal may end in a partial line, the CSVs in a partial row, and an
OME-TIFF's XML is still the plan (not the pages), its last page possibly cut short. ``recover_run``:

1. journal.jsonl: drops a trailing partial (or unparseable) line; the dropped text is kept in the
   ``recovered`` event appended at the end, which also lists everything else recovery did;
2. CSVs: drops a trailing partial row (no line end, or the wrong number of fields), keeps the header;
3. each OME-TIFF: keeps every complete page (IFD and pixel data all on disk), drops a cut-short last
   one, and rewrites the file (``<name>.tmp``, read back, then ``os.replace``) through
   ``OmeTiffStack`` so that its XML describes exactly its pages, as ``OmeTiffStack.finalize`` does:
   one Plane and one TiffData per page (from the frame log), instrument and annotations from the
   planned XML of page 0, and placeholder pages ``not acquired`` completing the C x T grid. A frame
   the log says was acquired but whose page was cut short becomes a ``missing`` placeholder (its row
   in the frame log too); a complete page the log never got a row for (killed between the two) is
   kept and placed from the re-expanded protocol. A page 0 whose XML is missing, unreadable or
   points past the end of the file (an older version's in-place rewrite cut short by a kill or a
   full disk) does not stop it: the instrument then comes from run.json (``info_from_run``: the
   station file's text, the devices' identities, the pixel size from the TIFF's resolution), the
   planes and channel settings from the frame log, as always. Rowless all-zero pages after the
   logged ones are the grid placeholders finalize wrote, made again the same. The copy needs as
   much free space as the stack; on a full disk recovery fails, says so, and leaves the folder as
   it was, so a later ``recover`` succeeds;
4. run.json: status ``finishing`` with the acquisition's outcome (``acquisition.status``:
   ``interrupted``, or the status of a ``run_end`` event when the run had ended and only the
   bookkeeping was cut off), ``ended_utc`` (the last journal record), the missing count, ``files``
   recomputed, ``recovered_utc``, and this process as the owner of the finishing;
5. the finishing pipeline (``harness.finishing``): analysis (its error is reported, not raised), the
   results store record, the final status in run.json, ``MANIFEST.sha256``.

A run whose acquisition had ended but whose finishing was cut off (run.json ``finishing``, or a
final status without a current manifest) and whose owner is gone gets step 5 only: a completed
acquisition stays ``completed``.

A folder that is NOT interrupted (``completed``, ``failed``...) but has a stack whose XML is lost or
is still the plan (its finalize could not finish) gets that stack rebuilt the same way when it is
named to ``recover`` (``repair_stacks``; run.json keeps the acquisition checksum as
``sha256_acquired`` and lists the repair under ``repairs``, the journal gets a ``repaired`` record),
then analysis, the results store and the manifest. ``analyze`` on such a folder says to do that (``stack_check``).

The parts, one job each: ``owners.py`` finds folders that did not finish and whether their owner
lives, ``csv_repair.py`` mends the CSVs, ``stack_info.py`` and ``stacks.py`` rebuild a stack; this
module puts them together (steps 1-5) and hands the folder to the finishing pipeline.

It is idempotent: a folder already recovered (or never interrupted) is left as it is, and a
recovery that was itself interrupted (killed at any point) is completed by running it again: what
is not done is found from the files (run.json's status, the journal's finishing records,
results.json, the manifest). It never touches a run
whose owner process is alive, nor (without ``force``) one whose owner ran on another host or is
unknown (run.json from an older version): we cannot see that host's processes. A folder with a
journal but no readable run.json (killed in the moment between creating the two, or run.json lost
to a power loss; an unreadable one is kept as ``run.json.unreadable``) names no owner: it is taken
as abandoned once nothing in it changed for ``ORPHAN_GRACE_S``, and gets a run.json rebuilt from
the journal and the folder's name (not analysed: the protocol is not known).

What cannot be restored: the pixels of a page cut short (a placeholder takes its place); the time
and stage position of a frame whose row was never logged; the channels' detector gain, offset and
binning (the planned XML does not hold them, so the recovered XML leaves gain and offset out and
keeps the plan's binning); for a stack whose XML was lost, also its UUID (a new one), the
acquisition date (the run's start instead) and any annotation only the XML had (the run annotation
says ``MetadataRebuilt``); and whatever a power loss kept in the page cache (nothing is fsynced while frames and readings are written).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common import kill_points
from harness.common.disk_full import RESERVE_NAME, remove_leftover
from harness.common.process_owner import CREATE_TIME_TOLERANCE_S, folder_lock, this_process
from harness.common.safe_paths import plain_name_problem
from harness.finishing.pipeline import finish
from harness.records.image_records import FRAME_COLUMNS
from harness.records.journal import read_journal, reopen, repair_journal
from harness.records.manifest import folder_entries, frame_log_entry, read_rows, unfinished
from harness.records.run_folder import RunFolder, frame_log_name, stack_name
from harness.records.run_record import RunStatus, write_run
from harness.records.series_writer import COLUMNS as SERIES_COLUMNS
from harness.records.stack_check import stack_problem
from harness.recovery.csv_repair import repair_csv
from harness.recovery.owners import ORPHAN_GRACE_S, Candidate, examine, find_interrupted, owner_state, read_run_or_none, scan_runs
from harness.recovery.stack_info import info_from_ome, info_from_run, scan_pages
from harness.recovery.stacks import INTERRUPTED_NOTE, LOST_NOTE, UNLOGGED_NOTE, StackResult, recover_stack

__all__ = [  # what callers (and the tests) import from here; the parts live in their own modules
    "CREATE_TIME_TOLERANCE_S", "INTERRUPTED_NOTE", "LOST_NOTE", "ORPHAN_GRACE_S", "UNLOGGED_NOTE", "Candidate", "RecoveryReport",
    "StackResult", "examine", "find_interrupted", "info_from_ome", "info_from_run", "owner_state", "recover_all", "recover_run",
    "recover_stack", "repair_csv", "repair_journal", "repair_stacks", "scan_pages", "scan_runs",
]

log = logging.getLogger(__name__)

TAIL_KEPT_CHARS = 65536  # of a dropped partial line or row, in the journal's "recovered" record


@dataclass
class RecoveryReport:
    folder: Path
    outcome: str  # "recovered" | "nothing to do" | "left alone" | "failed"
    status: str = ""  # run.json status afterwards
    reason: str = ""
    details: list[str] = field(default_factory=list)  # what was done, one line each
    verdict: str = ""
    analysis_error: str = ""
    error: str = ""
    stored: str = ""  # what the results store said (finishing's record step)

    def line(self) -> str:
        """One line for the terminal."""
        if self.outcome == "recovered":
            extra = f", verdict {self.verdict}" if self.verdict else ""
            extra += f"; analysis failed: {self.analysis_error}" if self.analysis_error else ""
            return f"recovered {self.folder}: status {self.status}{extra}"
        if self.outcome == "failed":
            return f"recovery FAILED {self.folder}: {self.error}"
        return f"{self.outcome}: {self.folder}" + (f" ({self.reason})" if self.reason else "")


def recover_all(runs_dir: str | Path, store: bool = False, db_url: str | None = None) -> list[RecoveryReport]:
    """Recover every interrupted run of ``runs_dir`` and finish every cut-off finishing (``store``:
    recording them in the results store ``db_url``); a failure is reported, not raised."""
    return [recover_run(folder, store=store, db_url=db_url) for folder in find_interrupted(runs_dir)]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _shown(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= TAIL_KEPT_CHARS else text[:TAIL_KEPT_CHARS] + f"... ({len(text)} characters)"


# --- the whole folder ------------------------------------------------------------------------------
def _stacks_of(folder: Path, run: dict[str, Any] | None) -> list[str]:
    """The stacks the plan names or a frame log is there for, that have a file in the folder."""
    rf = RunFolder(folder)
    names = set((run or {}).get("protocol", {}).get("plan", {}).get("stacks", {})) | set(rf.frame_log_stacks())
    return sorted(n for n in names if not plain_name_problem(n) and (rf.stack(n).exists() or rf.frame_log(n).exists()))


def recover_run(folder: str | Path, force: bool = False, store: bool = False, db_url: str | None = None) -> RecoveryReport:
    """Finish an interrupted run folder (see the module's doc); never raises for a bad folder, the
    report says what happened. ``force``: also a run whose owner is on another host or unknown.
    ``store``: the finishing records the run in the results store ``db_url``."""
    folder = Path(folder)
    report = RecoveryReport(folder, "failed")
    if not folder.is_dir():
        report.error = "not a folder"
        return report
    try:
        with folder_lock(folder) as mine:
            if not mine:
                report.outcome, report.reason = "left alone", "another process is recovering it"
                return report
            _recover(folder, force, report, store, db_url)
    except Exception as exc:  # the folder is left as it was where the failing step had not begun
        log.exception("recovering %s", folder)
        report.outcome, report.error = "failed", f"{type(exc).__name__}: {exc}"
    return report


def _finish(folder: Path, report: RecoveryReport, store: bool, db_url: str | None, reanalyse: bool = False) -> None:
    """The finishing pipeline (``harness.finishing``), its outcome in the report."""
    run = read_run_or_none(folder) or {}
    analysable = "text" in run.get("protocol", {})
    if not analysable:
        report.details.append("not analysed: run.json has no protocol (it was rebuilt from the journal)")
    if run.get("status") == RunStatus.FINISHING:  # this process finishes it now: a kill here leaves it to the next recover
        run["process"] = this_process().as_dict()
        write_run(folder, run)
        kill_points.reached("recovery:before_finishing")
    done = finish(folder, store=store, db_url=db_url, analysable=analysable, reanalyse=reanalyse)
    report.status, report.reason, report.stored = done.status, done.reason, done.stored
    report.verdict = str((done.results or {}).get("verdict", "")) if analysable else ""
    if done.analysis_error:
        report.analysis_error = done.analysis_error
        report.details.append(done.analysis_error)
    report.outcome = "recovered"


def _recover(folder: Path, force: bool, report: RecoveryReport, store: bool = False, db_url: str | None = None) -> None:
    run = read_run_or_none(folder)
    if run is not None and run.get("status") not in (RunStatus.RUNNING, RunStatus.FINISHING) and not unfinished(folder, run):
        report.status = str(run.get("status"))
        if repair_stacks(folder, run, report):  # a finished run with a stack whose XML was lost
            _finish(folder, report, store, db_url, reanalyse=True)
            return
        report.outcome, report.reason = "nothing to do", f"status {report.status}" + (", recovered before" if run.get("recovered_utc") else "")
        return
    candidate = examine(folder)
    if candidate is None:
        report.status = str((run or {}).get("status", ""))
        if run is not None:
            report.outcome, report.reason = "nothing to do", f"status {report.status}" + (", recovered before" if run.get("recovered_utc") else "")
        else:
            report.outcome, report.reason = "nothing to do", "not a run folder (no run.json, no journal)"
        return
    if candidate.owner == "alive" or (candidate.owner != "gone" and not force):
        report.outcome, report.reason = "left alone", candidate.detail
        return
    if run is not None and run.get("status") != RunStatus.RUNNING:
        left = unfinished(folder, run)  # the acquisition had ended: only its finishing was cut off
        report.details.append("completed the finishing that was cut off (analysis, results store, manifest)" if left == "finishing"
                              else "wrote the missing manifest" + ("" if RunFolder(folder).results_json.is_file() else " (and analysed the run)"))
        repaired = repair_stacks(folder, run, report)  # a stack whose XML was lost too: its results are analysed anew
        _finish(folder, report, store, db_url, reanalyse=repaired)
        return

    details = report.details
    if remove_leftover(folder):  # the space a killed run held for its ending (disk_full.py)
        details.append(f"{RESERVE_NAME}: removed (the space the run held for its ending)")
    # 1. journal
    journal_path = RunFolder(folder).journal
    dropped_journal = repair_journal(journal_path) if journal_path.is_file() else b""
    if dropped_journal:
        details.append(f"journal.jsonl: dropped a partial last line ({len(dropped_journal)} bytes)")
    records = read_journal(journal_path, missing_ok=True)
    # 2. CSVs
    stacks = _stacks_of(folder, run)
    frame_logs = {frame_log_name(s) for s in stacks}
    dropped_rows: dict[str, str] = {}
    for path in sorted(folder.glob("*.csv")):
        columns = FRAME_COLUMNS if path.name in frame_logs else SERIES_COLUMNS
        rows, dropped = repair_csv(path, columns)
        if dropped:
            dropped_rows[path.name] = _shown(dropped)
            details.append(f"{path.name}: dropped a partial last row ({len(dropped)} bytes); {rows} rows kept")
    # 3. stacks
    stack_entries: dict[str, dict[str, Any]] = {}
    for name in stacks:
        result = recover_stack(folder, name, run)
        details.extend(result.details)
        if result.entry:
            stack_entries[stack_name(name)] = result.entry
    # files, as the runner lists them: power series, frame logs, stacks
    files, missing = folder_entries(folder, stacks, stack_entries)

    # 4. the journal's own record of the recovery, then run.json
    recovered_utc = _now()
    last = next((r for r in reversed(records) if r.get("type") != "recovered"), None)
    run_end = next((r for r in reversed(records) if r.get("type") == "run_end"), None)
    journal = reopen(journal_path, repair=False)  # appends (a folder without a journal gets one, with this record)
    journal.write("recovered", None, sync=True, owner=candidate.detail, actions=list(details),
                  dropped_journal_tail=_shown(dropped_journal) if dropped_journal else None, dropped_csv_rows=dropped_rows or None)
    journal.close()
    if run_end is not None:
        status = str(run_end.get("status") or "interrupted")
        reason = (str(run_end.get("reason") or "") + "; " if run_end.get("reason") else "")
        reason += f"the run had ended, but its process ended before run.json was written; recovered {recovered_utc}"
    else:
        status = "interrupted"
        reason = f"the run process ended without finishing (killed or power loss); recovered {recovered_utc}"
    if run is None:
        run = _skeleton_run(folder, records)
        if RunFolder(folder).run_json.exists():
            os.replace(RunFolder(folder).run_json, RunFolder(folder).run_json_unreadable)
            details.append("run.json was unreadable: kept as run.json.unreadable; a new one has what the journal knows")
        else:
            details.append("no run.json (the run process ended before it wrote one): a new one has what the journal knows")
    ended = (last or {}).get("utc") or run.get("started_utc")
    # the acquisition's outcome; the status is final once finishing (analysis, store, manifest) is done
    run.update(status=RunStatus.FINISHING.value, acquisition={"status": status, "reason": reason}, reason="", ended_utc=ended, missing=missing,
               files=files, recovered_utc=recovered_utc)
    safe = next((r for r in reversed(records) if r.get("type") == "safe_state"), None)
    if safe is not None:  # the run got as far as its safe state: what it found (not confirmed: the outcome is unsafe)
        run["safe_state"] = {"confirmed": bool(safe.get("confirmed")), "failures": list(safe.get("failures") or [])}
    if isinstance(run.get("clock"), dict) and last and isinstance(last.get("t_s"), (int, float)):
        run["clock"]["elapsed_s"] = last["t_s"]
    run["recovery"] = {"utc": recovered_utc, "owner": candidate.detail, "actions": list(details)}
    write_run(folder, run)
    report.status, report.reason = status, reason
    # 5. finishing: analysis, the results store, the final status, the manifest
    _finish(folder, report, store, db_url)


def repair_stacks(folder: Path, run: dict[str, Any], report: RecoveryReport) -> bool:
    """A finished run whose stack's OME-XML is unreadable or does not describe its pages (a crash or
    a full disk during a metadata rewrite of an older version, or a finalize that could not finish):
    rebuild each such stack as recovery does (``recover_stack``), record it in the journal and in
    run.json (``files`` gets the new checksum, the old one kept as ``sha256_acquired``; ``repairs``
    lists what was done). False, and nothing touched, when every stack is whole."""
    damaged = []
    for name in _stacks_of(folder, run):
        path = RunFolder(folder).stack(name)
        problem = stack_problem(path) if path.is_file() else ""
        if problem:
            damaged.append((name, problem))
    if not damaged:
        return False
    details: list[str] = []
    files = run.setdefault("files", {})
    for name, problem in damaged:
        details.append(f"{name}.ome.tif: {problem}")
        result = recover_stack(folder, name, run)
        details.extend(result.details)
        if result.entry:
            old = files.get(stack_name(name), {})
            entry = {**old, **result.entry, "sha256_acquired": old.get("sha256_acquired") or old.get("sha256") or result.entry["sha256"]}
            files[stack_name(name)] = entry
        frames_csv = RunFolder(folder).frame_log(name)
        if frames_csv.is_file() and frames_csv.name in files:
            files[frames_csv.name].update(frame_log_entry(frames_csv, name, len(read_rows(frames_csv))))
    utc = _now()
    journal = reopen(RunFolder(folder).journal, repair=False)
    journal.write("repaired", None, sync=True, actions=list(details))
    journal.close()
    run.setdefault("repairs", []).append({"utc": utc, "actions": list(details)})
    write_run(folder, run)
    report.details.extend(details)
    report.reason = "stack metadata rebuilt"
    return True


def _skeleton_run(folder: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json for a folder that has none: what the journal and the folder's name know."""
    start = next((r for r in records if r.get("type") == "run_start"), {})
    parts = folder.name.split("_")  # <stamp>_<protocol>_<station slug>_<run id[:8]>
    started = records[0].get("utc") if records else None
    if not started and parts and re.fullmatch(r"\d{8}T\d{6}Z", parts[0]):
        started = datetime.strptime(parts[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).isoformat()
    return {
        "run_id": start.get("run_id") or (parts[-1] if len(parts) >= 4 else folder.name),
        "protocol": {"id": start.get("protocol") or (parts[1] if len(parts) >= 4 else "")},
        "station": {"name": start.get("station") or (parts[2] if len(parts) >= 4 else "")},
        "started_utc": started or datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc).isoformat(),
    }


