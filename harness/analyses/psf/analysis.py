"""The PSF analysis (``harness.analyses.psf.SPEC``): an OME-TIFF stack whose frame log has rows tagged
``psf`` (z-stacks, ``harness.analyses.psf.zstacks``). One result per z-stack (one per laser line in the
protocols): its beads found and judged (``harness.analysis.bead_fits``), their FWHMs summarised against
the theoretical widefield resolution for the objective and the line's emission
(``harness.analysis.psf_metrics``), the rejected beads counted by reason, the pixel quality of its
planes (``harness.analysis.pixel_quality``: ``saturated_pixels``, ``defect_pixels``, ``data_quality``).

A z-stack without any accepted bead gives every bead metric ``not judged`` with the reason (no bead
found: the planes are all the same image, e.g. Micro-Manager's DemoCamera, whose image does not change
with focus; no spot in the projection; or every bead rejected, with the counts). The report shows
the accepted beads (XY and XZ maximum projections), the fitted profiles of the median bead and a
table per line.

Raises ``BadInput`` (the file's result is then ``analysis failed``) for a stack without a pixel size
or an objective NA, and for a channel that is not one laser line."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from harness.analyses.psf import SPEC, zstacks
from harness.analyses.psf import figures as plots
from harness.analyses.stack_pages import page
from harness.analysis import bead_fits, psf_metrics
from harness.analysis.bead_fits import Bead, Rules, detect, reason_counts, rules_for
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.judging import failed_result, judged
from harness.analysis.pixel_quality import CONVENTION, apply_quality, quality_line, quality_metrics
from harness.analysis.psf_metrics import Resolution, psf_summary, resolution
from harness.common.errors import BadInput
from harness.protocol.protocol_file import Limit
from harness.records.run_folder import RunFolder
from harness.report.html_parts import e, figure

TAG = "psf"
MAX_LISTED = 200  # beads listed in results.json per result


def bead_entry(b: Bead) -> dict[str, Any]:
    """One bead as results.json lists it (um; None where not fitted)."""
    out: dict[str, Any] = {"x_px": b.x_px, "y_px": b.y_px, "z_index": b.z_index, "accepted": b.accepted,
                           "reason": b.reason, "detail": b.detail, "snr": zstacks.finite(b.snr)}
    for axis in "xyz":
        f = b.fits.get(axis)
        out[f"{axis}_um"] = zstacks.finite(f.centre_um) if f else None
        out[f"fwhm_{axis}_um"] = zstacks.finite(f.fwhm_um) if f else None
        out[f"r2_{axis}"] = zstacks.finite(f.r2) if f else None
        out[f"fit_{axis}"] = [f.offset, f.amplitude] if f else None  # offset and Gaussian peak (ADU)
        if f and axis != "z":
            out[f"fwhm_{axis}_plain_um"] = zstacks.finite(f.fwhm_plain_um)
    return out


@dataclass
class Found:
    """The beads of one z-stack, the rules used, the satellites left out, and why there is no bead
    (``""`` when some were found)."""

    beads: list[Bead]
    rules: Rules
    satellites: int
    why: str


def beads_of(planes: np.ndarray, pixel_um: float, z_um: list[float], res: Resolution, saturation: float) -> Found:
    """Find and judge the beads of one z-stack (rules from ``res`` and the stack's z extent)."""
    blur = (z_um[-1] - z_um[0]) / 2 * res.na / math.sqrt(res.n**2 - res.na**2) if len(z_um) > 1 else 0.0
    rules = rules_for(pixel_um, res.lateral_um, res.axial_um, saturation, blur_um=blur)
    if bead_fits.planes_identical(planes):
        return Found([], rules, 0, zstacks.no_bead_reason(planes, 0))
    beads, satellites = detect(planes, pixel_um, z_um, rules)
    return Found(beads, rules, satellites, zstacks.no_bead_reason(planes, len(beads)))


def analyse_psf(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    out: list[Result] = []
    with zstacks.open_bead_stack(folder, stack, TAG) as bs:
        tif, level, pixel_um, na, n, optics_source, same = bs.tif, bs.level, bs.pixel_um, bs.na, bs.n, bs.optics_source, bs.same
        for zs in bs.stacks:
            try:
                emission, emission_source = zstacks.emission_nm(folder, zs.channel)
                res = resolution(emission, na, n)
                planes, quality = zstacks.read_planes(tif, zs, level)
            except (BadInput, ValueError) as exc:
                out.append(failed_result(f"{stack}.ome.tif", "ome_tiff", str(exc)) | {"subject": zs.subject, "lines_on": [zs.channel]})
                continue
            found = beads_of(planes, pixel_um, zs.z_um, res, level.adu)
            beads, rules, why = found.beads, found.rules, found.why
            if zs.subject in same:  # no bead of these frames is this line's: none is judged
                beads, why = [], zstacks.identical_reason(zs.subject, same[zs.subject])
            metrics = psf_summary(beads, res, why) | quality_metrics(quality)
            entries, verdict = judged(metrics, limits)
            result: Result = {
                "series": f"{stack}.ome.tif", "kind": "psf", "subject": zs.subject, "lines_on": [zs.channel],
                "metrics": entries, "verdict": verdict,
                "emission_nm": emission, "emission_source": emission_source,
                "optics": {"na": na, "immersion_index": n, "source": optics_source},
                "theory": {"lateral_um": res.lateral_um, "axial_um": res.axial_um, "axial_metroloj_um": res.axial_metroloj_um},
                "pixel_um": pixel_um, "z_um": zs.z_um, "ifds": zs.ifds, "planes_missing": zs.missing,
                "rules": rules.text(), "box_half_px": rules.box_half_px, "rejections": reason_counts(beads), "satellites": found.satellites,
                "beads": [bead_entry(b) for b in sorted(beads, key=lambda b: not b.accepted)[:MAX_LISTED]],
            }
            if why:
                result["note"] = why
            out.append(apply_quality(result, quality))
    return out


class PsfAnalysis:
    spec: AnalysisSpec = SPEC
    conventions = ((psf_metrics.__doc__ or "").split("Conventions:", 1)[-1].strip() + "\n"
                   + (bead_fits.__doc__ or "").split("\n\n", 1)[-1].strip() + "\n" + CONVENTION)

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == "ome_tiff" and zstacks.has_tag(folder, entry["stack"], TAG)

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return analyse_psf(folder, entry["stack"], limits)

    def figures(self, folder: Path, result: Result) -> str:
        accepted = [b for b in result.get("beads", []) if b["accepted"]]
        if not accepted:
            return ""
        with tifffile.TiffFile(RunFolder(folder).stack(result["series"].removesuffix(".ome.tif"))) as tif:
            planes = np.stack([page(tif, i) for i in result["ifds"]]).astype(np.float32)
        out = figure(plots.gallery(planes, accepted, result), f"{result['subject']}: accepted beads, XY and XZ maximum projections at one scale "
                     "(XZ cropped to 2 axial FWHMs either side) "
                     f"({len(accepted)} accepted; at most {plots.GALLERY} shown)")
        median = sorted(accepted, key=lambda b: b["fwhm_x_um"] or math.inf)[len(accepted) // 2]
        out += figure(plots.profiles(planes, median, result), f"{result['subject']}: profiles through the bead of median x FWHM and their "
                      "fits (pixel-integrated Gaussian for x and y, Gaussian for z)")
        return out

    def section(self, result: Result) -> list[str]:
        blocks = [plots.table(result)]
        line = quality_line(result)
        if line:
            blocks.append(f"<p class=muted>{e(result['subject'])}: {e(line)}</p>")
        return blocks


ANALYSIS = PsfAnalysis()
