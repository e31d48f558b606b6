"""The focus analysis (``harness.analyses.focus.SPEC``). It takes an OME-TIFF stack whose frame log has
- ``focus`` or ``z_calibration`` planes: z-stacks (OME Pixels SizeZ planes each); one
  ``focus_stability`` result per channel (for ``z_calibration`` z-stacks: the focus over a Z
  repeatability run, subject "... calibration z-stacks");
- ``z_reference``/``z_return`` frames: single frames located against the ``z_calibration`` z-stacks of
  another stack of the same run (read from the folder); one ``z_repeatability`` result per move size
  (and channel when there are several).
Formulas and conventions: ``harness.analysis.focus_metrics``. The report shows the focal position
over time with its line and a few focus curves, or the return errors per direction and their table,
and a line on the data quality.

Pixel quality (``harness.analysis.pixel_quality``, as the stage analysis): the planes or frames a
result uses are read once for their saturated pixels and their mean; hot pixels are the one-pixel
spikes of that mean (no dark frames) and are filled from their neighbours before the sharpness is
computed (the calibration planes of a Z repeatability with the same pixels as its frames, so that
both sharpnesses are comparable); saturated pixels are flagged (the result is at least ``warn``),
not excluded.

A result whose focal positions could not be determined (e.g. a camera whose image does not change
with Z) or whose frames could not be located is returned with its metrics not judged and the reason.
Raises ``BadInput`` for a z-stack stack without OME SizeZ, for reference/return frames without a
calibration stack in the run or with planes of another size, and for a stack with no recorded plane."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from harness.analyses.focus import SPEC
from harness.analyses.focus import figures as plots
from harness.analyses.stack_pages import pixels_attribute, stack_saturation
from harness.analyses.stage.analysis import filled_reader, group_stats, page_reader, quality_section, with_quality
from harness.analysis import focus_metrics as fm
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.frame_stats import FrameStats
from harness.analysis.judging import judged
from harness.analysis.metric import Metric
from harness.analysis.pixel_quality import CONVENTION, DefectMap, PixelQuality, SaturationLevel, apply_quality, assess
from harness.common.errors import BadInput
from harness.protocol.protocol_file import Limit
from harness.records.run_folder import RunFolder, frame_log_name
from harness.records.series_writer import read_series
from harness.report.html_parts import e, figure, limit_value, num

STABILITY_TAGS = ("focus", "z_calibration")
REPEATABILITY_TAGS = ("z_reference", "z_return")
CALIBRATION_TAG = "z_calibration"
HANDLING = ("hot pixels filled with the Gaussian-weighted mean of their neighbours before the sharpness is computed; "
            "saturated pixels flagged, not excluded (the sharpness uses the whole frame)")


def stack_tags(frames_csv: Path) -> set[str]:
    """The tags of a stack's frame log (none for a missing log)."""
    return {r["tag"] for r in read_series(frames_csv)} if frames_csv.is_file() else set()


def planes_per_stack(tif: tifffile.TiffFile, stack: str) -> int:
    value = pixels_attribute(tif, "SizeZ")
    if value is None or not value.isdigit():
        raise BadInput(f"{stack}.ome.tif: its OME-XML gives no number of planes per z-stack (Pixels SizeZ): not z-stacks")
    return int(value)


def channel_label(channel: str) -> str:
    return f"{channel} nm" if channel and channel[0].isdigit() else channel


def quality(stats: FrameStats, defects: DefectMap, level: SaturationLevel) -> PixelQuality:
    saturated = stats.saturated if stats.saturated is not None else np.zeros(stats.mean.shape, dtype=bool)
    return assess(level, saturated, stats.count, defects, HANDLING, defects.mask)


def stack_record(s: fm.ZStack) -> dict[str, Any]:
    """What results.json keeps of one z-stack: when, where its focus is, and its focus curve."""
    f = s.focus or fm.FocusFit(math.nan, reason="not measured")
    out: dict[str, Any] = {"index": s.index, "tag": s.tag, "time_s": _finite(s.time_s), "z_um": _finite(f.z_um),
                           "se_um": _finite(f.se_um), "fwhm_um": _finite(f.fwhm_um), "planes": len(s.rows)}
    if f.reason:
        out["reason"] = f.reason
    if s.curve:
        out["curve"] = {"z_um": [round(v, 5) for v in s.curve["z_um"]], "sharpness": [float(f"{v:.6g}") for v in s.curve["sharpness"]]}
        if f.determined:
            out["model"], out["window_um"] = list(f.model), list(f.window_um)
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _why_none(stacks: list[fm.ZStack]) -> str:
    reasons = [s.focus.reason for s in stacks if s.focus is not None and s.focus.reason]
    return f"no z-stack with a focal position ({len(stacks)} z-stacks; the first: {reasons[0]})" if reasons else "no z-stack"


def analyse_focus(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    rows = read_series(RunFolder(folder).frame_log(stack))
    tags = {r["tag"] for r in rows}
    out: list[Result] = []
    if tags & set(STABILITY_TAGS):
        out += analyse_stability(folder, stack, rows, limits)
    if tags & set(REPEATABILITY_TAGS):
        out += analyse_repeatability(folder, stack, rows, limits)
    return out


def measured_stacks(tif: tifffile.TiffFile, stack: str, rows: list[dict[str, str]], tags: tuple[str, ...],
                    defects: DefectMap | None = None) -> tuple[list[fm.ZStack], dict[str, FrameStats], DefectMap, SaturationLevel]:
    """The z-stacks of ``rows`` with ``tags``, their focus curves measured (hot pixels filled: ``defects``, else
    the spikes of their own planes), and the pixel statistics per channel."""
    nz = planes_per_stack(tif, stack)
    page = page_reader(tif)
    level = stack_saturation(tif)
    stacks = fm.z_stacks(rows, nz, tags)
    groups: dict[str, list[int]] = {}
    for s in stacks:
        groups.setdefault(s.channel, []).extend(int(r["ifd"]) for r in s.rows)
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise BadInput(f"{stack}: no plane of a {' / '.join(tags)} z-stack was recorded")
    stats, own = group_stats(page, groups, level)
    read = filled_reader(page, defects if defects is not None else own)
    for s in stacks:
        fm.measure(s, read)
    return stacks, stats, own, level


def analyse_stability(folder: Path, stack: str, rows: list[dict[str, str]], limits: Mapping[str, Limit]) -> list[Result]:
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        stacks, stats, defects, level = measured_stacks(tif, stack, rows, STABILITY_TAGS)
    out = []
    for channel in dict.fromkeys(s.channel for s in stacks):
        mine = [s for s in stacks if s.channel == channel]
        found = [s for s in mine if s.focus is not None and s.focus.determined]
        metrics, line = fm.stability_metrics([s.time_s for s in found], [s.focus.z_um for s in found if s.focus is not None])
        if not found:
            why = _why_none(mine)
            metrics = {k: m if k == "focus_stacks" else Metric(math.nan, m.unit, why) for k, m in metrics.items()}
        q = quality(stats[channel], defects, level) if channel in stats else None
        entries, verdict = judged(with_quality(metrics, q) if q else metrics, limits)
        calibration = {s.tag for s in mine} == {"z_calibration"}
        result: Result = {
            "series": f"{stack}.ome.tif", "kind": "focus_stability",
            "subject": channel_label(channel) + (", calibration z-stacks" if calibration else ""), "metrics": entries,
            "line": line, "stacks": [stack_record(s) for s in mine], "verdict": verdict,
        }
        if len(found) < len(mine):
            result["note"] = f"{len(mine) - len(found)} of {len(mine)} z-stacks without a focal position (their reasons in 'stacks')"
        out.append(apply_quality(result, q) if q else result)
    return out


def calibration_stacks(folder: Path, own: str) -> list[str]:
    """The other stacks of the run folder whose frame log has z_calibration planes."""
    run = RunFolder(folder)
    return [name for name in run.frame_log_stacks() if name != own and CALIBRATION_TAG in stack_tags(run.frame_log(name))]


def analyse_repeatability(folder: Path, stack: str, rows: list[dict[str, str]], limits: Mapping[str, Limit]) -> list[Result]:
    run = RunFolder(folder)
    frames = [r for r in rows if r["tag"] in REPEATABILITY_TAGS]
    with tifffile.TiffFile(run.stack(stack)) as tif:
        page = page_reader(tif)
        level = stack_saturation(tif)
        groups: dict[str, list[int]] = {}
        for r in frames:
            if r["status"] == "ok":
                groups.setdefault(str(json.loads(r["context"] or "{}").get("size", "")), []).append(int(r["ifd"]))
        if not groups:
            raise BadInput(f"{stack}: no z_reference or z_return frame was recorded")
        stats, defects = group_stats(page, groups, level)
        read = filled_reader(page, defects)
        shape = read(int(frames[0]["ifd"]) if frames[0]["status"] == "ok" else next(iter(groups.values()))[0]).shape
        calibrations: dict[str, list[fm.Calibration]] = {}
        for name in calibration_stacks(folder, stack):
            with tifffile.TiffFile(run.stack(name)) as cal_tif:
                if page_reader(cal_tif)(0).shape != shape:
                    raise BadInput(f"{name}.ome.tif: its planes are {page_reader(cal_tif)(0).shape[::-1]} px, the {stack} frames "
                                   f"{shape[::-1]} px: a frame is located against a calibration z-stack of the same region")
                cal_stacks, *_ = measured_stacks(cal_tif, name, read_series(run.frame_log(name)), (CALIBRATION_TAG,), defects)
            for s in cal_stacks:
                f = s.focus or fm.FocusFit(math.nan, reason="not measured")
                calibrations.setdefault(s.channel, []).append(fm.calibrate(s.curve.get("z_um", []), s.curve.get("sharpness", []), f, s.index, s.time_s))
        if not calibrations:
            raise BadInput(f"{stack}: z_reference/z_return frames, but no stack of the run has z_calibration z-stacks to locate them against")
        sharp = {int(r["ifd"]): fm.normalised_variance(read(int(r["ifd"]))) for r in frames if r["status"] == "ok"}
    channels = list(dict.fromkeys(r["channel"] for r in frames))
    out = []
    for channel in channels:
        cals = sorted(calibrations.get(channel, []), key=lambda c: c.time_s)
        errors = fm.frame_return_errors([r for r in frames if r["channel"] == channel], cals, lambda r: sharp[int(r["ifd"])])
        located = [x for x in errors if math.isfinite(x["dz_um"])]
        tables = fm.z_tables(located) if located else {}
        for size in dict.fromkeys(x["size"] for x in errors) or {"": None}:
            mine = [x for x in errors if x["size"] == size]
            if size in tables:
                metrics = fm.z_repeatability_metrics(tables[size])
            else:
                why = next((x["reason"] for x in mine if x.get("reason")), "no z_reference/z_return pair")
                metrics = {k: Metric(math.nan, "um", f"no return error located ({len(mine)} pairs; the first: {why})")
                           for k in ("max_displacement_um", "sd_z_um", "mean_z_um")}
                metrics["pairs"] = Metric(0.0, "")
            q = quality(stats[size], defects, level) if size in stats else None
            entries, verdict = judged(with_quality(metrics, q) if q else metrics, limits)
            subject = (f"{size} moves" if size else stack) + (f", {channel_label(channel)}" if len(channels) > 1 else "")
            result: Result = {
                "series": f"{stack}.ome.tif", "kind": "z_repeatability", "subject": subject, "metrics": entries,
                "table": tables.get(size, {}), "errors": [{k: _json_number(v) for k, v in x.items()} for x in mine],
                "calibrations": [calibration_record(c) for c in cals], "verdict": verdict,
            }
            lost = sum(1 for x in mine if not math.isfinite(x["dz_um"]))
            if lost:
                result["note"] = f"{lost} of {len(mine)} pairs not located (their reasons in 'errors')"
            out.append(apply_quality(result, q) if q else result)
    return out


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def calibration_record(c: fm.Calibration) -> dict[str, Any]:
    keys = ("amplitude", "z0_um", "hwhm_um", "shape_m", "constant")
    out: dict[str, Any] = {"index": c.index, "time_s": _json_number(c.time_s), **{k: _json_number(v) for k, v in zip(keys, c.params, strict=True)}}
    if c.reason:
        out["reason"] = c.reason
    return out


class FocusAnalysis:
    spec: AnalysisSpec = SPEC
    conventions = " ".join((fm.__doc__ or "").split("Conventions", 1)[-1].split()).lstrip(": ") + "\n" + CONVENTION

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == "ome_tiff" and bool(stack_tags(folder / frame_log_name(entry["stack"])) & {*STABILITY_TAGS, *REPEATABILITY_TAGS})

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return analyse_focus(folder, entry["stack"], limits)

    def figures(self, folder: Path, result: Result) -> str:
        r, parts = result, []
        if r["kind"] == "focus_stability":
            if any(s.get("curve") for s in r.get("stacks", [])):
                parts.append(figure(plots.focus_stability(r["stacks"], r.get("line", {}), f"focal position, {r['subject']}"),
                                    f"{r['subject']}: focal position of each z-stack (error bars: standard error of the fit) and the "
                                    "least-squares line; normalised variance against Z drive position of the first, middle and last "
                                    "z-stacks with the fitted Gaussian"))
        elif any(x.get("dz_um") is not None for x in r.get("errors", [])):
            rows = [x for x in r["errors"] if x.get("dz_um") is not None]
            parts.append(figure(plots.return_errors(rows, f"Z repeatability, {r['subject']}", limit_value(r, "max_displacement_um", 1)),
                                f"{r['subject']}: return error of each z_return frame against its z_reference frame, by direction"))
        return "".join(parts)

    def section(self, result: Result) -> list[str]:
        out = [plots.z_table(result)] if result["kind"] == "z_repeatability" and result.get("table") else []
        missing = [s for s in result.get("stacks", []) if s.get("reason")]
        if missing:
            out.append(f"<p class=muted>{e(result['subject'])}: {len(missing)} z-stack(s) without a focal position; "
                       f"the first ({num(missing[0]['index'])}): {e(missing[0]['reason'])}</p>")
        unlocated = [x for x in result.get("errors", []) if x.get("reason")]
        if unlocated:
            out.append(f"<p class=muted>{e(result['subject'])}: {len(unlocated)} pair(s) not located; the first: {e(unlocated[0]['reason'])}</p>")
        return out + quality_section(result)


ANALYSIS = FocusAnalysis()
