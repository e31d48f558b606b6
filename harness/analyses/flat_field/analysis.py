"""The flat-field analysis (``harness.analyses.flat_field``): an OME-TIFF stack whose plan has a
``dark`` channel. One result per lit channel: the dark-subtracted mean image, smoothed, measured by
``harness.analysis.flat_field_metrics``; its correction image is written next to it
(``<stack>_<channel>_flatfield_correction.ome.tif``). The report shows the heat map and profiles,
and a line on the data quality.

Pixel quality (``harness.analysis.pixel_quality``): the saturation level comes from the stack's OME
Pixels SignificantBits (else its pixel type); saturated pixels are counted in the channel's frames
and the dark frames; hot and noisy pixels are found in the dark frames, dead or stuck ones in the
channel's dark-subtracted mean. Defect and saturated pixels are excluded: the smoothed image (the
metrics and the correction image) takes the Gaussian-weighted mean of the good pixels around each
pixel (``masked_blur``), so a hot pixel leaves no dip. A channel whose signal itself is saturated is
at least ``warn`` (the metrics rest on clipped data); with more than 0.1 % of the signal's pixels
saturated, the field's shape is not in the data: its metrics are not determined (with the reason) and
no correction image is written.

A stack with no dark frames is one ``fail`` result ("no dark frames"); a channel whose lit frames are
not brighter than the dark ones (``BadInput``) fails that channel only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import tifffile

from harness.analyses.flat_field import SPEC
from harness.analyses.flat_field import figures as plots
from harness.analyses.stack_pages import page
from harness.analysis import flat_field_metrics as flat_field_metrics_module
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.flat_field_metrics import BLUR_SIGMA_PX, flat_field_metrics
from harness.analysis.frame_stats import FrameStats, frame_stats
from harness.analysis.judging import failed_result, judged
from harness.analysis.metric import Metric
from harness.analysis.pixel_quality import (
    CONVENTION,
    DefectMap,
    SaturationLevel,
    apply_quality,
    assess,
    dark_defects,
    masked_blur,
    quality_line,
    quality_metrics,
    response_defects,
    saturation_level,
)
from harness.common.errors import BadInput
from harness.common.safe_paths import inside
from harness.protocol.protocol_file import Limit
from harness.records.run_folder import RunFolder
from harness.records.run_folder import correction_name as correction_file_name
from harness.report.html_parts import e, figure

SIGNAL_TO_NOISE_MIN = 5.0


def analyse_flat_field(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    """One result per lit channel: dark-subtracted mean image against the stack's dark channel.

    What the stack holds is decided from its OME planes first (which pages are real frames of which
    channel; a placeholder plane of a recovered stack is not a frame); then each channel's frames are
    read once, one page at a time, into running sums (``frame_stats``): memory does not grow with
    the number of frames, and a stack with no lit channel (or no dark one) has no pixel read at all."""
    from ome_types import from_xml  # the OME model costs about a second of start-up: loaded only where an image stack is handled

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
        level = saturation_level(px.significant_bits, cast(tifffile.TiffPage, tif.pages[0]).dtype)

        def stats_of(c: int, keep_variance: bool = False) -> FrameStats:
            return frame_stats((page(tif, i) for i in pages_of[c]), level.adu, keep_variance)

        dark = stats_of(names.index("dark"), keep_variance=True)
        hot = dark_defects(dark.mean, dark.count, dark.variance)
        out = []
        for c in lit:
            out.append(_flat_field_channel(folder, stack, ome, str(names[c]), stats_of(c), dark, limits, level, hot))
    return out


def _flat_field_channel(folder: Path, stack: str, ome: Any, name: str, frames: FrameStats, dark: FrameStats,
                        limits: Mapping[str, Limit], level: SaturationLevel, dark_defect_map: DefectMap) -> Result:
    mean = frames.mean - dark.mean
    saturated = _mask(frames.saturated, mean.shape) | _mask(dark.saturated, mean.shape)
    try:
        _check_signal(f"flat field {name} nm", mean, frames, dark)
        noise = math.sqrt(frames.variance_of_mean + dark.variance_of_mean)
        defects = dark_defect_map.merged(response_defects(mean, noise, known=dark_defect_map.mask | saturated))
        excluded = defects.mask | saturated
        smoothed = masked_blur(mean, excluded)
        metrics, profiles = flat_field_metrics(smoothed, blur=False)
    except BadInput as exc:  # this channel only; the others are still analysed
        return failed_result(f"{stack}.ome.tif", "ome_tiff", str(exc)) | {"subject": f"{name} nm", "lines_on": [name]}
    quality = assess(level, saturated, frames.count + dark.count, defects, EXCLUDED, excluded)
    clipped = quality.clipped_signal > CLIPPED_MAX_FRACTION * quality.pixels
    if clipped:  # the field's bright part is cut off: its shape (U, centre, ratios) is not in the data
        why = (f"the field is clipped: {quality.clipped_signal} pixels of the signal ({100 * quality.clipped_signal / quality.pixels:.2g} %) "
               f"at the saturation level ({level.adu:g} ADU); lower the exposure or the light and run again")
        metrics = {k: Metric(math.nan, m.unit, reason=why) for k, m in metrics.items()}
    entries, verdict = judged(metrics | quality_metrics(quality), limits)
    entry: Result = {
        "series": f"{stack}.ome.tif", "kind": "flat_field", "subject": f"{name} nm", "lines_on": [name],
        "frames": frames.count, "dark_frames": dark.count,
        "metrics": entries, "profiles": profiles, "verdict": verdict,
    }
    apply_quality(entry, quality)
    if clipped:
        entry["note"] = f"{entry['note']}; no correction image: the field is clipped"
        return entry
    try:
        correction_name = correction_file_name(stack, name)
        from harness.analyses.flat_field.correction import (  # the OME model costs about a second of start-up: loaded only where an image stack is handled
            correction_image,
            write_correction,
        )

        write_correction(inside(folder, correction_name), correction_image(smoothed), ome, name, {
            "Frames": frames.count, "DarkFrames": dark.count,
            "GaussianBlurSigmaPx": BLUR_SIGMA_PX, "DarkSubtracted": "mean of the dark channel",
            "ExcludedPixels": quality.excluded, "SaturatedPixels": quality.saturated, "DefectPixels": quality.defect_pixels,
            "ExcludedPixelsFilledBy": "Gaussian-weighted mean of the good pixels around them (normalised convolution)",
        })
        entry["correction_image"] = correction_name
    except ValueError as exc:
        entry["note"] = f"no correction image: {exc}"
    return entry


CLIPPED_MAX_FRACTION = 0.001  # more of the signal saturated than this: the field's shape is not measured

EXCLUDED = ("defect and saturated pixels excluded: the smoothed image, its metrics and the correction image take "
            "the Gaussian-weighted mean of the good pixels around them")


def _mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return mask if mask is not None else np.zeros(shape, dtype=bool)


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


class FlatFieldAnalysis:
    spec: AnalysisSpec = SPEC
    conventions = (flat_field_metrics_module.__doc__ or "").split("Conventions", 1)[-1].strip().lstrip(": ") + "\n" + CONVENTION

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        plan = run["protocol"]["plan"]["stacks"].get(entry["stack"], {})
        # a stack of z-stacks is not a flat field, even with a dark channel
        return entry.get("kind") == "ome_tiff" and "dark" in plan.get("channels", []) and int(plan.get("z_planes") or 1) == 1

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return analyse_flat_field(folder, entry["stack"], limits)

    def figures(self, folder: Path, result: Result) -> str:
        r = result
        if not r.get("correction_image"):
            return ""
        image = tifffile.imread(inside(folder, r["correction_image"]))
        return figure(plots.flat_field(image, r["profiles"], f"{r['subject']}: field illumination"),
                      f"{r['subject']}: dark-subtracted, smoothed mean of {r.get('frames')} frames (from {r['correction_image']}); "
                      "contours every 10 % of the maximum")

    def section(self, result: Result) -> list[str]:
        line = quality_line(result)
        return [f"<p class=muted>{e(result['subject'])}: {e(line)}</p>"] if line else []


ANALYSIS = FlatFieldAnalysis()
