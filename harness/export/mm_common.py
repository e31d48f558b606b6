"""What every microscope-metrics dataset of a run holds, as plain dicts shaped like the model's
classes (microscopemetrics-schema 0.0.5): the microscope, the experimenter, the acquisition protocol,
the output's processing fields, and the record of what did not map.

Contract: ``Mapped`` collects one dataset's parts while a kind's mapping builds them: ``unmapped``
lines (every metric or input the model has no field for, with its value, unit and verdict) and
``notes`` (conversions made on the way). ``common_fields`` and ``output_fields`` return dicts that
the caller merges into the dataset and its output. Nothing here imports the schema package; nothing
raises on a well-formed run record (a missing part is left out, as the model allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.records.run_record import ResultsRecord, RunRecord

TOOL = "microscope-qc-harness"


@dataclass
class Mapped:
    """The parts of one dataset while they are mapped, and what could not be."""

    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def metric_left(self, result: dict[str, Any], name: str, why: str) -> None:
        """A metric of ``result`` the model has no field for: listed with its value, unit and verdict."""
        entry = result.get("metrics", {}).get(name) or {}
        self.unmapped.append(f"{result.get('subject')}: {name} = {_value_text(entry)} ({why})")


def _value_text(entry: dict[str, Any]) -> str:
    value = entry.get("value")
    text = "not determined" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(value)
    unit = entry.get("unit") or ""
    verdict = entry.get("verdict")
    reason = f"; {entry['reason']}" if entry.get("reason") else ""
    return f"{text}{' ' + unit if unit else ''} [{verdict}{reason}]"


def metric(result: dict[str, Any], name: str) -> float | None:
    """The value of a metric of a result, None when absent or not determined."""
    entry = result.get("metrics", {}).get(name)
    value = entry.get("value") if isinstance(entry, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return None
    return value


def verdict_line(result: dict[str, Any], mapped_names: list[str]) -> str:
    """The verdicts of a result's metrics that went into model fields (the model has no verdict field)."""
    metrics = result.get("metrics", {})
    judged = [f"{n} {metrics[n].get('verdict')}" for n in mapped_names if n in metrics and metrics[n].get("verdict") != "not judged"]
    return f"{result.get('subject')} ({result.get('kind')}, {result.get('series')}): verdict {result.get('verdict')}" + (
        f"; {', '.join(judged)}" if judged else "")


def station_instrument(run: RunRecord) -> dict[str, Any]:
    """The station file's ``instrument.microscope`` (as run.json keeps the file's text), or {}."""
    text = run.station.text if run.station else None
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return {}
    instrument = data.get("instrument") if isinstance(data, dict) else None
    microscope = instrument.get("microscope") if isinstance(instrument, dict) else None
    return microscope if isinstance(microscope, dict) else {}


def device_by_role(run: RunRecord, role: str) -> tuple[str, dict[str, Any]] | None:
    """The first device of run.json ``devices`` with this role (e.g. ``power meter``, ``laser 488 nm``)."""
    for name, info in (run.devices or {}).items():
        if isinstance(info, dict) and info.get("role") == role:
            return name, info
    return None


def common_fields(folder: Path, run: RunRecord, mapped: Mapped) -> dict[str, Any]:
    """name, description, data_reference, microscope, experimenter, acquisition_protocol,
    acquisition_datetime of the dataset."""
    protocol = run.protocol
    station = run.station.name if run.station and run.station.name else "unknown station"
    microscope: dict[str, Any] = {"name": station}
    instrument = station_instrument(run)
    for key in ("manufacturer", "model"):
        if instrument.get(key):
            microscope[key] = str(instrument[key])
    if instrument.get("type"):
        mapped.unmapped.append(f"microscope stand type = {instrument['type']!r} (the model's microscope_type names the modality, not the stand)")
    out: dict[str, Any] = {
        "name": folder.name,
        "description": f"microscope-qc run {run.run_id} of protocol {protocol.id if protocol else '?'} on station {station}"
                       f"{' (simulated, seed ' + str(run.station.seed) + ')' if run.station and run.station.simulated else ''}",
        "data_reference": {"data_uri": folder.resolve().as_uri()},
        "microscope": microscope,
    }
    if run.operator:
        out["experimenter"] = {"name": run.operator}
    if protocol and protocol.id:
        refs = (protocol.resolved or {}).get("references") or []
        out["acquisition_protocol"] = {
            "name": protocol.id,
            "description": "; ".join([protocol.title or protocol.id, f"file sha256 {protocol.sha256}", *[str(r) for r in refs]]),
            "version": str(protocol.version) if protocol.version is not None else "unversioned",
            # the model requires a URL; the protocol is a file of the station PC: its path as run.json records it
            "url": Path(protocol.path).as_uri() if protocol.path and Path(protocol.path).is_absolute() else f"microscope-qc-protocol:{protocol.id}",
        }
    if run.started_utc:
        out["acquisition_datetime"] = run.started_utc
    return out


def output_fields(results: ResultsRecord, mapped: Mapped, verdicts: list[str]) -> dict[str, Any]:
    """processing_* fields, warnings, errors and the comment (verdicts, conversions, what did not map)."""
    when = results.analysed_utc or ""
    errors = [f"{e.get('source', '?')}: {e.get('error', '')}" for e in (results.analysis_errors or [])]
    if results.analysis_error and not errors:
        errors.append(results.analysis_error)
    warnings = [f"not analysed: {n}" for n in results.not_analysed or []]
    warnings += [f"changed since the run: {n}" for n in results.files_changed_since_run or []]
    text = "\n".join([
        f"microscope-qc verdict: {results.verdict}" + (f" ({results.verdict_note})" if results.verdict_note else ""),
        *verdicts,
        "Conversions:", *(f"- {n}" for n in mapped.notes),
        "Not mapped (the model has no field of the same meaning):", *(f"- {u}" for u in mapped.unmapped),
    ])
    out: dict[str, Any] = {
        "processing_application": [TOOL],
        "processing_version": [results.tool_version or "unknown"],
        "processing_datetime": when,
        "processing_log": results.conventions or "",
        "validated": False,
        "comment": {"comment_datetime": when, "comment_type": "PROCESSING", "text": text},
    }
    if warnings:
        out["warnings"] = warnings
    if errors:
        out["errors"] = errors
    return out
