"""The ISO 230-2 analysis (``harness.analyses.stage.ISO230``): an OME-TIFF stack whose frame log
has ``up`` frames (images at each target, approached up and down); one result for the x axis
(``harness.analysis.stage_metrics.iso230_metrics``). The report shows the deviations per target and
their table, and a line on the data quality (pixel quality as ``analysis`` states it: the frames of
the targets used).

Raises ``BadInput`` for a stack without a pixel size in its OME-XML, and whatever the formulas refuse."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tifffile

from harness.analyses.stack_pages import stack_saturation
from harness.analyses.stage import ISO230
from harness.analyses.stage import figures as plots
from harness.analyses.stage.analysis import (
    filled_reader,
    group_stats,
    has_tag,
    page_reader,
    pixel_size_um,
    quality_of,
    quality_section,
    with_quality,
)
from harness.analysis import stage_metrics
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.judging import judged
from harness.analysis.pixel_quality import CONVENTION, apply_quality
from harness.common.errors import BadInput
from harness.protocol.protocol_file import Limit
from harness.records.run_folder import RunFolder, frame_log_name
from harness.records.series_writer import read_series
from harness.report.html_parts import e, figure


def analyse_iso230(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    rows = read_series(RunFolder(folder).frame_log(stack))
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        pixel_um = pixel_size_um(tif, stack)
        page = page_reader(tif)
        level = stack_saturation(tif)
        used = [int(r["ifd"]) for r in stage_metrics.iso230_rows(rows)]
        if not used:
            raise BadInput("ISO 230-2: no target with an up-approach image")
        stats, defects = group_stats(page, {"all": used}, level)
        metrics, table = stage_metrics.iso230_metrics(rows, filled_reader(page, defects), pixel_um)
    quality = quality_of(stats["all"], defects, level)
    entries, verdict = judged(with_quality(metrics, quality), limits)
    return [apply_quality({
        "series": f"{stack}.ome.tif", "kind": "iso230", "subject": "x axis", "metrics": entries, "targets": table,
        "not_reported": "E, M, A: the sample gives no absolute position reference",
        "verdict": verdict,
    }, quality)]


class Iso230Analysis:
    spec: AnalysisSpec = ISO230
    conventions = " ".join((stage_metrics.iso230_metrics.__doc__ or "").split("\n\n", 1)[-1].split()) + "\n" + CONVENTION

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == "ome_tiff" and has_tag(folder / frame_log_name(entry["stack"]), "up")

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return analyse_iso230(folder, entry["stack"], limits)

    def figures(self, folder: Path, result: Result) -> str:
        if not result.get("targets"):
            return ""
        return figure(plots.iso230(result["targets"], "ISO 230-2 deviations per target"),
                      "deviation from the first up-approach image at each target (mean +- 2 s per direction)")

    def section(self, result: Result) -> list[str]:
        out = [plots.iso_table(result["targets"])] if result.get("targets") else []
        if result.get("not_reported"):
            out.append(f"<p class=muted>Not reported: {e(result['not_reported'])}</p>")
        return out + quality_section(result)


ANALYSIS = Iso230Analysis()
