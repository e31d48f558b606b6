"""Pixel quality of the frames an image analysis uses: the saturation level, saturated pixels,
defect pixels, how they were handled, and a data-quality verdict that reaches the result.
Pure functions of arrays (numpy, and ``scipy.special`` for one chi-square quantile); no file is read.

Every image analysis (flat field, stage repeatability, ISO 230-2, and the ones to come: camera
characterization, beads) does the same four things:

1. ``saturation_level(significant_bits, dtype)``: the ADU value at which the camera clips. From OME
   Pixels ``SignificantBits`` (the camera's bit depth as the acquisition recorded it: 2**bits - 1);
   else the maximum of the stored integer type (a 12-bit camera stored as uint16 is then never seen
   as saturated: the ``source`` says which was used). The frame log holds no bit depth. A sensor
   whose full well clips below the ADC maximum is not seen here (the camera characterization measures it).
2. count the pixels at that level in the frames used (``frame_stats`` does it while it streams them;
   ``saturated_mask`` for frames already in memory);
3. find the defect pixels it can see in what it has (``DefectMap``):
   - ``dark_defects``: hot pixels, robust outliers of the mean dark image (above the median by more
     than ``HOT_SIGMAS`` x the larger of 1.4826 MAD and the noise of one pixel of the mean), and noisy
     pixels (frame-to-frame variance above ``noisy_factor(n)`` x the median variance; needs
     ``NOISY_MIN_FRAMES`` dark frames);
   - ``response_defects``: dead or stuck pixels of a dark-subtracted lit image, responding with less
     than ``DEAD_BELOW`` of their neighbourhood (``masked_blur``, sigma 2 px, without the pixel
     itself and known defects), where the neighbourhood has signal;
   - ``spike_defects``: for stacks without dark frames (bead fields): hot pixels seen as isolated
     one-pixel spikes of the mean frame (above the median by ``HOT_SIGMAS`` x the noise, their
     brightest neighbour below ``SPIKE_NEIGHBOUR_MAX`` of their height): a spot or bead spreads over
     several pixels (a PSF sampled at less than ~1 px sigma would be taken for hot pixels);
4. ``PixelQuality`` (the counts and what was done), turned into results.json fields
   (``quality_fields``), metrics (``quality_metrics``: ``saturated_pixels``, ``defect_pixels``), and
   the result's verdict (``apply_quality``).

The data-quality verdict (``PixelQuality.verdict``): ``warn`` when a pixel that is not a defect pixel
is saturated in the frames used (the signal itself is clipped: a metric computed from it is not
clean, even where the clipped pixels were excluded), or when more than ``EXCLUDED_WARN_FRACTION``
of the pixels were excluded; else ``pass``. ``apply_quality`` raises the result's verdict to at
least that ``warn`` (a ``pass`` or ``not judged`` result becomes ``warn``, with the reason in its
``note``); it never lowers a verdict and never raises one to ``fail`` (the data, not the instrument,
are in question). Saturated defect pixels (a hot pixel plus signal) are excluded with the defects
and do not raise the verdict.

Raises ``ValueError`` for arrays of different shapes; nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from harness.analysis.metric import Metric
from harness.analysis.verdicts import ORDER

HOT_SIGMAS = 8.0  # a hot pixel or spike: this many robust SDs above the median
NOISY_MIN_FRAMES = 5
NOISY_FALSE_RATE = 1e-9  # per pixel, for Gaussian noise; the factor is doubled for quantised, non-Gaussian noise
DEAD_BELOW = 0.5  # a dead or stuck pixel responds with less than this fraction of its neighbourhood
DEAD_MIN_SNR = 20.0  # response defects are looked for where the neighbourhood is this many noise SDs above zero
SPIKE_NEIGHBOUR_MAX = 0.25  # a spike's brightest neighbour is below this fraction of its height
EXCLUDED_WARN_FRACTION = 0.01
BLUR_SIGMA_PX = 2.0
QUANTISATION_VARIANCE = 1.0 / 12.0  # ADU^2 of rounding to integer ADU: the floor of any noise estimate


@dataclass(frozen=True)
class SaturationLevel:
    adu: float  # a pixel at or above this value is saturated (math.inf: float data, none)
    source: str  # where it came from, in words


def saturation_level(significant_bits: int | None, dtype: Any) -> SaturationLevel:
    """The clip level: 2**SignificantBits - 1, else the integer dtype's maximum, else none (inf)."""
    kind = np.dtype(dtype) if dtype is not None else None
    if significant_bits and 0 < int(significant_bits) <= 64:
        return SaturationLevel(float(2 ** int(significant_bits) - 1), f"OME Pixels SignificantBits = {int(significant_bits)}")
    if kind is not None and kind.kind in "ui":
        return SaturationLevel(float(np.iinfo(kind).max), f"maximum of the stored type {kind.name} (no SignificantBits in the OME-XML)")
    return SaturationLevel(math.inf, "no saturation level (floating-point data without SignificantBits)")


def saturated_mask(frames: list[np.ndarray] | np.ndarray, level: SaturationLevel) -> np.ndarray:
    """Pixels at or above the level in at least one of ``frames`` (same shapes; ValueError if not)."""
    arrays = [np.asarray(f) for f in frames]
    if not arrays:
        raise ValueError("no frames")
    out = np.zeros(arrays[0].shape, dtype=bool)
    for a in arrays:
        if a.shape != out.shape:
            raise ValueError(f"a frame of {a.shape} among frames of {out.shape}")
        out |= a >= level.adu
    return out


# --- smoothing that leaves excluded pixels out ---------------------------------------------------
def gaussian_blur(image: np.ndarray, sigma: float = BLUR_SIGMA_PX) -> np.ndarray:
    """Separable Gaussian smoothing with mirrored edges, the kernel cut at 3 sigma (numpy only)."""
    radius = int(math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = np.pad(image.astype(np.float64), radius, mode="reflect")
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, out)
    out = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, out)
    return out


def masked_blur(image: np.ndarray, excluded: np.ndarray | None, sigma: float = BLUR_SIGMA_PX) -> np.ndarray:
    """``gaussian_blur`` that leaves the ``excluded`` pixels out (normalised convolution:
    blur(image x good) / blur(good)): every pixel, an excluded one included, gets the Gaussian-weighted
    mean of the good pixels around it. With nothing excluded it is ``gaussian_blur`` exactly. A pixel
    with no good pixel within 3 sigma takes the value at twice the sigma (and so on)."""
    if excluded is None or not excluded.any():
        return gaussian_blur(image, sigma)
    if excluded.shape != image.shape:
        raise ValueError(f"mask of {excluded.shape} for an image of {image.shape}")
    good = (~excluded).astype(np.float64)
    values = np.where(excluded, 0.0, np.asarray(image, dtype=np.float64))
    out = np.full(image.shape, np.nan)
    s = sigma
    while True:
        weight = gaussian_blur(good, s)
        todo = np.isnan(out) & (weight > 1e-9)
        out[todo] = gaussian_blur(values, s)[todo] / weight[todo]
        if not np.isnan(out).any() or s > 2 * max(image.shape) or not good.any():
            return out
        s *= 2


# --- defects -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DefectMap:
    """Defect pixels by kind (bool masks of the image's shape) and how each kind was found."""

    masks: dict[str, np.ndarray]  # "hot", "noisy", "dead" -> mask (a pixel is in one kind only)
    found_by: tuple[str, ...]  # one sentence per method used
    not_assessed: tuple[str, ...] = ()  # what could not be looked for, and why

    @property
    def mask(self) -> np.ndarray:
        shapes = [m.shape for m in self.masks.values()]
        out = np.zeros(shapes[0], dtype=bool) if shapes else np.zeros((0, 0), dtype=bool)
        for m in self.masks.values():
            out |= m
        return out

    def counts(self) -> dict[str, int]:
        return {kind: int(np.count_nonzero(m)) for kind, m in self.masks.items()}

    def merged(self, other: DefectMap) -> DefectMap:
        """Both maps; a pixel keeps the first kind it was given."""
        masks = {k: v.copy() for k, v in self.masks.items()}
        taken = self.mask if masks else None
        for kind, m in other.masks.items():
            new = m & ~taken if taken is not None else m.copy()
            masks[kind] = masks[kind] | new if kind in masks else new
            taken = new if taken is None else taken | new
        return DefectMap(masks, self.found_by + other.found_by, self.not_assessed + other.not_assessed)


def _robust_sd(values: np.ndarray) -> float:
    median = float(np.median(values))
    return 1.4826 * float(np.median(np.abs(values - median)))


def noisy_factor(frames: int) -> float:
    """How many times the median frame-to-frame variance a noisy pixel exceeds (``frames`` >= 2):
    the chi-square quantile of ``NOISY_FALSE_RATE`` over its median, doubled."""
    k = frames - 1
    return 2.0 * float(special.chdtri(k, NOISY_FALSE_RATE) / special.chdtri(k, 0.5))


def dark_defects(dark_mean: np.ndarray, frames: int, variance: np.ndarray | None = None) -> DefectMap:
    """Hot and noisy pixels of the dark frames: ``dark_mean`` (their mean image), ``frames`` (how many),
    ``variance`` (per-pixel frame-to-frame variance, ddof=1; None: noisy pixels not looked for)."""
    mean = np.asarray(dark_mean, dtype=np.float64)
    median = float(np.median(mean))
    temporal = float(np.median(variance)) / frames if variance is not None and frames > 1 else 0.0
    sd = max(_robust_sd(mean), math.sqrt(max(temporal, QUANTISATION_VARIANCE / frames)))
    hot = mean - median > HOT_SIGMAS * sd
    found = [f"hot: mean of {frames} dark frames above their median ({median:.1f} ADU) by more than "
             f"{HOT_SIGMAS:g} x {sd:.3g} ADU (robust SD, at least the noise of the mean)"]
    masks = {"hot": hot}
    not_assessed: list[str] = []
    if variance is not None and frames >= NOISY_MIN_FRAMES:
        var = np.asarray(variance, dtype=np.float64)
        factor = noisy_factor(frames)
        level = factor * max(float(np.median(var)), QUANTISATION_VARIANCE)
        masks["noisy"] = (var > level) & ~hot
        found.append(f"noisy: dark frame-to-frame variance above {factor:.3g} x its median ({level:.3g} ADU^2)")
    else:
        not_assessed.append(f"noisy pixels: needs {NOISY_MIN_FRAMES} dark frames and their per-pixel variance, has {frames}")
    return DefectMap(masks, tuple(found), tuple(not_assessed))


def response_defects(signal: np.ndarray, noise_sd: float, known: np.ndarray | None = None) -> DefectMap:
    """Dead or stuck pixels of a dark-subtracted lit image ``signal``: response below ``DEAD_BELOW`` of
    the neighbourhood (``masked_blur`` without the pixel's own kind of trouble: ``known`` pixels are
    left out of the neighbourhood), where the neighbourhood is ``DEAD_MIN_SNR`` x ``noise_sd`` (the
    noise of one pixel of ``signal``) above zero; ``known`` pixels are not classified again."""
    img = np.asarray(signal, dtype=np.float64)
    known = np.zeros(img.shape, dtype=bool) if known is None else known
    local = masked_blur(img, known)
    lit = local > DEAD_MIN_SNR * max(noise_sd, math.sqrt(QUANTISATION_VARIANCE))
    # a dead pixel pulls its own neighbourhood down by its kernel weight (~4 %): negligible at 50 %
    dead = lit & (img < DEAD_BELOW * local) & ~known
    found = (f"dead or stuck: dark-subtracted response below {DEAD_BELOW:g} x its neighbourhood "
             f"(Gaussian sigma {BLUR_SIGMA_PX:g} px), where the neighbourhood has signal ({int(lit.sum())} px)",)
    return DefectMap({"dead": dead}, found)


def spike_defects(mean_frame: np.ndarray, frames: int) -> DefectMap:
    """Hot pixels of a stack without dark frames: isolated one-pixel spikes of the mean frame."""
    img = np.asarray(mean_frame, dtype=np.float64)
    median = float(np.median(img))
    sd = max(_robust_sd(img), math.sqrt(QUANTISATION_VARIANCE / max(frames, 1)))
    padded = np.pad(img, 1, mode="edge")
    h, w = img.shape
    neighbours = np.max([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)], axis=0)
    height = img - median
    hot = (height > HOT_SIGMAS * sd) & (neighbours - median < SPIKE_NEIGHBOUR_MAX * height)
    found = (f"hot: one-pixel spikes of the mean of {frames} frames (above the median {median:.1f} ADU by more than "
             f"{HOT_SIGMAS:g} x {sd:.3g} ADU, every neighbour below {SPIKE_NEIGHBOUR_MAX:g} of that height); no dark frames",)
    return DefectMap({"hot": hot}, found, ("noisy and dead pixels: no dark frames",))


def fill_excluded(image: np.ndarray, excluded: np.ndarray, sigma: float = BLUR_SIGMA_PX) -> np.ndarray:
    """``image`` with the ``excluded`` pixels replaced by the Gaussian-weighted mean of the good pixels
    around them (what ``masked_blur`` gives there, computed around those pixels only when they are
    few); the others unchanged (a new float64 array). ValueError for a mask of another shape."""
    out = np.asarray(image, dtype=np.float64).copy()
    if excluded.shape != out.shape:
        raise ValueError(f"mask of {excluded.shape} for an image of {out.shape}")
    rows, cols = np.nonzero(excluded)
    if rows.size == 0:
        return out
    radius = int(math.ceil(3 * sigma))
    if rows.size > _FILL_LOCAL_MAX or min(out.shape) <= radius:
        out[excluded] = masked_blur(out, excluded, sigma)[excluded]
        return out
    off = np.arange(-radius, radius + 1)
    k = np.exp(-(off**2) / (2 * sigma**2))
    h, w = out.shape
    rr = _reflect(rows[:, None, None] + off[None, :, None], h)
    cc = _reflect(cols[:, None, None] + off[None, None, :], w)
    weights = (k[:, None] * k[None, :])[None] * ~excluded[rr, cc]
    total = weights.sum(axis=(1, 2))
    ok = total > 0
    out[rows[ok], cols[ok]] = (out[rr, cc] * weights).sum(axis=(1, 2))[ok] / total[ok]
    if not ok.all():  # a cluster wider than the kernel: the wider search of masked_blur
        wide = masked_blur(np.asarray(image, dtype=np.float64), excluded, sigma)
        out[rows[~ok], cols[~ok]] = wide[rows[~ok], cols[~ok]]
    return out


_FILL_LOCAL_MAX = 20_000


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored at the edges as ``np.pad(mode="reflect")`` does (no edge repeat)."""
    period = 2 * (n - 1) if n > 1 else 1
    index = np.abs(index) % period
    return np.where(index > n - 1, period - index, index)


# --- the verdict ---------------------------------------------------------------------------------
CONVENTION = ("Pixel quality (every image result): saturation at 2^SignificantBits - 1 ADU (OME Pixels; else the "
              "stored type's maximum); saturated_pixels counts the pixels at it in at least one frame used; "
              "defect_pixels the hot, noisy and dead pixels found (data_quality says how, and what was done with them). "
              "A result whose signal (not a defect pixel) is saturated, or with more than 1 % of its pixels "
              "excluded, is at least warn, with the reason: a metric on clipped data is not reported as clean.")


@dataclass(frozen=True)
class PixelQuality:
    """What an analysis found about the pixels it used, and what it did with them."""

    saturation: SaturationLevel
    pixels: int  # pixels per frame
    frames: int  # frames looked at
    saturated: int  # pixels at the saturation level in at least one frame used
    saturated_defects: int  # of those, defect pixels (excluded with the defects)
    defects: dict[str, int] = field(default_factory=dict)  # kind -> count ({}: not looked for)
    found_by: tuple[str, ...] = ()
    not_assessed: tuple[str, ...] = ()
    handling: str = ""  # what was done with saturated and defect pixels, in words
    excluded: int = 0  # pixels left out of the metrics (defects and saturated pixels together)

    @property
    def defect_pixels(self) -> int:
        return sum(self.defects.values())

    @property
    def clipped_signal(self) -> int:
        """Saturated pixels that are not defect pixels: the signal itself is clipped there."""
        return self.saturated - self.saturated_defects

    @property
    def reasons(self) -> list[str]:
        out = []
        if self.clipped_signal:
            level = f"{self.saturation.adu:g} ADU" if math.isfinite(self.saturation.adu) else "?"
            out.append(f"{self.clipped_signal} pixel{'s' if self.clipped_signal != 1 else ''} of the signal saturated (at {level}): "
                       "the metrics rest on clipped data; lower the exposure or the light")
        if self.pixels and self.excluded > EXCLUDED_WARN_FRACTION * self.pixels:
            out.append(f"{self.excluded} of {self.pixels} pixels ({100 * self.excluded / self.pixels:.2g} %) excluded")
        return out

    @property
    def verdict(self) -> str:
        return "warn" if self.reasons else "pass"

    @property
    def summary(self) -> str:
        """One line for the report."""
        kinds = ", ".join(f"{n} {k}" for k, n in self.defects.items()) if self.defects else "not looked for"
        level = f"{self.saturation.adu:g} ADU" if math.isfinite(self.saturation.adu) else "none"
        text = (f"data quality {self.verdict}: {self.saturated} saturated pixel{'s' if self.saturated != 1 else ''} "
                f"({self.saturated_defects} of them defect pixels) in {self.frames} frames, saturation at {level} "
                f"({self.saturation.source}); defect pixels: {kinds}")
        if self.handling:
            text += f"; {self.handling}"
        if self.reasons:
            text += "; " + "; ".join(self.reasons)
        return text


def assess(saturation: SaturationLevel, saturated: np.ndarray, frames: int, defects: DefectMap | None,
           handling: str, excluded: np.ndarray | None = None) -> PixelQuality:
    """The ``PixelQuality`` of one result: ``saturated`` (mask of pixels saturated in any frame used),
    ``defects`` (None: not looked for), ``excluded`` (mask of the pixels left out; None: none)."""
    mask = defects.mask if defects is not None and defects.masks else np.zeros(saturated.shape, dtype=bool)
    if mask.shape != saturated.shape or (excluded is not None and excluded.shape != saturated.shape):
        raise ValueError(f"masks of different shapes: {saturated.shape}, {mask.shape}")
    return PixelQuality(
        saturation=saturation, pixels=int(saturated.size), frames=frames,
        saturated=int(np.count_nonzero(saturated)), saturated_defects=int(np.count_nonzero(saturated & mask)),
        defects=defects.counts() if defects is not None else {},
        found_by=defects.found_by if defects is not None else (),
        not_assessed=defects.not_assessed if defects is not None else ("defect pixels: not looked for",),
        handling=handling, excluded=int(np.count_nonzero(excluded)) if excluded is not None else 0,
    )


def quality_metrics(q: PixelQuality) -> dict[str, Metric]:
    """``saturated_pixels`` and ``defect_pixels`` (counts; ``defect_pixels`` not judged, with the
    reason, when defects were not looked for)."""
    return {
        "saturated_pixels": Metric(float(q.saturated), ""),
        "defect_pixels": Metric(float(q.defect_pixels), "") if q.defects else
        Metric(math.nan, "", "; ".join(q.not_assessed) or "defect pixels not looked for"),
    }


def quality_fields(q: PixelQuality) -> dict[str, Any]:
    """results.json's ``data_quality`` entry of a result (plain JSON)."""
    return {"data_quality": {
        "verdict": q.verdict, "reasons": q.reasons, "summary": q.summary,
        "saturation_adu": q.saturation.adu if math.isfinite(q.saturation.adu) else None,
        "saturation_source": q.saturation.source, "frames": q.frames, "pixels": q.pixels,
        "saturated_pixels": q.saturated, "saturated_defect_pixels": q.saturated_defects,
        "defect_pixels": dict(q.defects), "found_by": list(q.found_by), "not_assessed": list(q.not_assessed),
        "excluded_pixels": q.excluded, "handling": q.handling,
    }}


def apply_quality(result: dict[str, Any], q: PixelQuality) -> dict[str, Any]:
    """``result`` with its ``data_quality`` entry, its verdict raised to at least ``q.verdict`` when that
    is ``warn`` (the reasons added to its ``note``); returns it."""
    result.update(quality_fields(q))
    if q.verdict == "warn" and ORDER[result.get("verdict", "not judged")] < ORDER["warn"]:
        result["verdict"] = "warn"
    if q.verdict == "warn":
        note = "data quality: " + "; ".join(q.reasons)
        result["note"] = f"{result['note']}; {note}" if result.get("note") else note
    return result


def quality_line(result: dict[str, Any]) -> str:
    """The report's line of a result's data quality ("" for a result without one, e.g. an old run)."""
    dq = result.get("data_quality")
    return str(dq.get("summary", "")) if isinstance(dq, dict) else ""
