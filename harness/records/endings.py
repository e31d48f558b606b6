"""How a run ended, in one word, and what that word means for the exit status, the results store,
``history`` and the notifications. One place, used by the run command, the scheduler and the store.

``run.json`` keeps the run's own status (completed | failed | aborted | interrupted) and whether the
safe state was confirmed; ``results.json`` says whether the analysis succeeded. The outcome word
combines them, most serious first:

- ``unsafe``: the safe state was NOT confirmed at the end (a laser may still be on), however the
  run ended otherwise (exit 7, notification ``unsafe``, always sent);
- ``aborted`` (Ctrl-C, SIGTERM: 130), ``failed`` (the measurement could not be completed: 4; a full
  disk is ``failed`` with the reason ``disk full: <file>: no space left on device; data so far kept
  in <folder>``, see ``disk_full.py``; no room to start at all is ``not started``, exit 5),
  ``interrupted`` (the run process died; found and finalized later);
- ``analysis failed``: the measurement completed and its data are kept, but the analysis crashed or
  refused its input (exit 6, notification ``analysis_failed``);
- ``completed``: measured and analysed (exit 0); the QC verdict (pass/warn/fail/not judged) is data.
"""

from __future__ import annotations

from typing import Any

from harness.common.errors import EXIT_ANALYSIS_FAILED, EXIT_INTERRUPTED, EXIT_RUN_FAILED, EXIT_UNSAFE
from harness.records.run_record import RunStatus

# run.json's status words (``run_record.RunStatus``), as plain strings
COMPLETED, FAILED, ABORTED, INTERRUPTED = (s.value for s in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ABORTED, RunStatus.INTERRUPTED))
RUNNING, FINISHING = RunStatus.RUNNING.value, RunStatus.FINISHING.value  # while acquiring; after it, until finishing is done (harness.finishing)
ANALYSIS_FAILED, UNSAFE = "analysis failed", "unsafe"
OUTCOMES = (COMPLETED, ANALYSIS_FAILED, FAILED, ABORTED, INTERRUPTED, UNSAFE)

EXIT_CODES = {COMPLETED: 0, ANALYSIS_FAILED: EXIT_ANALYSIS_FAILED, FAILED: EXIT_RUN_FAILED, INTERRUPTED: EXIT_RUN_FAILED,
              ABORTED: EXIT_INTERRUPTED, UNSAFE: EXIT_UNSAFE}


def outcome(run_status: str, safe_state_confirmed: bool = True, analysis_failed: bool = False) -> str:
    if not safe_state_confirmed:
        return UNSAFE
    if run_status == COMPLETED and analysis_failed:
        return ANALYSIS_FAILED
    return run_status if run_status in OUTCOMES else FAILED


def exit_code(word: str) -> int:
    return EXIT_CODES.get(word, EXIT_RUN_FAILED)


def safe_state_confirmed(run: dict[str, Any]) -> bool:
    """From ``run.json`` (older records without the field: confirmed unless the reason says not).
    ``confirmed: null`` (the run process died before its safe state: ``interrupted``) is not taken
    as NOT confirmed: nothing was found wrong, the service checks the station itself."""
    safe = run.get("safe_state")
    if isinstance(safe, dict) and "confirmed" in safe:
        return safe["confirmed"] is not False
    return "safe state NOT confirmed" not in str(run.get("reason") or "")


def acquisition_status(run: dict[str, Any]) -> str:
    """The run's own status: run.json ``status``, or while it says ``finishing`` the acquisition's
    outcome it recorded (``acquisition.status``), which becomes the status once finishing is done."""
    status = str(run.get("status", FAILED))
    if status == FINISHING:
        acquisition = run.get("acquisition")
        return str(acquisition.get("status") or FAILED) if isinstance(acquisition, dict) else FAILED
    return status


def as_finished(run: dict[str, Any]) -> dict[str, Any]:
    """run.json as it will read once finishing is done (a shallow copy; ``run`` itself if final)."""
    if run.get("status") != FINISHING:
        return run
    acquisition = run.get("acquisition")
    if not isinstance(acquisition, dict):
        acquisition = {}
    return {**run, "status": acquisition_status(run), "reason": str(acquisition.get("reason") or run.get("reason") or "")}


def of_folder(run: dict[str, Any], results: dict[str, Any] | None) -> str:
    """The outcome word of a run folder's ``run.json`` and ``results.json`` (None: not analysed)."""
    failed = results is not None and bool(results) and results.get("status") == ANALYSIS_FAILED
    return outcome(acquisition_status(run), safe_state_confirmed(run), failed)
