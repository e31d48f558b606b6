"""A run folder as rows of the results store: the ``runs`` row (status word, verdict, times, host,
a digest of what it was read from) and one ``metrics`` row per metric of results.json.

``read_run_folder(folder)`` reads run.json and results.json through their models
(``harness.records.run_record``); a folder that is not a run, or files that do not belong together,
raise ``UserError`` naming the file. ``running_row(folder)``: the ``runs`` row of a run that has just
started (status ``running``, not judged, no digest: its final record always replaces it). Nothing is
written.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common.errors import UserError
from harness.records import run_record
from harness.records.endings import ANALYSIS_FAILED, COMPLETED, as_finished, of_folder
from harness.records.run_folder import RUN_JSON, RunFolder


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None


def _record(path: Path, data: Any, parse: Callable[[Any], run_record.RunRecord | run_record.ResultsRecord]) -> dict[str, Any] | None:
    """``data`` (parsed JSON) validated by its model, as a plain dict; None if it is not an object."""
    if not isinstance(data, dict):
        return None
    try:
        return parse(data).as_dict()
    except ValueError as exc:
        raise UserError(f"{path}: not a microscope-qc run record ({str(exc).splitlines()[0]})") from None


def _when(text: Any, where: str) -> datetime | None:
    if text in (None, ""):
        return None
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{where}: {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _reason(run: dict[str, Any], results: dict[str, Any] | None) -> str:
    reason = str(run.get("reason") or "")
    if results and results.get("status") == ANALYSIS_FAILED and results.get("analysis_error"):
        reason = (reason + "; " if reason else "") + f"analysis failed: {results['analysis_error']}"
    return reason


def _verdict(run: dict[str, Any], results: dict[str, Any] | None) -> str:
    """A run that did not complete is not judged, whatever an older analysis wrote."""
    if not results or run.get("status") != COMPLETED:
        return "not judged"
    return str(results.get("verdict", "not judged"))


def _seed(run: dict[str, Any]) -> int | None:
    seed = (run.get("station") or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and -(2**63) <= seed < 2**63 else None


def running_row(folder: str | Path) -> dict[str, Any]:
    """The ``runs`` row of a run under way (without ``imported_utc``), from its run.json."""
    folder = Path(folder).resolve()
    run_file = RunFolder(folder).run_json
    run = _record(run_file, _read_json(run_file), run_record.run_from_json)
    if run is None:
        raise UserError(f"{run_file}: not a microscope-qc run record (not a JSON object)")
    try:
        protocol, station = run["protocol"], run["station"]
        return {
            "run_id": str(run["run_id"]), "station": str(station["name"]), "protocol": str(protocol["id"]),
            "protocol_version": None if protocol.get("version") is None else str(protocol["version"]),
            "status": "running", "reason": "", "started_utc": _when(run.get("started_utc"), f"{run_file}: started_utc"),
            "ended_utc": None, "verdict": "not judged", "folder": str(folder), "host": (run.get("host") or {}).get("hostname"),
            "analysed_utc": None, "source_sha256": "", "seed": _seed(run),
        }
    except (KeyError, TypeError) as exc:
        raise UserError(f"{run_file}: not a microscope-qc run record (no {exc})") from None


def read_run_folder(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``runs`` row and ``metrics`` rows a run folder gives (without ``imported_utc``)."""
    given = Path(folder)
    folder = given.resolve()
    if not folder.is_dir():
        raise UserError(f"{given}: no such folder")
    run_file, results_file = RunFolder(folder).run_json, RunFolder(folder).results_json
    if not run_file.is_file():
        hint = ""
        if any((child / RUN_JSON).is_file() for child in folder.iterdir() if child.is_dir()):
            hint = f"; it holds run folders: import them with microscope-qc import {given / '*'}"
        raise UserError(f"{given}: not a run folder (no run.json){hint}")
    run_bytes = run_file.read_bytes()
    run = _record(run_file, _read_json(run_file), run_record.run_from_json)
    if run is None:
        raise UserError(f"{run_file}: not a microscope-qc run record (not a JSON object)")
    run = as_finished(run)  # a run still finishing is recorded as it will end
    try:
        run_id, status = str(run["run_id"]), str(run["status"])
        protocol, station = run["protocol"], run["station"]
        protocol_id, station_name = str(protocol["id"]), str(station["name"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{run_file}: not a microscope-qc run record (no {exc})") from None
    results_bytes = b""
    results: dict[str, Any] | None = None
    if results_file.is_file():
        results_bytes = results_file.read_bytes()
        results = _record(results_file, _read_json(results_file), run_record.results_from_json)
        if not isinstance(results, dict) or results.get("run_id") != run_id:
            raise UserError(f"{results_file}: belongs to another run (run_id {results.get('run_id') if isinstance(results, dict) else None!r}, "
                            f"run.json says {run_id!r}); rerun: microscope-qc analyze {folder}")
    digest = hashlib.sha256()
    for part in (run_bytes, results_bytes, str(folder).encode()):
        digest.update(hashlib.sha256(part).digest())
    row = {
        "run_id": run_id, "station": station_name, "protocol": protocol_id,
        "protocol_version": None if protocol.get("version") is None else str(protocol["version"]),
        "status": of_folder(run, results), "reason": _reason(run, results),
        "started_utc": _when(run.get("started_utc"), f"{run_file}: started_utc"),
        "ended_utc": _when(run.get("ended_utc"), f"{run_file}: ended_utc"),
        "verdict": _verdict(run, results),
        "folder": str(folder), "host": (run.get("host") or {}).get("hostname"),
        "analysed_utc": _when(results.get("analysed_utc"), f"{results_file}: analysed_utc") if results else None,
        "source_sha256": digest.hexdigest(), "seed": _seed(run),
    }
    rows = []
    for result in (results or {}).get("results", []):
        subject = str(result.get("subject") or result.get("series") or result.get("kind", "?"))
        for name, m in (result.get("metrics") or {}).items():
            rows.append({
                "run_id": run_id, "series": result.get("series"), "subject": subject, "kind": str(result.get("kind", "")),
                "metric": str(name), "value": _number(m.get("value")), "unit": m.get("unit") or None,
                "verdict": str(m.get("verdict", "not judged")) if status == COMPLETED else "not judged",
                "limit_json": None if m.get("limit") is None else json.dumps(m["limit"], sort_keys=True),
            })
    return row, rows
