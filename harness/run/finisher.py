"""What the runner needs of the finishing pipeline, which it does not import: the pipeline
(``harness.finishing``) sits above analysis, report and the results store, and is handed to the
``Runner`` by its caller (the command line, the schedule service through it, the tests).

The runner calls its finisher once, after the acquisition's ending is recorded (journal
``run_end``, run.json ``finishing`` with the acquisition's outcome), with Ctrl-C and SIGTERM ignored
until it returns. The finisher closes the journal it is given, never raises for an analysis or store
failure (its ``Finished`` says so), and leaves run.json with its final status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.records.journal import Journal


@dataclass
class Finished:
    """What finishing did."""

    status: str  # the final run.json status
    reason: str
    results: dict[str, Any] | None  # results.json's content (None: not analysed)
    analysis_error: str  # "" when analysed
    stored: str  # what the results store said


class Finisher(Protocol):
    def __call__(self, folder: str | Path, journal: Journal | None = None, store: bool = False, db_url: str | None = None) -> Finished:
        """Finish the run folder (see ``harness.finishing.pipeline.finish``): analysis, store record
        (with ``store``, into ``db_url``), final status, manifest; closes ``journal``."""
        ...
