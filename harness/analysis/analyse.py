"""Analyse a run folder offline, from its files alone: metrics, verdicts against the protocol's
acceptance limits, ``results.json``. Analysed so far: power series (stability and linearity) and
flat-field stacks (a stack with a dark channel), stage repeatability (reference/return frame pairs,
QUAREP WG6) and ISO 230-2 stacks (up/down images per target); other image stacks are listed as not analysed yet.

A series with one set point is a stability record; a series stepping through set points is a
linearity record (mean power per set point against the set point).

Endings: ``results.json`` has ``status`` ``analysed`` or ``analysis failed``. An analysis that
refuses its input (``BadInput``: values that are not finite, too few points, no variance, no
signal) or crashes fails for that file only: its result says why (``error``, verdict ``not judged``),
the other files are still analysed, and the results and the report are written with the error shown.
A run that did not complete (failed, aborted, interrupted) keeps its partial metrics, but they are
not judged: the measurement could not be completed, which is not a QC ``fail`` of the instrument.
"""

from __future__ import annotations

import math
import traceback
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness import __version__
from harness.analysis import flat_field_metrics as flat_field_metrics_module
from harness.analysis import power_metrics, stage_metrics
from harness.analysis.flat_field_metrics import BLUR_SIGMA_PX, flat_field_metrics, gaussian_blur
from harness.analysis.frame_stats import FrameStats, frame_stats
from harness.analysis.power_metrics import Metric, linearity_metrics, power_series_metrics
from harness.analysis.stage_metrics import displacements, iso230_metrics, pair_frames, repeatability_metrics, repeatability_tables
from harness.analysis.verdicts import judge, overall
from harness.common.errors import BadInput, UserError
from harness.common.safe_paths import inside
from harness.protocol.protocol_file import Limit, ProtocolFile
from harness.records.provenance import sha256_file
from harness.records.run_folder import RUN_JSON, RunFolder, frame_log_name
from harness.records.run_folder import correction_name as correction_file_name
from harness.records.run_record import read_run, write_results, write_run
from harness.records.series_writer import read_series
from harness.records.stack_check import damage_note

CONVENTIONS = "\n\n".join(
    f"{title}: " + (module.__doc__ or "").split("Conventions", 1)[-1].strip().lstrip(": ")
    for title, module in (("Power", power_metrics), ("Flat field", flat_field_metrics_module), ("Stage", stage_metrics))
) + "\n\nISO 230-2: " + " ".join((stage_metrics.iso230_metrics.__doc__ or "").split("\n\n", 1)[-1].split())


def _limits(run: dict[str, Any]) -> dict[str, Limit]:
    protocol = ProtocolFile.model_validate(yaml.safe_load(run["protocol"]["text"]))
    return protocol.acceptance


def _entry(name: str, metric: Metric, limits: dict[str, Limit]) -> dict[str, Any]:
    limit = limits.get(name)
    value = None if not math.isfinite(metric.value) else metric.value
    out = {
        "value": value, "unit": metric.unit,
        "limit": limit.model_dump(by_alias=True) if limit else None,
        "verdict": "not judged" if metric.reason else judge(metric.value, limit),
    }
    if metric.reason:
        out["reason"] = metric.reason
    return out


def _number(text: str | None) -> float:
    """A CSV cell as a number; an empty or unreadable cell is NaN (which the formulas refuse)."""
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _setpoint_mw(text: str) -> float:
    """``setpoint_mW`` of a series row: one line's set point, or ``a+b`` with several lines on (their
    sum); empty with no line on (NaN)."""
    parts = [_number(p) for p in text.split("+")] if text else [math.nan]
    return float(sum(parts))


def analyse_series(path: Path, limits: dict[str, Limit]) -> dict[str, Any]:
    rows = [r for r in read_series(path) if r["status"] == "ok"]
    if not rows:
        return {"series": path.name, "kind": "empty", "subject": path.stem, "metrics": {}, "verdict": "fail", "note": "no valid reading"}
    lines = sorted({r["lines_on"] for r in rows})
    # grouped by the set point as recorded (text): a float key would make every empty set point
    # (no line on: NaN) a group of its own, since NaN != NaN
    setpoints: OrderedDict[str, list[dict[str, str]]] = OrderedDict()
    for r in rows:
        setpoints.setdefault(r["setpoint_mW"] or "", []).append(r)
    subject = "no line on" if lines == ["none"] else f"{'+'.join(lines)} nm"
    if len(setpoints) > 1:
        s = np.array([_setpoint_mw(k) for k in setpoints])
        if not np.isfinite(s).all():
            raise BadInput(f"linearity: set points that are not numbers ({', '.join(repr(k) for k, v in zip(setpoints, s) if not math.isfinite(v))}): "
                           "a linearity series needs a line on at a known set point for every reading")
        p = np.array([np.mean([_number(r["power_W"]) for r in group]) * 1e3 for group in setpoints.values()])
        metrics = linearity_metrics(s, p)
        kind = "linearity"
        table = [{"setpoint_mw": float(k), "mean_power_mw": float(v)} for k, v in zip(s, p)]
    else:
        t = np.array([_number(r["time_s"]) for r in rows])
        p = np.array([_number(r["power_W"]) for r in rows])
        metrics = power_series_metrics(t, p)
        kind = "stability"
        table = []
    judged = {name: _entry(name, m, limits) for name, m in metrics.items()}
    missing = sum(1 for r in read_series(path) if r["status"] != "ok")
    out: dict[str, Any] = {
        "series": path.name, "kind": kind, "subject": subject, "lines_on": lines,
        "setpoints_mw": sorted(setpoints), "location": rows[0]["location"], "missing_readings": missing,
        "metrics": judged, "verdict": overall([m["verdict"] for m in judged.values()]),
    }
    if table:
        out["points"] = table
    return out


def _has_tag(frames_csv: Path, tag: str) -> bool:
    return frames_csv.is_file() and any(r["tag"] == tag for r in read_series(frames_csv))


def analyse_flat_field(folder: Path, stack: str, limits: dict[str, Limit]) -> list[dict[str, Any]]:
    """One result per lit channel: dark-subtracted mean image against the stack's dark channel.

    What the stack holds is decided from its OME planes first (which pages are real frames of which
    channel; a placeholder plane of a recovered stack is not a frame); then each channel's frames are
    read once, one page at a time, into running sums (``frame_stats``): memory does not grow with
    the number of frames, and a stack with no lit channel (or no dark one) has no pixel read at all."""
    import tifffile
    from ome_types import from_xml

    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        ome = from_xml(tif.ome_metadata)
        px = ome.images[0].pixels
        names = [c.name for c in px.channels]
        real = {td.ifd for td, plane in zip(px.tiff_data_blocks, px.planes) if not plane.annotation_refs}
        pages_of: dict[int, list[int]] = {}
        for td in px.tiff_data_blocks:
            if td.ifd in real:
                pages_of.setdefault(td.first_c, []).append(td.ifd)
        if "dark" not in names or names.index("dark") not in pages_of:
            return [{"series": f"{stack}.ome.tif", "kind": "flat_field", "subject": stack, "metrics": {}, "verdict": "fail", "note": "no dark frames"}]
        lit = [c for c, name in enumerate(names) if name != "dark" and c in pages_of]
        if not lit:
            return []

        def stats_of(c: int) -> FrameStats:
            return frame_stats(tif.pages[i].asarray() for i in pages_of[c])  # type: ignore[union-attr]

        dark = stats_of(names.index("dark"))
        out = []
        for c in lit:
            out.append(_flat_field_channel(folder, stack, ome, names[c], stats_of(c), dark, limits))
    return out


def _flat_field_channel(folder: Path, stack: str, ome: Any, name: str, frames: FrameStats, dark: FrameStats,
                        limits: dict[str, Limit]) -> dict[str, Any]:
    mean = frames.mean - dark.mean
    try:
        _check_signal(f"flat field {name} nm", mean, frames, dark)
        smoothed = gaussian_blur(mean)
        metrics, profiles = flat_field_metrics(smoothed, blur=False)
    except BadInput as exc:  # this channel only; the others are still analysed
        return _failed_result(f"{stack}.ome.tif", "ome_tiff", str(exc)) | {"subject": f"{name} nm", "lines_on": [name]}
    judged = {k: _entry(k, m, limits) for k, m in metrics.items()}
    entry = {
        "series": f"{stack}.ome.tif", "kind": "flat_field", "subject": f"{name} nm", "lines_on": [name],
        "frames": frames.count, "dark_frames": dark.count,
        "metrics": judged, "profiles": profiles, "verdict": overall([m["verdict"] for m in judged.values()]),
    }
    try:
        correction_name = correction_file_name(stack, name)
        from harness.analysis.flat_field_correction import (  # the OME model costs about a second of start-up: loaded only where an image stack is handled
            correction_image,
            write_correction,
        )

        write_correction(inside(folder, correction_name), correction_image(smoothed), ome, name, {
            "Frames": frames.count, "DarkFrames": dark.count,
            "GaussianBlurSigmaPx": BLUR_SIGMA_PX, "DarkSubtracted": "mean of the dark channel",
        })
        entry["correction_image"] = correction_name
    except ValueError as exc:
        entry["note"] = f"no correction image: {exc}"
    return entry


SIGNAL_TO_NOISE_MIN = 5.0


def _check_signal(what: str, signal: np.ndarray, lit: FrameStats, dark: FrameStats) -> None:
    """The lit frames must be brighter than the dark ones: the mean dark-subtracted signal at least
    ``SIGNAL_TO_NOISE_MIN`` x the noise of one pixel of the mean images (frame-to-frame SD of lit and
    dark pixels, over sqrt of the frame counts). Identical lit and dark frames (a camera that does not
    see the light, e.g. Micro-Manager's DemoCamera, which draws the same image with the lasers off)
    have no signal at all."""
    level = float(np.mean(signal))
    noise = math.sqrt(lit.variance_of_mean + dark.variance_of_mean)
    if not math.isfinite(level) or level <= 0 or level < SIGNAL_TO_NOISE_MIN * noise:
        same = bool(np.array_equal(lit.mean, dark.mean))
        raise BadInput(f"{what}: no signal above the dark level (mean lit - dark = {level:.4g} ADU, pixel noise {noise:.3g} ADU, "
                       f"needs at least {SIGNAL_TO_NOISE_MIN:g} x the noise)"
                       + ("; the lit frames are identical to the dark frames: the camera does not see this light" if same else
                          "; check the light path, the specimen and the exposure"))


def _pixel_size_um(tif: Any, stack: str) -> float:
    """The stack's pixel size (its one Image's Pixels ``PhysicalSizeX``, in um as the harness writes
    it), read with lxml: the stage analyses need nothing else from the XML, and ome-types takes about
    1 s per 1000 planes to parse it whole."""
    from lxml import etree

    root = etree.fromstring(tif.ome_metadata.encode("utf-8"))
    pixels = next(root.iter("{*}Pixels"), None)
    value = pixels.get("PhysicalSizeX") if pixels is not None else None
    if value is None:
        raise BadInput(f"{stack}.ome.tif: its OME-XML gives no pixel size (Pixels PhysicalSizeX)")
    return float(value)


def analyse_repeatability(folder: Path, stack: str, limits: dict[str, Limit]) -> list[dict[str, Any]]:
    import tifffile

    rows = read_series(RunFolder(folder).frame_log(stack))
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        pixel_um = _pixel_size_um(tif, stack)
        found = displacements(pair_frames(rows), lambda i: tif.pages[i].asarray(), pixel_um)
    out = []
    for size, table in repeatability_tables(found).items():
        judged = {k: _entry(k, m, limits) for k, m in repeatability_metrics(table).items()}
        out.append({
            "series": f"{stack}.ome.tif", "kind": "stage_repeatability", "subject": f"{size} moves" if size else stack,
            "metrics": judged, "table": table, "displacements": [d for d in found if d["size"] == size],
            "verdict": overall([m["verdict"] for m in judged.values()]),
        })
    return out


def analyse_iso230(folder: Path, stack: str, limits: dict[str, Limit]) -> list[dict[str, Any]]:
    import tifffile

    rows = read_series(RunFolder(folder).frame_log(stack))
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        pixel_um = _pixel_size_um(tif, stack)
        metrics, table = iso230_metrics(rows, lambda i: tif.pages[i].asarray(), pixel_um)
    judged = {k: _entry(k, m, limits) for k, m in metrics.items()}
    return [{
        "series": f"{stack}.ome.tif", "kind": "iso230", "subject": "x axis", "metrics": judged, "targets": table,
        "not_reported": "E, M, A: the sample gives no absolute position reference",
        "verdict": overall([m["verdict"] for m in judged.values()]),
    }]


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
    from harness.records.endings import as_finished

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
    results = []
    not_analysed = []
    for name, entry in sorted(run.get("files", {}).items()):
        kind = entry.get("kind")
        damage = damage_note(inside(folder, name), folder) if kind == "ome_tiff" else ""
        if damage:  # its XML was lost or never finished: say what to run, not a parser's traceback
            results.append(_failed_result(name, kind, damage) | {"damaged": True})
            continue
        try:
            if kind == "power_series":
                results.append(analyse_series(inside(folder, name), limits))
            elif kind == "ome_tiff" and "dark" in run["protocol"]["plan"]["stacks"].get(entry["stack"], {}).get("channels", []):
                results.extend(analyse_flat_field(folder, entry["stack"], limits))
            elif kind == "ome_tiff" and _has_tag(folder / frame_log_name(entry["stack"]), "return"):
                results.extend(analyse_repeatability(folder, entry["stack"], limits))
            elif kind == "ome_tiff" and _has_tag(folder / frame_log_name(entry["stack"]), "up"):
                results.extend(analyse_iso230(folder, entry["stack"], limits))
            elif kind == "ome_tiff":
                not_analysed.append(name)
        except BadInput as exc:  # the analysis refuses this file's data: say why, go on with the others
            results.append(_failed_result(name, kind, str(exc)))
        except Exception as exc:  # a bug or an unreadable file: the same, with the details kept
            results.append(_failed_result(name, kind, f"internal error: {type(exc).__name__}: {exc}") | {"traceback": traceback.format_exc()})
    errors += [{"source": f"{r['series']} ({r['subject']})" if r["subject"] != r["series"] else r["series"], "error": r["error"]}
               for r in results if r.get("error")]
    completed = run["status"] == "completed"
    if not completed:
        _not_judged(results, f"partial data: the run {run['status']} ({run.get('reason') or 'no reason recorded'}); "
                             "a measurement that could not be completed is not judged")
    verdicts = [r["verdict"] for r in results]
    data = {
        "run_id": run["run_id"], "protocol": run["protocol"]["id"], "station": run["station"]["name"],
        "run_status": run["status"], "analysed_utc": datetime.now(timezone.utc).isoformat(), "tool_version": __version__,
        "status": ANALYSIS_FAILED if errors else ANALYSED,
        "conventions": CONVENTIONS, "results": results, "not_analysed": not_analysed, "files_changed_since_run": changed,
        "verdict": overall(verdicts) if results and completed else "not judged",
    }
    if errors:
        data["analysis_errors"] = errors
        data["analysis_error"] = "; ".join(f"{e['source']}: {e['error']}" for e in errors)
    if not completed:
        data["verdict_note"] = f"not judged: the run {run['status']}, the measurement could not be completed"
    try:
        data["annotated_files"] = []
        if any(str(r.get("series", "")).endswith(".ome.tif") for r in results):
            from harness.analysis.qc_annotations import (
                annotate_run,  # the OME model costs about a second of start-up: loaded only where an image stack is handled
            )

            data["annotated_files"] = annotate_run(folder, data)
    except Exception as exc:  # the results stand without the copy inside the OME-TIFFs; say so
        data["annotated_files"], data["annotation_error"] = [], f"{type(exc).__name__}: {exc}"
    _record_checksums(run_file, recorded, folder, [n for n in data["annotated_files"] if n not in changed])
    try:
        from harness.report.report import write_report

        data["report"] = write_report(folder, run, data).name
    except Exception as exc:  # the results are kept; the report can be redone with `analyze`
        data["report_error"] = f"{type(exc).__name__}: {exc}"
    write_results(folder, data)
    return data


ANALYSED, ANALYSIS_FAILED = "analysed", "analysis failed"


def write_failed_results(folder: Path, reason: str) -> dict[str, Any] | None:
    """When ``analyse_run`` itself could not finish: a ``results.json`` that says so (status
    ``analysis failed``, the reason, nothing judged), so the store, ``history`` and the report show
    it; and a report with the error where possible. None if not even run.json can be read."""
    try:
        from harness.records.endings import as_finished

        run = as_finished(read_run(folder).as_dict())
        data = {
            "run_id": run["run_id"], "protocol": run["protocol"]["id"], "station": run["station"]["name"],
            "run_status": run["status"], "analysed_utc": datetime.now(timezone.utc).isoformat(), "tool_version": __version__,
            "status": ANALYSIS_FAILED, "analysis_error": reason, "analysis_errors": [{"source": "analysis", "error": reason}],
            "conventions": CONVENTIONS, "results": [], "not_analysed": [], "files_changed_since_run": [], "verdict": "not judged",
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        from harness.report.report import write_report

        data["report"] = write_report(folder, run, data).name
    except Exception as exc:  # the reason stays in results.json
        data["report_error"] = f"{type(exc).__name__}: {exc}"
    write_results(folder, data)
    return data


def _failed_result(source: str, kind: str | None, reason: str) -> dict[str, Any]:
    """The place of a result that could not be computed: not judged, with the reason."""
    what = {"power_series": "power series", "ome_tiff": "image stack"}.get(kind or "", kind or "file")
    return {"series": source, "kind": "analysis failed", "subject": source, "metrics": {}, "verdict": "not judged",
            "error": reason, "note": f"{what} not analysed: {reason}"}


def _not_judged(results: list[dict[str, Any]], reason: str) -> None:
    """Partial metrics of a run that did not complete: values kept, verdicts not given."""
    for r in results:
        for m in r.get("metrics", {}).values():
            if m.get("verdict") != "not judged":
                m["verdict"], m["reason"] = "not judged", reason
        r["verdict"] = "not judged"
        r.setdefault("note", reason)


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
    keys = {
        "stability": ("stability_pct", "cv_pct", "noise_pct", "drift_pct_per_h", "mean_mw"),
        "linearity": ("r_squared", "max_relative_deviation_pct", "slope"),
        "flat_field": ("uniformity_pct", "field_uniformity_pct", "centering_accuracy_pct", "cv_pct"),
        "stage_repeatability": ("max_displacement_um", "sd_x_um", "sd_y_um"),
        "iso230": ("bidirectional_repeatability_R_um", "reversal_B_um"),
    }
    width = max([10] + [len(r["subject"]) for r in data["results"]])
    kind_width = max([9] + [len(r["kind"]) for r in data["results"]])
    for r in data["results"]:
        parts = []
        for k in keys.get(r["kind"], ()):
            m = r["metrics"].get(k)
            if m and m["value"] is not None:
                mark = "" if m["verdict"] == "not judged" else f" [{m['verdict']}]"
                parts.append(f"{k} {m['value']:.4g}{(' ' + m['unit']) if m['unit'] else ''}{mark}")
        lines.append(f"  {r['subject']:>{width}} {r['kind']:<{kind_width}} {r['verdict']:<10} " + "; ".join(parts))
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
