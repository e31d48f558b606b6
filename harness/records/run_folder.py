"""The run folder's layout: every file name a run folder holds, in one place.

A run folder (``runs/<stamp>_<protocol>_<station>_<run id>/``) holds:

- ``run.json``: the run record (``run_record.RunRecord``); ``run.json.unreadable`` where recovery
  found it unreadable and wrote a new one;
- ``results.json``: the analysis (``run_record.ResultsRecord``);
- ``journal.jsonl``: the journal (``journal.py``), the source of truth of the run;
- ``MANIFEST.sha256``: sha256sum lines over every other file (``manifest.py``);
- ``report.html``: the report;
- per image stack ``<stack>.ome.tif`` and its frame log ``<stack>_frames.csv``; a stack recovery
  set aside ``<stack>.ome.tif.incomplete`` / ``.interrupted``;
- per power series ``<series>.csv``;
- per flat-field stack and channel ``<stack>_<channel>_flatfield_correction.ome.tif``.

Callers may rely on: the names never change for a given ``schema_version`` of run.json (old run
folders keep reading); every path is built with ``safe_paths.inside`` and so raises ``UnsafePath``
for a name that would leave the folder. Nothing here reads or writes a file except
``RunFolder.frame_log_stacks`` (a directory listing)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.common.safe_paths import inside

RUN_JSON = "run.json"
RUN_JSON_UNREADABLE = "run.json.unreadable"
RESULTS_JSON = "results.json"
JOURNAL = "journal.jsonl"
MANIFEST = "MANIFEST.sha256"
REPORT = "report.html"
STACK_SUFFIX = ".ome.tif"
FRAME_LOG_SUFFIX = "_frames.csv"
SERIES_SUFFIX = ".csv"
INCOMPLETE_SUFFIX = ".incomplete"  # a stack with not one complete page, set aside by recovery
INTERRUPTED_SUFFIX = ".interrupted"  # the original of a stack recovery could not place every page of
TMP_SUFFIX = ".tmp"  # a file being replaced; never part of the record


def stack_name(stack: str) -> str:
    """``<stack>.ome.tif``."""
    return f"{stack}{STACK_SUFFIX}"


def frame_log_name(stack: str) -> str:
    """``<stack>_frames.csv``, the frame log of a stack."""
    return f"{stack}{FRAME_LOG_SUFFIX}"


def series_name(series: str) -> str:
    """``<series>.csv``, a power series."""
    return f"{series}{SERIES_SUFFIX}"


def correction_name(stack: str, channel: str) -> str:
    """The flat-field correction image of one channel of a stack."""
    return f"{stack}_{channel}_flatfield_correction{STACK_SUFFIX}"


def is_frame_log(file_name: str) -> bool:
    return file_name.endswith(FRAME_LOG_SUFFIX)


def stack_of_frame_log(file_name: str) -> str:
    """The stack a frame log's file name belongs to (``a_frames.csv`` -> ``a``)."""
    return file_name.removesuffix(FRAME_LOG_SUFFIX)


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created or checked on construction)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        """Any file of the folder by its name; ``UnsafePath`` if the name leaves the folder."""
        return inside(self.path, name)

    @property
    def run_json(self) -> Path:
        return inside(self.path, RUN_JSON)

    @property
    def run_json_unreadable(self) -> Path:
        return inside(self.path, RUN_JSON_UNREADABLE)

    @property
    def results_json(self) -> Path:
        return inside(self.path, RESULTS_JSON)

    @property
    def journal(self) -> Path:
        return inside(self.path, JOURNAL)

    @property
    def manifest(self) -> Path:
        return inside(self.path, MANIFEST)

    @property
    def report(self) -> Path:
        return inside(self.path, REPORT)

    def stack(self, stack: str) -> Path:
        return inside(self.path, stack_name(stack))

    def frame_log(self, stack: str) -> Path:
        return inside(self.path, frame_log_name(stack))

    def series(self, series: str) -> Path:
        return inside(self.path, series_name(series))

    def correction(self, stack: str, channel: str) -> Path:
        return inside(self.path, correction_name(stack, channel))

    def frame_log_stacks(self) -> list[str]:
        """The stacks that have a frame log in the folder, sorted."""
        return sorted(stack_of_frame_log(p.name) for p in self.path.glob(f"*{FRAME_LOG_SUFFIX}"))
