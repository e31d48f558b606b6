"""The stage repeatability analysis (``harness.analyses.stage.REPEATABILITY``): an OME-TIFF stack
whose frame log has ``return`` frames; one result per move size (displacement of each return image
against its reference, ``harness.analysis.stage_metrics``). The report shows the displacement
scatter per approach direction and the table per direction.

Raises ``BadInput`` for a stack without a pixel size in its OME-XML, and whatever the formulas refuse."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import tifffile
from lxml import etree

from harness.analyses.stage import REPEATABILITY
from harness.analyses.stage import figures as plots
from harness.analysis import stage_metrics
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.judging import judged
from harness.analysis.stage_metrics import displacements, pair_frames, repeatability_metrics, repeatability_tables
from harness.common.errors import BadInput
from harness.protocol.protocol_file import Limit
from harness.records.run_folder import RunFolder, frame_log_name
from harness.records.series_writer import read_series
from harness.report.html_parts import figure, limit_value


def has_tag(frames_csv: Path, tag: str) -> bool:
    """Whether a stack's frame log has a frame tagged ``tag`` (``return``, ``up``)."""
    return frames_csv.is_file() and any(r["tag"] == tag for r in read_series(frames_csv))


def pixel_size_um(tif: tifffile.TiffFile, stack: str) -> float:
    """The stack's pixel size (its one Image's Pixels ``PhysicalSizeX``, in um as the harness writes
    it), read with lxml: the stage analyses need nothing else from the XML, and ome-types takes about
    1 s per 1000 planes to parse it whole."""
    root = etree.fromstring((tif.ome_metadata or "").encode("utf-8"))
    pixels = next(root.iter("{*}Pixels"), None)
    value = pixels.get("PhysicalSizeX") if pixels is not None else None
    if value is None:
        raise BadInput(f"{stack}.ome.tif: its OME-XML gives no pixel size (Pixels PhysicalSizeX)")
    return float(value)


def page_reader(tif: tifffile.TiffFile) -> Any:
    """Page ``i`` of the stack as an array, read when asked."""
    def page(i: int) -> np.ndarray:
        return cast(tifffile.TiffPage, tif.pages[i]).asarray()
    return page


def analyse_repeatability(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    rows = read_series(RunFolder(folder).frame_log(stack))
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        pixel_um = pixel_size_um(tif, stack)
        found = displacements(pair_frames(rows), page_reader(tif), pixel_um)
    out = []
    for size, table in repeatability_tables(found).items():
        entries, verdict = judged(repeatability_metrics(table), limits)
        out.append({
            "series": f"{stack}.ome.tif", "kind": "stage_repeatability", "subject": f"{size} moves" if size else stack,
            "metrics": entries, "table": table, "displacements": [d for d in found if d["size"] == size],
            "verdict": verdict,
        })
    return out


class RepeatabilityAnalysis:
    spec: AnalysisSpec = REPEATABILITY
    conventions = (stage_metrics.__doc__ or "").split("Conventions", 1)[-1].strip().lstrip(": ")

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
        return [plots.stage_tables(result)]


ANALYSIS = RepeatabilityAnalysis()
