"""The co-registration analysis (``harness.analyses.coregistration.SPEC``): an OME-TIFF stack whose
frame log has rows tagged ``coregistration``: z-stacks of the same multi-colour beads, one per laser
line. The reference line is the line of the first z-stack acquired (the protocols put it first). Each
line's beads are found and fitted as for the PSF (``harness.analysis.bead_fits``, the rules from that
line's theoretical resolution); an accepted bead of a line is paired with an accepted bead of the
reference when they are mutual nearest neighbours in x-y within the match radius (the larger of 1 um
and 3 lateral FWHMs of the longer emission wavelength of the two). One result per line other than the
reference: the shifts of its bead centres against the reference's, their 3-D distance and MetroloJ_QC's
co-alignment ratio (``harness.analysis.psf_metrics``), and the pixel quality of both z-stacks.

Without a pair (no bead in either line, e.g. the Micro-Manager DemoCamera, whose image does not
change with focus; or no bead within the match radius) every shift metric is ``not judged`` with the
reason. A stack with one line only gives one result saying so. Raises ``BadInput`` as the PSF
analysis does (no pixel size, no objective NA)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.analyses.coregistration import SPEC
from harness.analyses.coregistration import figures as plots
from harness.analyses.psf import zstacks
from harness.analyses.psf.analysis import beads_of
from harness.analysis import psf_metrics
from harness.analysis.bead_fits import Bead
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.judging import failed_result, judged
from harness.analysis.pixel_quality import CONVENTION, PixelQuality, apply_quality, quality_line, quality_metrics
from harness.analysis.psf_metrics import MATCH_FWHM, Resolution, coregistration_metrics, match, resolution
from harness.common.errors import BadInput
from harness.protocol.protocol_file import Limit
from harness.report.html_parts import e, figure

TAG = "coregistration"
MATCH_MIN_UM = 1.0


@dataclasses.dataclass
class Line:
    subject: str
    channel: str
    res: Resolution
    beads: list[Bead]
    why: str
    quality: PixelQuality


def _both(a: PixelQuality, b: PixelQuality) -> PixelQuality:
    """The pixel quality of two z-stacks together (counts added)."""
    defects = {k: a.defects.get(k, 0) + b.defects.get(k, 0) for k in {**a.defects, **b.defects}}
    return dataclasses.replace(b, frames=a.frames + b.frames, saturated=a.saturated + b.saturated,
                               saturated_defects=a.saturated_defects + b.saturated_defects, defects=defects,
                               excluded=a.excluded + b.excluded, handling=b.handling + " (counts of both z-stacks added)")


def analyse_coregistration(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    lines: list[Line] = []
    failed: list[Result] = []
    with zstacks.open_bead_stack(folder, stack, TAG) as bs:
        tif, level, pixel_um, na, n, same = bs.tif, bs.level, bs.pixel_um, bs.na, bs.n, bs.same
        for zs in bs.stacks:
            try:
                res = resolution(zstacks.emission_nm(folder, zs.channel)[0], na, n)
                planes, quality = zstacks.read_planes(tif, zs, level)
            except (BadInput, ValueError) as exc:
                failed.append(failed_result(f"{stack}.ome.tif", "ome_tiff", str(exc)) | {"subject": zs.subject, "lines_on": [zs.channel]})
                continue
            found = beads_of(planes, pixel_um, zs.z_um, res, level.adu)
            if zs.subject in same:  # the same frames in two lines: a shift of 0 would be the camera's, not the optics'
                found = dataclasses.replace(found, beads=[], why=zstacks.identical_reason(zs.subject, same[zs.subject]))
            lines.append(Line(zs.subject, zs.channel, res, found.beads, found.why, quality))
    if len(lines) < 2:
        only = lines[0].subject if lines else "none"
        return failed + [{"series": f"{stack}.ome.tif", "kind": "coregistration", "subject": stack, "metrics": {}, "verdict": "not judged",
                          "note": f"co-registration needs z-stacks of two lines or more; analysed: {only}"}]
    ref = lines[0]
    results = [_pair(stack, ref, line, limits) for line in lines[1:]]
    every = [p for r in results for p in r.get("pairs", [])]
    if every:  # the vector maps of all lines on one scale (arrows and colours), so they compare at a glance
        scale, z_range = plots.exaggeration(every), max(abs(p["dz_um"]) for p in every)
        for r in results:
            r["map_scale"], r["map_z_um"] = scale, z_range
    return failed + results


def _pair(stack: str, ref: Line, line: Line, limits: Mapping[str, Limit]) -> Result:
    longer = line.res if line.res.emission_nm >= ref.res.emission_nm else ref.res
    radius = max(MATCH_MIN_UM, MATCH_FWHM * longer.lateral_um)
    pairs = match(ref.beads, line.beads, radius)
    accepted = {x.subject: sum(b.accepted for b in x.beads) for x in (ref, line)}
    why, count_judged = "", False
    if not pairs:
        for x in (ref, line):
            if not accepted[x.subject]:
                why = f"{x.subject}: " + (x.why or psf_metrics.psf_summary(x.beads, x.res)["fwhm_x_um"].reason)
                break
        else:
            why, count_judged = (f"no bead of {line.subject} within {radius:.3g} um of a bead of the reference {ref.subject} "
                                 f"({accepted[ref.subject]} and {accepted[line.subject]} beads accepted)"), True
    quality = _both(ref.quality, line.quality)
    entries, verdict = judged(coregistration_metrics(pairs, longer, why, count_judged) | quality_metrics(quality), limits)
    result: Result = {
        "series": f"{stack}.ome.tif", "kind": "coregistration", "subject": f"{line.subject} vs {ref.subject}",
        "lines_on": [ref.channel, line.channel], "reference": ref.channel, "line": line.channel,
        "emission_nm": {ref.channel: ref.res.emission_nm, line.channel: line.res.emission_nm},
        "reference_resolution": {"emission_nm": longer.emission_nm, "lateral_um": longer.lateral_um, "axial_metroloj_um": longer.axial_metroloj_um},
        "match_radius_um": radius, "beads_accepted": accepted,
        "pairs": [{"x_um": p.reference_um[0], "y_um": p.reference_um[1], "z_um": p.reference_um[2],
                   "dx_um": p.shift_um[0], "dy_um": p.shift_um[1], "dz_um": p.shift_um[2], "distance_um": p.distance_um,
                   "ratio": p.distance_um / psf_metrics.reference_distance_um(p.shift_um, longer)} for p in pairs],
        "metrics": entries, "verdict": verdict,
    }
    if why:
        result["note"] = why
    return apply_quality(result, quality)


class CoregistrationAnalysis:
    spec: AnalysisSpec = SPEC
    conventions = ("Reference: the line of the first z-stack acquired; shift = centre in the line - centre in the reference "
                   "(fitted Gaussian centres, um); beads paired as mutual nearest neighbours in x-y within max(1 um, "
                   f"{MATCH_FWHM:g} lateral FWHMs of the longer emission). "
                   + (psf_metrics.__doc__ or "").split("- Co-registration:", 1)[-1].strip() + "\n" + CONVENTION)

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == "ome_tiff" and zstacks.has_tag(folder, entry["stack"], TAG)

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return analyse_coregistration(folder, entry["stack"], limits)

    def figures(self, folder: Path, result: Result) -> str:
        if not result.get("pairs"):
            return ""
        png, scale = plots.vector_map(result)
        return figure(png, f"{result['subject']}: shift of each bead's centre (arrows: x-y shift x {scale:g}; colour: z shift)")

    def section(self, result: Result) -> list[str]:
        blocks = [plots.table(result)] if result.get("metrics") else []
        line = quality_line(result)
        if line:
            blocks.append(f"<p class=muted>{e(result['subject'])}: {e(line)}</p>")
        return blocks


ANALYSIS = CoregistrationAnalysis()
