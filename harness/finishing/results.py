"""The analysis step of the finishing pipeline: analyse a run folder offline, from its files alone,
with the registered analyses (``harness.analyses.registry``; contract: ``harness.analysis.contract``):
metrics, verdicts against the protocol's acceptance limits, the QC annotations inside the analysed
OME-TIFFs, ``report.html`` and ``results.json``.

Each file run.json lists is offered to the analyses in registry order; the first whose ``applies``
says yes analyses it; an OME-TIFF none takes is listed as not analysed yet.

Endings: ``results.json`` has ``status`` ``analysed`` or ``analysis failed``. An analysis that
refuses its input (``BadInput``: values that are not finite, too few points, no variance, no
signal) or crashes fails for that file only: its result says why (``error``, verdict ``not judged``),
the other files are still analysed, and the results and the report are written with the error shown.
A run that did not complete (failed, aborted, interrupted) keeps its partial metrics, but they are
not judged: the measurement could not be completed, which is not a QC ``fail`` of the instrument.
``analyse_run`` raises ``UserError`` for a folder that is not a finished run (no run.json, still
running, files missing); ``write_failed_results`` records a failure of ``analyse_run`` itself.
"""

from __future__ import annotations

import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from harness import __version__
from harness.analyses import registry
from harness.analysis.contract import Analysis
from harness.analysis.judging import failed_result, not_judged
from harness.analysis.verdicts import overall
from harness.common.errors import BadInput, UserError
from harness.common.safe_paths import inside
from harness.protocol.protocol_file import Limit, ProtocolFile
from harness.records.endings import as_finished
from harness.records.provenance import sha256_file
from harness.records.run_folder import RUN_JSON, RunFolder
from harness.records.run_record import read_run, write_results, write_run
from harness.records.stack_check import damage_note
from harness.report.report import write_report

ANALYSED, ANALYSIS_FAILED = "analysed", "analysis failed"


def _limits(run: dict[str, Any]) -> dict[str, Limit]:
    protocol = ProtocolFile.model_validate(yaml.safe_load(run["protocol"]["text"]))
    return protocol.acceptance


def _analyse_file(analyses: list[Analysis], folder: Path, run: dict[str, Any], name: str, entry: dict[str, Any],
                  limits: dict[str, Limit]) -> list[dict[str, Any]] | None:
    """The results of the first analysis that takes the file; None if none does."""
    for analysis in analyses:
        if analysis.applies(folder, run, name, entry):
            return analysis.analyse(folder, name, entry, limits)
    return None


def analyse_run(folder: str | Path) -> dict[str, Any]:
    """Metrics and verdicts of a run folder; writes ``results.json`` next to ``run.json``."""
    folder = Path(folder)
    run_file = RunFolder(folder).run_json
    if not run_file.is_file():
        raise UserError(f"{folder}: not a run folder (no run.json)")
    try:
        recorded = read_run(folder).as_dict()
    except (OSError, ValueError) as exc:
        raise UserError(f"{run_file}: cannot read the run record ({exc})") from None
    run = as_finished(recorded)  # while finishing: judged by the acquisition's own outcome
    if run.get("status") == "running":
        raise UserError(f"{folder}: the run is still running, or its process was killed; for a killed run: microscope-qc recover {folder}")
    missing = [name for name in run.get("files", {}) if not inside(folder, name).is_file()]
    if missing:
        raise UserError(f"{folder}: files listed in run.json are missing: {', '.join(missing)} (restore them from a copy; run.json has their checksums)")
    changed = _changed_since_run(folder, run)
    errors: list[dict[str, str]] = []
    try:
        limits = _limits(run)
    except Exception as exc:  # the protocol text in run.json no longer reads: judge nothing, say why
        limits = {}
        errors.append({"source": RUN_JSON, "error": f"the protocol's acceptance limits cannot be read ({type(exc).__name__}: {exc})"})
    analyses = registry.analyses()
    results = []
    not_analysed = []
    for name, entry in sorted(run.get("files", {}).items()):
        kind = entry.get("kind")
        damage = damage_note(inside(folder, name), folder) if kind == "ome_tiff" else ""
        if damage:  # its XML was lost or never finished: say what to run, not a parser's traceback
            results.append(failed_result(name, kind, damage) | {"damaged": True})
            continue
        try:
            found = _analyse_file(analyses, folder, run, name, entry, limits)
            if found is not None:
                results.extend(found)
            elif kind == "ome_tiff":
                not_analysed.append(name)
        except BadInput as exc:  # the analysis refuses this file's data: say why, go on with the others
            results.append(failed_result(name, kind, str(exc)))
        except Exception as exc:  # a bug or an unreadable file: the same, with the details kept
            results.append(failed_result(name, kind, f"internal error: {type(exc).__name__}: {exc}") | {"traceback": traceback.format_exc()})
    errors += [{"source": f"{r['series']} ({r['subject']})" if r["subject"] != r["series"] else r["series"], "error": r["error"]}
               for r in results if r.get("error")]
    completed = run["status"] == "completed"
    if not completed:
        not_judged(results, f"partial data: the run {run['status']} ({run.get('reason') or 'no reason recorded'}); "
                             "a measurement that could not be completed is not judged")
    verdicts = [r["verdict"] for r in results]
    data = {
        "run_id": run["run_id"], "protocol": run["protocol"]["id"], "station": run["station"]["name"],
        "run_status": run["status"], "analysed_utc": datetime.now(timezone.utc).isoformat(), "tool_version": __version__,
        "status": ANALYSIS_FAILED if errors else ANALYSED,
        "conventions": registry.conventions({r["kind"] for r in results}), "results": results, "not_analysed": not_analysed,
        "files_changed_since_run": changed,
        "verdict": overall(verdicts) if results and completed else "not judged",
    }
    if errors:
        data["analysis_errors"] = errors
        data["analysis_error"] = "; ".join(f"{e['source']}: {e['error']}" for e in errors)
    if not completed:
        data["verdict_note"] = f"not judged: the run {run['status']}, the measurement could not be completed"
    elif results and data["verdict"] != "not judged":
        unjudged = [str(r.get("subject", r.get("series", ""))) for r in results  # a result the protocol sets limits for, none judged
                    if r["verdict"] == "not judged" and any(m.get("limit") for m in r.get("metrics", {}).values())]
        if unjudged:  # an overall pass must not hide a result that could not be judged
            data["verdict_note"] = f"{len(unjudged)} of {len(results)} results not judged: {', '.join(unjudged[:6])}{' ...' if len(unjudged) > 6 else ''}"
    try:
        data["annotated_files"] = []
        if any(str(r.get("series", "")).endswith(".ome.tif") for r in results):
            from harness.analysis import qc_annotations  # the OME model costs about a second of start-up: loaded only where an image stack is handled

            data["annotated_files"] = qc_annotations.annotate_run(folder, data, registry.NBO_NAMES)
    except Exception as exc:  # the results stand without the copy inside the OME-TIFFs; say so
        data["annotated_files"], data["annotation_error"] = [], f"{type(exc).__name__}: {exc}"
    _record_checksums(run_file, recorded, folder, [n for n in data["annotated_files"] if n not in changed])
    try:
        data["report"] = write_report(folder, run, data, registry.by_kind()).name
    except Exception as exc:  # the results are kept; the report can be redone with `analyze`
        data["report_error"] = f"{type(exc).__name__}: {exc}"
    write_results(folder, data)
    return data


def write_failed_results(folder: Path, reason: str) -> dict[str, Any] | None:
    """When ``analyse_run`` itself could not finish: a ``results.json`` that says so (status
    ``analysis failed``, the reason, nothing judged), so the store, ``history`` and the report show
    it; and a report with the error where possible. None if not even run.json can be read."""
    try:
        run = as_finished(read_run(folder).as_dict())
        data = {
            "run_id": run["run_id"], "protocol": run["protocol"]["id"], "station": run["station"]["name"],
            "run_status": run["status"], "analysed_utc": datetime.now(timezone.utc).isoformat(), "tool_version": __version__,
            "status": ANALYSIS_FAILED, "analysis_error": reason, "analysis_errors": [{"source": "analysis", "error": reason}],
            "conventions": registry.conventions(), "results": [], "not_analysed": [], "files_changed_since_run": [], "verdict": "not judged",
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        data["report"] = write_report(folder, run, data, registry.by_kind()).name
    except Exception as exc:  # the reason stays in results.json
        data["report_error"] = f"{type(exc).__name__}: {exc}"
    write_results(folder, data)
    return data


def _changed_since_run(folder: Path, run: dict[str, Any]) -> list[str]:
    """Data files whose content is not what the run recorded (run.json checksums): results from
    them are not the run's; they are named in results.json, the summary and the report."""
    changed = []
    for name, entry in run.get("files", {}).items():
        if entry.get("sha256") and sha256_file(folder / name) != entry["sha256"]:
            changed.append(name)
    return changed


def _record_checksums(run_file: Path, run: dict[str, Any], folder: Path, changed: list[str]) -> None:
    """The QC annotations change the files' XML (not their pixels): run.json keeps the checksum
    at acquisition and gets the current one. A file that had changed before is not re-recorded, so
    it stays flagged however often it is analysed."""
    if not changed:
        return
    for name in changed:
        entry = run["files"][name]
        entry.setdefault("sha256_acquired", entry.get("sha256"))
        entry["sha256"] = sha256_file(folder / name)
        entry["qc_annotated"] = True
    write_run(run_file.parent, run)


def summary(data: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"Results ({data['protocol']}, run {data['run_id'][:8]}): overall {data['verdict'].upper()}"
             + (f" ({data['verdict_note']})" if data.get("verdict_note") else "")]
    keys = registry.SUMMARY
    width = max([10] + [len(r["subject"]) for r in data["results"]])
    kind_width = max([9] + [len(r["kind"]) for r in data["results"]])
    for r in data["results"]:
        parts = []
        shown = list(keys.get(r["kind"], ()))
        shown += [k for k, m in r["metrics"].items() if m["verdict"] in ("warn", "fail") and k not in shown]  # what flags a result is always shown
        for k in shown:
            m = r["metrics"].get(k)
            if m and m["value"] is not None:
                mark = "" if m["verdict"] == "not judged" else f" [{m['verdict']}]"
                parts.append(f"{k} {m['value']:.4g}{(' ' + m['unit']) if m['unit'] else ''}{mark}")
        lines.append(f"  {r['subject']:>{width}} {r['kind']:<{kind_width}} {r['verdict']:<10} " + "; ".join(parts))
        undetermined = {m.get("reason", "") for k, m in r["metrics"].items()
                        if m["value"] is None and m.get("reason") and (m["limit"] or k in keys.get(r["kind"], ()))}
        names = [k for k, m in r["metrics"].items() if m["value"] is None and m.get("reason") and (m["limit"] or k in keys.get(r["kind"], ()))]
        if names:
            lines.append(f"  {'':>{width}} not determined: {', '.join(names)}: " + " | ".join(sorted(undetermined)))
        if r.get("verdict") in ("warn", "fail") and (r.get("data_quality") or {}).get("verdict") == "warn":
            lines.append(f"  {'':>{width}} data quality: " + "; ".join(r["data_quality"].get("reasons", [])))
    for e in data.get("analysis_errors", []):
        lines.append(f"  ANALYSIS FAILED for {e['source']}: {e['error']}")
    if data["not_analysed"]:
        lines.append(f"  not analysed yet: {', '.join(data['not_analysed'])}")
    corrections = [r["correction_image"] for r in data["results"] if r.get("correction_image")]
    if corrections:
        lines.append(f"  flat-field correction images: {', '.join(corrections)}")
    if data.get("files_changed_since_run"):
        lines.append(f"  WARNING: changed since the run recorded them (checksum differs from run.json): {', '.join(data['files_changed_since_run'])}")
    if data.get("annotation_error"):
        lines.append(f"  QC annotations NOT written into the OME-TIFFs: {data['annotation_error']}")
    if data.get("report_error"):
        lines.append(f"  report NOT written: {data['report_error']}")
    return "\n".join(lines)
