"""``run.json`` and ``results.json`` as pydantic models, and the one way to read and write them.

Contract:

- ``RunRecord`` (run.json) and ``ResultsRecord`` (results.json) carry ``schema_version``
  (``SCHEMA_VERSION``). A file without it was written before the field existed and is version 1:
  the same layout. Every field is optional, so any file an older version wrote still reads; fields
  the models do not name are kept as they are (``extra="allow"``) and written back unchanged.
- ``RunStatus`` is the run's status word (str-valued: the JSON holds the plain word).
- ``read_run`` / ``read_results`` raise ``OSError`` (no file, unreadable) or ``ValueError`` (not
  JSON, not UTF-8, not an object, a field of the wrong type: pydantic's ``ValidationError`` is a
  ``ValueError``). ``write_run`` / ``write_results`` take a model or a plain dict (validated the
  same way), stamp the current ``schema_version`` and replace the file atomically
  (``atomic_files.replace_json``); they raise ``OSError`` (a full disk: ``DiskFull`` handling is
  the caller's) and ``ValueError`` for data that do not fit the model.
- Metrics renamed since a file was written (``RENAMED_METRICS``, old -> new) read under their new
  names (in each result's ``metrics``; a result that has the new name too keeps it as it is).
- ``as_dict()`` gives the record as the plain dict the file holds (only the fields present in the
  file or set since, in the file's order where the model does not fix one).

The JSON Schemas (``microscope-qc schema``) are committed as ``schemas/run.schema.json`` and
``schemas/results.schema.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.common.atomic_files import replace_json
from harness.records.run_folder import RunFolder

SCHEMA_VERSION = 1
RENAMED_METRICS = {
    "centre_of_intensity_x_px": "centroid_x_px", "centre_of_intensity_y_px": "centroid_y_px",
    "centre_of_intensity_offset_px": "centroid_offset_px", "centre_of_intensity_offset_frac": "centroid_offset_frac",
}
"""Metric names of results.json that were renamed (old -> new): read under the new names."""
Number = int | float  # an int stays an int when the record is written back


class RunStatus(str, Enum):
    """run.json ``status``: ``running`` while acquiring, ``finishing`` after it until the finishing
    pipeline is done, then one of the final words (see ``endings.py``)."""

    RUNNING = "running"
    FINISHING = "finishing"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


FINAL_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ABORTED, RunStatus.INTERRUPTED)


class _Open(BaseModel):
    """A part of a record: fields not named here are kept."""

    model_config = ConfigDict(extra="allow")


class StackPlanRecord(_Open):
    channels: list[str] = Field(default_factory=list, description="channel names in C order")
    frames: dict[str, int] = Field(default_factory=dict, description="planned frames per channel")
    z_planes: int | None = Field(None, description="planes per z-stack (absent: no z-stacks)")
    z_step_um: Number | None = Field(None, description="distance between the planes of a z-stack")


class PlanRecord(_Open):
    actions: int | None = None
    estimate_s: Number | None = None
    lines: list[str] | None = Field(None, description="the laser lines the plan was expanded for (nm, as the station names them)")
    optics: dict[str, Number] | None = Field(None, description="the objective the plan's z-stacks were planned for: na, immersion_index")
    stacks: dict[str, StackPlanRecord] | None = None


class ProtocolRecord(_Open):
    id: str | None = None
    title: str | None = None
    version: Any = None
    path: str | None = None
    sha256: str | None = None
    text: str | None = Field(None, description="the protocol file's text, as run")
    resolved: dict[str, Any] | None = None
    plan: PlanRecord | None = None


class StationRecord(_Open):
    name: str | None = None
    path: str | None = None
    sha256: str | None = None
    text: str | None = None
    micromanager_config: dict[str, Any] | None = None
    simulated: bool | None = None
    seed: Any = None


class ClockRecord(_Open):
    mode: str | None = Field(None, description="virtual | real")
    time_scale: Number | None = None
    elapsed_s: Number | None = None


class ProcessOwner(_Open):
    """The process that owns the run (acquiring or finishing it): recovery tells a live one from a dead one."""

    pid: Any = None
    create_time: Number | None = None
    hostname: str | None = None


class SafeStateRecord(_Open):
    confirmed: bool | None = None
    failures: list[Any] = Field(default_factory=list)


class AcquisitionRecord(_Open):
    """While ``finishing``: the acquisition's own outcome, the final status once finishing is done."""

    status: RunStatus | None = None
    reason: str | None = None


class FileEntry(_Open):
    """One data file of the run (``files`` of run.json), keyed by its name."""

    kind: str | None = Field(None, description="power_series | frame_log | ome_tiff")
    series: str | None = None
    stack: str | None = None
    rows: int | None = None
    frames: int | None = None
    placeholder_pages: int | None = None
    planned: int | None = None
    sha256: str | None = Field(None, description="its checksum as recorded (null: a stack not finalized)")
    sha256_acquired: str | None = Field(None, description="the checksum at acquisition, where annotations or a repair changed the file since")
    qc_annotated: bool | None = None


class RecoveryRecord(_Open):
    utc: str | None = None
    owner: str | None = None
    actions: list[str] = Field(default_factory=list)


class RepairRecord(_Open):
    utc: str | None = None
    actions: list[str] = Field(default_factory=list)


class RunRecord(_Open):
    """run.json: what was run, where, by whom, how it ended, and its files with their checksums."""

    schema_version: int = Field(1, description="the run folder's layout version (absent: 1)")
    run_id: str | None = None
    status: RunStatus | None = None
    reason: str | None = None
    protocol: ProtocolRecord | None = None
    station: StationRecord | None = None
    clock: ClockRecord | None = None
    software: dict[str, Any] | None = None
    host: dict[str, Any] | None = None
    operator: str | None = None
    devices: dict[str, Any] | None = None
    started_utc: str | None = None
    ended_utc: str | None = None
    missing: int | None = None
    safe_state: SafeStateRecord | None = None
    files: dict[str, FileEntry] | None = None
    process: ProcessOwner | None = None
    acquisition: AcquisitionRecord | None = None
    scheduled: dict[str, Any] | None = Field(None, description="the schedule job and due time this run is for")
    finished_utc: str | None = None
    recovered_utc: str | None = None
    recovery: RecoveryRecord | None = None
    repairs: list[RepairRecord] | None = None

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)


class ResultsRecord(_Open):
    """results.json: the analysis of a run folder (metrics, verdicts, what failed)."""

    schema_version: int = Field(1, description="the run folder's layout version (absent: 1)")
    run_id: str | None = None
    protocol: str | None = None
    station: str | None = None
    run_status: RunStatus | None = None
    analysed_utc: str | None = None
    tool_version: str | None = None
    status: str | None = Field(None, description="analysed | analysis failed")
    analysis_error: str | None = None
    analysis_errors: list[dict[str, Any]] | None = None
    conventions: str | None = Field(None, description="the conventions the metrics follow, in words")
    results: list[dict[str, Any]] | None = None
    not_analysed: list[str] | None = None
    files_changed_since_run: list[str] | None = None
    verdict: str | None = Field(None, description="pass | warn | fail | not judged")
    verdict_note: str | None = None
    annotated_files: list[str] | None = None
    annotation_error: str | None = None
    report: str | None = None
    report_error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _renamed_metrics(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            return data
        def renamed(result: Any) -> Any:
            metrics = result.get("metrics") if isinstance(result, dict) else None
            if not isinstance(metrics, dict) or not any(k in RENAMED_METRICS for k in metrics):
                return result
            new = {RENAMED_METRICS[k] if k in RENAMED_METRICS and RENAMED_METRICS[k] not in metrics else k: v for k, v in metrics.items()}
            return {**result, "metrics": new}
        return {**data, "results": [renamed(r) for r in data["results"]]}

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)


Record = TypeVar("Record", RunRecord, ResultsRecord)


def _as_dict(record: BaseModel) -> dict[str, Any]:
    data = record.model_dump(mode="python", exclude_unset=True)
    plain: dict[str, Any] = _plain(data)
    return plain


def _plain(value: Any) -> Any:
    """Enum members as their words (the dict then compares and prints like the JSON)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read(path: Path, model: type[Record]) -> Record:
    return model.model_validate(json.loads(path.read_text(encoding="utf-8")))


def _write(path: Path, model: type[Record], data: Record | Mapping[str, Any]) -> Record:
    record = data if isinstance(data, model) else model.model_validate(dict(data))
    record.schema_version = SCHEMA_VERSION  # also marks the field as set: it is written
    replace_json(path, record.as_dict())
    return record


def read_run(folder: str | Path) -> RunRecord:
    """The folder's run.json (OSError, ValueError: see the module's doc)."""
    return _read(RunFolder(Path(folder)).run_json, RunRecord)


def run_from_json(data: Any) -> RunRecord:
    """A run record from already parsed JSON (ValueError if it does not fit)."""
    return RunRecord.model_validate(data)


def write_run(folder: str | Path, run: RunRecord | Mapping[str, Any]) -> RunRecord:
    return _write(RunFolder(Path(folder)).run_json, RunRecord, run)


def read_results(folder: str | Path) -> ResultsRecord:
    return _read(RunFolder(Path(folder)).results_json, ResultsRecord)


def results_from_json(data: Any) -> ResultsRecord:
    return ResultsRecord.model_validate(data)


def write_results(folder: str | Path, results: ResultsRecord | Mapping[str, Any]) -> ResultsRecord:
    return _write(RunFolder(Path(folder)).results_json, ResultsRecord, results)


SCHEMA_MODELS: dict[str, type[BaseModel]] = {"run": RunRecord, "results": ResultsRecord}
"""The models ``microscope-qc schema`` exports (schemas/<name>.schema.json)."""
