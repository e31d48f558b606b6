"""The service's persisted state: ``state.json`` (per job the last due time handled, the attempts
pending or started, the stations whose safe state is not confirmed) and ``outcomes.jsonl`` (one
line per attempt, appended and fsynced).

Contract:
- ``ScheduleState(folder)`` reads ``folder/state.json``; an unreadable file is moved aside
  (``state.json.unreadable-<UTC time>``), the state starts empty and ``problem`` says so (never raises
  for a bad file; raises ``OSError`` if the folder cannot be created).
- ``save()`` replaces state.json atomically; ``record(outcome)`` appends one fsynced line;
  ``outcomes()`` reads every whole line (a line cut by a power loss is skipped).
- ``Pending`` and ``Outcome`` are the records; unknown keys of a pending attempt written by another
  version are ignored. Times are ISO 8601 strings in UTC (``iso``, ``parse_iso``).
- ``DONE``: the outcomes after which a due time is never run again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common.atomic_files import replace_json
from harness.common.safe_paths import inside

DONE = ("completed", "analysis failed", "unsafe")  # outcomes after which a due time is never run again


@dataclass
class Pending:
    """An attempt of one due time of a job, waiting for ``not_before`` (or started: ``started``)."""

    job: str
    due: str  # ISO UTC
    attempt: int
    not_before: str  # ISO UTC
    note: str = ""
    started: str = ""  # ISO UTC: the run process of this attempt was started (its run folder is tagged with job, due, attempt)


@dataclass
class Outcome:
    """One line of ``outcomes.jsonl``: how an attempt (or a due time not attempted) ended."""

    job: str
    due: str
    attempt: int
    outcome: str  # completed | analysis failed | failed | interrupted | unsafe | not started | skipped | missed | stopped
    time: str
    verdict: str | None = None
    folder: str | None = None
    reason: str = ""
    retry_at: str | None = None
    notified: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = ""
    station: str = ""
    stored: str = ""  # what the results store said


def iso(t: datetime) -> str:
    """A time as ISO 8601 in UTC (how state.json and outcomes.jsonl keep times)."""
    return t.astimezone(timezone.utc).isoformat()


def parse_iso(s: str) -> datetime:
    """The inverse of ``iso``."""
    return datetime.fromisoformat(s)


class ScheduleState:
    """``state.json`` (last handled due time per job, pending attempts) and ``outcomes.jsonl``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = inside(folder, "state.json")
        self.outcomes_path = inside(folder, "outcomes.jsonl")
        self.problem = ""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
            self.last_due: dict[str, str] = {str(k): str(v) for k, v in data.get("last_due", {}).items()}
            known = set(Pending.__dataclass_fields__)
            self.pending: list[Pending] = [Pending(**{k: v for k, v in p.items() if k in known}) for p in data.get("pending", [])]
            # stations whose safe state was not confirmed: {station file: {"since": ISO UTC, "reason": ...}}
            self.unsafe: dict[str, dict[str, str]] = {str(k): dict(v) for k, v in data.get("unsafe", {}).items()}
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(f"state.json.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
            self.path.replace(aside)
            self.problem = f"{self.path} could not be read ({type(exc).__name__}: {exc}); kept as {aside.name}, starting afresh"
            self.last_due, self.pending, self.unsafe = {}, [], {}

    def save(self) -> None:
        replace_json(self.path, {"last_due": self.last_due, "pending": [asdict(p) for p in self.pending], "unsafe": self.unsafe})

    def record(self, outcome: Outcome) -> None:
        with open(self.outcomes_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(outcome)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def outcomes(self) -> list[dict[str, Any]]:
        if not self.outcomes_path.is_file():
            return []
        out = []
        for line in self.outcomes_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a power loss
        return out
