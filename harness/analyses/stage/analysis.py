"""The stage repeatability analysis (``harness.analyses.stage.REPEATABILITY``): an OME-TIFF stack
whose frame log has ``return`` frames; one result per move size (displacement of each return image
against its reference, ``harness.analysis.stage_metrics``). The report shows the displacement
scatter per approach direction, the table per direction and a line on the data quality.

Pixel quality (``harness.analysis.pixel_quality``, shared with ``iso230``): the frames a result
registers are read once for their saturated pixels (level from OME Pixels SignificantBits, else the
pixel type) and their mean; hot pixels are the one-pixel spikes of the mean of all frames used (no
dark frames here) and are filled from their neighbours before registering (a fixed pattern pulls
the registration towards no shift); saturated pixels are flagged (the result is at least ``warn``),
not excluded: registration uses the whole frame.

Raises ``BadInput`` for a stack without a pixel size in its OME-XML, and whatever the formulas refuse."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from harness.analyses.stack_pages import page, pixels_attribute, stack_saturation
from harness.analyses.stage import REPEATABILITY
from harness.analyses.stage import figures as plots
from harness.analysis import stage_metrics
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.frame_stats import FrameStats, frame_stats
from harness.analysis.judging import judged
from harness.analysis.metric import Metric
from harness.analysis.pixel_quality import (
    CONVENTION,
    DefectMap,
    PixelQuality,
    SaturationLevel,
    apply_quality,
    assess,
    fill_excluded,
    quality_line,
    quality_metrics,
    spike_defects,
)
from harness.analysis.stage_metrics import displacements, pair_frames, repeatability_metrics, repeatability_tables
from harness.common.errors import BadInput
from harness.protocol.protocol_file import Limit
from harness.records.run_folder import RunFolder, frame_log_name
from harness.records.series_writer import read_series
from harness.report.html_parts import e, figure, limit_value

HANDLING = ("hot pixels filled with the Gaussian-weighted mean of their neighbours before registering; "
            "saturated pixels flagged, not excluded (registration uses the whole frame)")


def has_tag(frames_csv: Path, tag: str) -> bool:
    """Whether a stack's frame log has a frame tagged ``tag`` (``return``, ``up``)."""
    return frames_csv.is_file() and any(r["tag"] == tag for r in read_series(frames_csv))


def pixel_size_um(tif: tifffile.TiffFile, stack: str) -> float:
    """The stack's pixel size (its one Image's Pixels ``PhysicalSizeX``, in um as the harness writes
    it), read with lxml: the stage analyses need nothing else from the XML, and ome-types takes about
    1 s per 1000 planes to parse it whole."""
    value = pixels_attribute(tif, "PhysicalSizeX")
    if value is None:
        raise BadInput(f"{stack}.ome.tif: its OME-XML gives no pixel size (Pixels PhysicalSizeX)")
    return float(value)


def group_stats(page: Any, groups: Mapping[str, list[int]], level: SaturationLevel) -> tuple[dict[str, FrameStats], DefectMap]:
    """Per group of pages (the frames one result uses): their mean and saturated pixels, one read of
    each page; and the hot pixels of the mean of all of them."""
    stats = {name: frame_stats((page(i) for i in ifds), level.adu) for name, ifds in groups.items() if ifds}
    count = sum(s.count for s in stats.values())
    mean = sum((s.mean * s.count for s in stats.values()), np.zeros(next(iter(stats.values())).mean.shape)) / count
    return stats, spike_defects(mean, count)


def quality_of(stats: FrameStats, defects: DefectMap, level: SaturationLevel) -> PixelQuality:
    saturated = stats.saturated if stats.saturated is not None else np.zeros(stats.mean.shape, dtype=bool)
    return assess(level, saturated, stats.count, defects, HANDLING, defects.mask)


def filled_reader(page: Any, defects: DefectMap) -> Any:
    """``page`` with the defect pixels filled from their neighbours."""
    mask = defects.mask
    if not mask.any():
        return page
    return lambda i: fill_excluded(page(i), mask)


def with_quality(metrics: Mapping[str, Metric], quality: PixelQuality) -> dict[str, Metric]:
    return {**metrics, **quality_metrics(quality)}


def page_reader(tif: tifffile.TiffFile) -> Any:
    """Page ``i`` of the stack as an array, read when asked."""
    return functools.partial(page, tif)


def analyse_repeatability(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    rows = read_series(RunFolder(folder).frame_log(stack))
    pairs = pair_frames(rows)
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        pixel_um = pixel_size_um(tif, stack)
        page = page_reader(tif)
        level = stack_saturation(tif)
        groups: dict[str, list[int]] = {}
        for ref, ret in pairs:
            groups.setdefault(str(json.loads(ret["context"] or "{}").get("size", "")), []).extend([int(ref["ifd"]), int(ret["ifd"])])
        stats, defects = group_stats(page, groups, level) if pairs else ({}, DefectMap({}, ()))
        found = displacements(pairs, filled_reader(page, defects), pixel_um)
    out = []
    for size, table in repeatability_tables(found).items():
        quality = quality_of(stats[size], defects, level)
        entries, verdict = judged(with_quality(repeatability_metrics(table), quality), limits)
        out.append(apply_quality({
            "series": f"{stack}.ome.tif", "kind": "stage_repeatability", "subject": f"{size} moves" if size else stack,
            "metrics": entries, "table": table, "displacements": [d for d in found if d["size"] == size],
            "verdict": verdict,
        }, quality))
    return out


class RepeatabilityAnalysis:
    spec: AnalysisSpec = REPEATABILITY
    conventions = (stage_metrics.__doc__ or "").split("Conventions", 1)[-1].strip().lstrip(": ") + "\n" + CONVENTION

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == "ome_tiff" and has_tag(folder / frame_log_name(entry["stack"]), "return")

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return analyse_repeatability(folder, entry["stack"], limits)

    def figures(self, folder: Path, result: Result) -> str:
        r = result
        if not r.get("displacements"):
            return ""
        return figure(plots.displacement_scatter(r["displacements"], f"stage repeatability, {r['subject']}", limit_value(r, "max_displacement_um", 1)),
                      f"{r['subject']}: displacement of each return image against its reference, by approach direction")

    def section(self, result: Result) -> list[str]:
        return [plots.stage_tables(result), *quality_section(result)]


def quality_section(result: Result) -> list[str]:
    """The report's data-quality line of a result (none for an old result without one)."""
    line = quality_line(result)
    return [f"<p class=muted>{e(result['subject'])}: {e(line)}</p>"] if line else []


ANALYSIS = RepeatabilityAnalysis()
