"""The camera analysis (``harness.analyses.camera.SPEC``): EMVA 1288 metrics of one image stack.

Frames are chosen by their frame-log rows (only ``ok`` rows): ``ptc`` frames grouped by channel
(``dark`` or the lit one) and exposure time, the first two of each group making its pair; ``spatial``
frames of each channel (at one exposure) make the spatial stacks; ``dark_current`` dark pairs join the
dark pairs for the dark current, whose means leave out the hot pixels (found in the longest dark
pair). Pages are read one at a time, two per pair; the spatial stacks go into running sums. One result, subject
``camera``: the judged metrics, the photon-transfer series and its fit ranges, histograms of the dark
and of the high-pass lit non-uniformity, the defect pixels (at most ``MAX_LISTED`` of each kind
listed), and its data quality (``harness.analysis.pixel_quality`` on the spatial lit frames, plus the
spatial level's place between dark and saturation).

Raises ``BadInput`` when the stack has no ``ptc`` pairs of both kinds, or the formulas refuse the data
(``harness.analysis.emva1288_metrics``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import tifffile

from harness.analyses.camera import SPEC
from harness.analyses.camera import figures as plots
from harness.analyses.stack_pages import page, stack_saturation
from harness.analysis import emva1288_metrics as emva
from harness.analysis.contract import AnalysisSpec, Result
from harness.analysis.emva1288_metrics import PairStats, SpatialStats
from harness.analysis.judging import judged
from harness.analysis.metric import Metric
from harness.analysis.pixel_quality import (
    CONVENTION,
    DefectMap,
    PixelQuality,
    SaturationLevel,
    apply_quality,
    assess,
    quality_line,
    quality_metrics,
)
from harness.analysis.verdicts import ORDER
from harness.common.errors import BadInput
from harness.protocol.protocol_file import Limit
from harness.records.run_folder import RunFolder, frame_log_name
from harness.records.series_writer import read_series
from harness.report.html_parts import e, figure

MAX_LISTED = 500
HISTOGRAM_BINS = 80
GOOD_SPATIAL_LEVEL = (20.0, 80.0)  # % of the saturation signal where the spatial frames are meaningful
CLIPPED_MAX_FRACTION = 0.001  # more of the spatial lit frames' signal saturated than this: PRNU is not determined
EMVA_MIN_LEVELS = 50  # EMVA 1288 asks for at least 50 photon-transfer levels


def _groups(rows: list[dict[str, str]], tag: str) -> dict[tuple[str, float], list[int]]:
    """(channel, exposure_s) -> page indices of the ``ok`` frames with ``tag``, in order."""
    out: dict[tuple[str, float], list[int]] = {}
    for r in rows:
        if r.get("tag") == tag and r.get("status") == "ok" and r.get("ifd") not in (None, ""):
            out.setdefault((r["channel"], round(float(r["exposure_s"]), 9)), []).append(int(r["ifd"]))
    return out


def analyse_camera(folder: Path, stack: str, limits: Mapping[str, Limit]) -> list[Result]:
    rows = read_series(RunFolder(folder).frame_log(stack))
    ptc_groups = _groups(rows, "ptc")
    lit_channels = sorted({c for c, _ in ptc_groups if c != "dark"})
    if not lit_channels or not any(c == "dark" for c, _ in ptc_groups):
        raise BadInput(f"{stack}: the camera analysis needs 'ptc' pairs of lit and of dark frames at the same exposure times")
    lit = lit_channels[0]
    notes: list[str] = []
    if len(lit_channels) > 1:
        notes.append(f"photon transfer of the {lit} nm channel only (also lit: {', '.join(lit_channels[1:])}; one light source per run)")
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        _same_size(tif, rows, stack)
        saturation = stack_saturation(tif)
        all_dark_groups = {**{k: v for k, v in ptc_groups.items() if k[0] == "dark"}, **_groups(rows, "dark_current")}
        longest = max((k for k, v in all_dark_groups.items() if len(v) >= 2), key=lambda k: k[1], default=None)
        longest_dark = (page(tif, all_dark_groups[longest][0]).astype(np.float64) + page(tif, all_dark_groups[longest][1])) / 2 if longest else None
        hot_found = emva.hot_pixels(longest_dark)
        not_hot = None
        if hot_found[0] is not None and longest_dark is not None:
            not_hot = np.ones(longest_dark.shape, dtype=bool)
            not_hot[hot_found[0][:, 0], hot_found[0][:, 1]] = False

        def pair(pages: list[int], t: float, keep: np.ndarray | None = None) -> PairStats | None:
            return emva.pair_stats(page(tif, pages[0]), page(tif, pages[1]), t, keep) if len(pages) >= 2 else None

        bright = [p for (c, t), pages in ptc_groups.items() if c == lit and (p := pair(pages, t))]
        dark = [p for (c, t), pages in ptc_groups.items() if c == "dark" and (p := pair(pages, t))]
        dark_current_pairs = [p for (c, t), pages in all_dark_groups.items() if (p := pair(pages, t, not_hot))]
        paired = {round(d.exposure_s, 9) for d in dark}
        unpaired = sorted(b.exposure_s for b in bright if round(b.exposure_s, 9) not in paired)
        if unpaired:
            notes.append(f"lit level{'s' if len(unpaired) > 1 else ''} at {', '.join(f'{t * 1000:g} ms' for t in unpaired)} left out: "
                         "no dark pair at that exposure")
            bright = [b for b in bright if round(b.exposure_s, 9) in paired]
        ptc = emva.series(bright, dark)
        if len(ptc.exposure_s) < EMVA_MIN_LEVELS:
            notes.append(f"{len(ptc.exposure_s)} photon-transfer levels (EMVA 1288 asks for at least {EMVA_MIN_LEVELS}): "
                         "saturation and linearity are less finely resolved")
        metrics: dict[str, Metric] = {"ptc_levels": Metric(float(len(ptc.exposure_s)), "")}
        metrics.update(emva.photon_transfer(ptc, dark_current_pairs))  # finds saturation: where a stand-in spatial pair sits
        lit_pages, dark_pages, spatial_source = _spatial_pages(_groups(rows, "spatial"), ptc_groups, lit, ptc, notes)
        lit_spatial = emva.spatial_stats(page(tif, i) for i in lit_pages) if lit_pages else None
        dark_spatial = emva.spatial_stats(page(tif, i) for i in dark_pages) if dark_pages else None
        saturated = _saturated(tif, lit_pages, saturation)

    gain = ptc.gain_adu_per_e if "system_gain_adu_per_e" in metrics and not metrics["system_gain_adu_per_e"].reason else math.nan
    caveats: list[str] = []  # what makes this run's numbers less certain: they raise the data quality to warn
    if lit_spatial is not None and dark_spatial is not None:
        metrics.update(emva.spatial_nonuniformity(lit_spatial, dark_spatial, gain))
        level = lit_spatial.mean - dark_spatial.mean
        if ptc.saturated:
            pct = 100 * level / float(ptc.signal[ptc.saturation])
            metrics["spatial_level_pct_of_saturation"] = Metric(pct, "%")
            if not GOOD_SPATIAL_LEVEL[0] <= pct <= GOOD_SPATIAL_LEVEL[1]:
                caveats.append(f"the spatial lit frames are at {pct:.0f} % of saturation (EMVA 1288: about 50 %): PRNU is less certain")
        else:
            metrics["spatial_level_pct_of_saturation"] = Metric(math.nan, "%", reason="saturation not reached")
    else:
        why = f"no spatial statistics: {spatial_source}"
        for name in ("dsnu_adu", "dsnu_e", "prnu_pct", "prnu_plain_pct"):
            metrics[name] = Metric(math.nan, SPEC.metrics[name], reason=why)
    shape = longest_dark.shape if longest_dark is not None else (lit_spatial.mean_image.shape if lit_spatial else (0, 0))
    defects = emva.defect_pixels(hot_found, (int(shape[0]), int(shape[1])), lit_spatial, dark_spatial)
    metrics.update(emva.defect_metrics(defects))
    quality = _quality(saturation, saturated, defects, lit_spatial)
    metrics.update(quality_metrics(quality))
    if quality.clipped_signal > CLIPPED_MAX_FRACTION * max(quality.pixels, 1):
        why = (f"the spatial lit frames are clipped: {quality.clipped_signal} pixels of the signal at the saturation level "
               f"({saturation.adu:g} ADU); take them at about 50 % of saturation")
        for name in ("prnu_pct", "prnu_plain_pct"):
            metrics[name] = Metric(math.nan, "%", reason=why)

    entries, verdict = judged(metrics, limits)
    result: Result = {
        "series": f"{stack}.ome.tif", "kind": "camera", "subject": "camera", "lines_on": [lit],
        "metrics": entries, "verdict": verdict, "spatial_source": spatial_source,
        "ptc": {
            "exposure_s": ptc.exposure_s.tolist(), "signal_adu": ptc.signal.tolist(), "variance_adu2": ptc.variance.tolist(),
            "dark_mean_adu": ptc.dark_mean.tolist(), "dark_variance_adu2": ptc.dark_variance.tolist(),
            "saturation_index": ptc.saturation, "saturated": ptc.saturated,
            "gain_fit_range": list(ptc.sensitivity_range), "linearity_fit_range": list(ptc.linearity_range),
            "gain_adu_per_e": _finite(ptc.gain_adu_per_e), "responsivity_adu_per_s": _finite(ptc.responsivity_adu_per_s),
            "linearity_fit": [_finite(v) for v in ptc.linearity_fit],
            "linearity_deviation_pct": [_finite(v) for v in ptc.linearity_deviation_pct.tolist()],
        },
        "dark_current_points": {"exposure_s": [p.exposure_s for p in dark_current_pairs], "mean_adu": [p.mean for p in dark_current_pairs],
                                "without_hot_pixels": not_hot is not None},
        "histograms": _histograms(lit_spatial, dark_spatial),
        "defects": {
            "shape": list(longest_dark.shape) if longest_dark is not None else None,
            **{kind: (found[:MAX_LISTED].tolist() if found is not None else None) for kind in ("hot", "dead", "noisy")
               for found in [getattr(defects, kind)]},
            "not_determined": defects.reasons,
        },
    }
    apply_quality(result, quality)
    if caveats:  # stated with the pixel quality: the data, not the camera, are in question
        dq = result["data_quality"]
        dq["reasons"] = list(dq["reasons"]) + caveats
        dq["verdict"] = "warn"
        dq["summary"] = f"{dq['summary']}; " + "; ".join(caveats)
        if ORDER[result["verdict"]] < ORDER["warn"]:
            result["verdict"] = "warn"
    if caveats or notes:
        result["note"] = "; ".join(([result["note"]] if result.get("note") else []) + caveats + notes)
    return [result]


def _quality(saturation: SaturationLevel, saturated: np.ndarray | None, defects: emva.Defects,
             lit: SpatialStats | None) -> PixelQuality:
    """The pixel quality of the spatial lit frames (what DSNU/PRNU rest on): saturated pixels and the
    EMVA defect pixels, which stay in the statistics as EMVA 1288 defines them (counted on their own);
    the photon-transfer levels past saturation are part of the measurement, not a flaw of it."""
    shape = (defects.shape if defects.shape else (lit.mean_image.shape if lit is not None else (0, 0)))
    masks = {}
    for kind in ("hot", "dead", "noisy"):
        found = getattr(defects, kind)
        if found is not None:
            m = np.zeros(shape, dtype=bool)
            m[found[:, 0], found[:, 1]] = True
            masks[kind] = m
    defect_map = DefectMap(masks, ("EMVA 1288 defect pixels of this analysis (hot, dead, noisy; rules in its conventions)",),
                           tuple(f"{k}: {v}" for k, v in defects.reasons.items()))
    frames = lit.frames if lit is not None else 0
    return assess(saturation, saturated if saturated is not None else np.zeros(shape, dtype=bool), frames, defect_map,
                  "defect and saturated pixels stay in DSNU and PRNU, as EMVA 1288 defines them; the defects are counted on their own")


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _same_size(tif: tifffile.TiffFile, rows: list[dict[str, str]], stack: str) -> None:
    """Every frame the analysis uses has one size: pixels are compared across frames."""
    sizes: dict[tuple[int, ...], set[str]] = {}
    for r in rows:
        if r.get("tag") in ("ptc", "spatial", "dark_current") and r.get("status") == "ok" and r.get("ifd") not in (None, ""):
            shape = tuple(cast(tifffile.TiffPage, tif.pages[int(r["ifd"])]).shape)
            sizes.setdefault(shape, set()).add(str(r["tag"]))
    if len(sizes) > 1:
        found = "; ".join(f"{shape[1]} x {shape[0]} px ({', '.join(sorted(tags))})" for shape, tags in sizes.items())
        raise BadInput(f"{stack}: frames of different sizes ({found}): the camera analysis compares pixels across frames; "
                       "give every acquire step of the protocol the same roi/centre_roi and binning")


def _spatial_pages(spatial: dict[tuple[str, float], list[int]], ptc_groups: dict[tuple[str, float], list[int]], lit: str,
                   ptc: emva.PhotonTransfer, notes: list[str]) -> tuple[list[int], list[int], str]:
    """(lit pages, dark pages, where they come from) of the spatial statistics: the ``spatial`` frames at
    the lit exposure with the most frames and the dark ones at that exposure; else the photon-transfer
    pair nearest 50 % of saturation (L = 2); ([], [], why) when neither exists."""
    lit_sets = sorted(((t, v) for (c, t), v in spatial.items() if c == lit and len(v) >= 2), key=lambda x: (-len(x[1]), x[0]))
    if lit_sets:
        t, lit_pages = lit_sets[0]
        dark_pages = spatial.get(("dark", t), [])
        if len(lit_sets) > 1:
            notes.append(f"spatial frames at {len(lit_sets)} exposures: those at {t * 1000:g} ms used")
        if len(dark_pages) >= 2:
            return lit_pages, dark_pages, f"{len(lit_pages)} lit and {len(dark_pages)} dark spatial frames at {t * 1000:g} ms"
        notes.append(f"no dark spatial frames at {t * 1000:g} ms (the lit spatial exposure): the photon-transfer pair stands in")
    if not ptc.saturated:
        return [], [], "none (no spatial frames, and no saturation to place a photon-transfer pair at 50 %)"
    i = int(np.argmin(np.abs(ptc.signal - 0.5 * float(ptc.signal[ptc.saturation]))))
    t = round(float(ptc.exposure_s[i]), 9)
    lit_pages, dark_pages = ptc_groups.get((lit, t), [])[:2], ptc_groups.get(("dark", t), [])[:2]
    if len(lit_pages) < 2 or len(dark_pages) < 2:
        return [], [], "none"
    return lit_pages, dark_pages, f"the photon-transfer pair at {t * 1000:g} ms (L = 2: no spatial frames)"


def _saturated(tif: tifffile.TiffFile, pages: list[int], level: SaturationLevel) -> np.ndarray | None:
    """Pixels at the saturation level in any of ``pages`` (None: no page)."""
    out = None
    for p in pages:
        hit = page(tif, p) >= level.adu
        out = hit if out is None else out | hit
    return out


def _histogram(values: np.ndarray, step: float | None = None) -> dict[str, Any]:
    """Counts over the central 99.8 % of ``values`` (a few defect pixels would squash the rest into a
    bin or two); how many lie outside is kept with it."""
    lo, hi = (float(v) for v in np.percentile(values, [0.1, 99.9]))
    if step:  # the mean of L integer frames moves in steps of 1/L: bins of whole steps
        width = step * max(1, math.ceil(((hi - lo) / HISTOGRAM_BINS) / step))
        edges = np.arange(lo - width / 2, hi + width, width)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HISTOGRAM_BINS + 1)
    counts, edges = np.histogram(values, bins=edges)
    outside = int(values.size - counts.sum())
    return {"edges": edges.tolist(), "counts": counts.tolist(), "outside": outside}


def _histograms(lit: SpatialStats | None, dark: SpatialStats | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dark is not None:
        out["dsnu_adu"] = _histogram((dark.mean_image - dark.mean).reshape(-1), 1.0 / dark.frames)
    if lit is not None and dark is not None and lit.mean - dark.mean > 0:
        out["prnu_pct"] = _histogram((emva.high_pass(lit.mean_image - dark.mean_image) * (100 / (lit.mean - dark.mean))).reshape(-1))
    return out


def has_ptc_frames(frames_csv: Path) -> bool:
    return frames_csv.is_file() and any(r.get("tag") == "ptc" for r in read_series(frames_csv))


class CameraAnalysis:
    spec: AnalysisSpec = SPEC
    conventions = (emva.__doc__ or "").split("Conventions", 1)[-1].strip().lstrip(": ") + " " + CONVENTION

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        return entry.get("kind") == "ome_tiff" and has_ptc_frames(folder / frame_log_name(entry["stack"]))

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        return analyse_camera(folder, entry["stack"], limits)

    def figures(self, folder: Path, result: Result) -> str:
        r = result
        parts = [figure(plots.photon_transfer(r["ptc"]), "Photon transfer: temporal variance against mean signal (dark subtracted); "
                        "the gain fit range shaded, the saturation level marked"),
                 figure(plots.snr(r["ptc"], r["metrics"]), "Signal-to-noise ratio against signal, with the EMVA 1288 linear model"),
                 figure(plots.linearity(r["ptc"]), "Linearity: signal against exposure time, with the fit (5-95 % of saturation) and its residuals")]
        if r.get("histograms"):
            parts.append(figure(plots.histograms(r["histograms"]), "Non-uniformity: dark mean image (DSNU) and high-pass lit image (PRNU)"))
        if r.get("defects", {}).get("shape"):
            parts.append(figure(plots.defect_map(r["defects"]), "Defect pixels (hot, dead, noisy) in the analysed region"))
        return "".join(parts)

    def section(self, result: Result) -> list[str]:
        return [f"<p>{e(quality_line(result))}; spatial statistics from {e(result.get('spatial_source', ''))}; DSNU and PRNU count "
                "every pixel, defect pixels included, as EMVA 1288 defines them (the defects are counted on their own).</p>"]


ANALYSIS = CameraAnalysis()
