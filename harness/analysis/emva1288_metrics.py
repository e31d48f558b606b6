"""EMVA 1288 (Release 4.0, linear model) camera metrics from frame statistics: pure functions of
their arguments (numpy and scipy.ndimage only; nothing is read or written).

Inputs are what a camera-characterization run holds: pairs of frames at each exposure time with the
light on and with it off (``PairStats``), and a stack of lit and of dark frames at one exposure
(``SpatialStats``). ``photon_transfer`` and ``spatial_nonuniformity`` compute the metrics;
anything the data cannot show is a ``Metric(nan, unit, reason)``, never an invented number.

Conventions: EMVA 1288 Release 4.0 "linear" model, with the formulas of its reference implementation
(PyPI ``emva1288``, ``process/results.py``, ``process/data.py``); ADU is EMVA's DN. Temporal
statistics of a level come from its pair of frames A, B: mean mu_y = mean((A + B) / 2) and
temporal variance s2_y = var(A - B) / 2 (population variance over the pixels, which removes any
fixed pattern and a light change between the two frames). The light level is set by the exposure
time at constant irradiance, so the exposure time stands for the photon count mu_p (proportional to
it); quantum efficiency is therefore not given, and nothing below depends on the unknown factor.
Saturation: the level of largest dark-subtracted temporal variance (the reference implementation uses
the lit variance, and scans down from the
brightest level and stops at the first two levels in a row below the largest so far, which in a long
fully clipped tail stops at a float-noise step of the tail); the series shows saturation only when the
brightest level's variance is below 80 % of that peak (else saturation metrics are not determined). System gain K (ADU/e-): slope
through the origin of s2_y - s2_y.dark against mu_y - mu_y.dark over the levels up to 70 % of the
saturation signal; conversion gain 1/K (e-/ADU). Temporal dark noise: sigma_y.dark = sqrt of the
intercept of a straight-line fit of s2_y.dark against exposure time (at most two exposure times:
the first one's value), at least sqrt(0.24) ADU; in electrons sqrt(sigma_y.dark^2 - 1/12) / K.
Saturation capacity mu_e.sat = the responsivity line (slope through the origin of mu_y - mu_y.dark
against exposure time, same levels as K) at the saturation exposure, over K. SNR_max =
sqrt(mu_e.sat); dynamic range = mu_e.sat / (sigma_y.dark / K + 0.5) (in dB: 20 log10). Linearity
error: a straight line mu_y - mu_y.dark = a t + b fitted with weights 1/(mu_y - mu_y.dark) over the
levels from 5 % to 95 % of the saturation signal; LE = 100 (data - line) / line, min and max over those
levels; ``linearity_error_pct`` is the larger magnitude. Dark current: slope of a straight-line fit of
mu_y.dark against exposure time (every dark pair, long exposures included) over K, in e-/s, over the
pixels that are not hot (hot pixels are counted on their own, and at long exposures they clip, which
would bend the line; the reference implementation's mean over every pixel and the photon-transfer
exposures only differs from it by the hot pixels' share). Spatial: from L lit and L dark frames at one exposure,
the spatial variance of the mean image (n - 1) less the mean per-pixel temporal variance over L;
DSNU = sqrt(s2_y.dark) / K (e-, and in ADU); PRNU (plain, the reference implementation's PRNU1288) =
sqrt(s2_y - s2_y.dark) / (mu_y - mu_y.dark). Plain PRNU counts any illumination non-uniformity as
PRNU, and a microscope's field is never flat, so ``prnu_pct`` is the high-pass variant: the
dark-subtracted mean image less its 5 x 5 box mean (the filter EMVA 1288 uses for its non-uniformity
histograms; 2-pixel border dropped), whose variance is divided by 0.96 (what that filter leaves of a
white pattern) before the temporal part is removed. Defect pixels, on the frames at hand: hot = the
mean of the longest dark pair above the median by more than z SDs (SD after 4-SD clipping; z such that
a normal frame of that many pixels has one by chance with probability 1e-3: about 5.8 for 512 x 512, 6.2 for 2048 x 2048;
more than 1 % of the pixels: a pattern, not determined); dead = a
dark-subtracted lit response below 50 % of its 5 x 5 neighbourhood's mean, where that mean is above 20 x
the noise of the pixel (needs half the pixels so lit; a clipped hot pixel is counted as hot only); noisy = a temporal SD over
the dark spatial frames more than 3 x the median (needs at least 8 frames; a hot pixel is counted as hot
only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, special

from harness.analysis.metric import Metric
from harness.common.errors import BadInput

QUANTISATION_VARIANCE = 1.0 / 12.0
MIN_DARK_VARIANCE_ADU2 = 0.24  # the reference implementation's floor of the temporal dark variance
SENSITIVITY_FRACTION = 0.7
LINEARITY_RANGE = (0.05, 0.95)
HIGH_PASS_SIZE = 5
HIGH_PASS_WHITE_GAIN = 0.96  # var(y - box5(y)) / var(y) for a white pattern: (24/25)^2 + 24/25^2
OUTLIER_FAMILY_P = 1e-3  # chance that any normal pixel of the frame is called hot
HOT_MAX_FRACTION = 0.01  # more than this: the dark image has a pattern, not hot pixels
DEAD_FRACTION = 0.5
NOISY_SD_FACTOR = 3.0
NOISY_MIN_FRAMES = 8
DEAD_MIN_SNR = 20.0  # dead pixels are looked for where the lit neighbourhood is this many noise SDs above dark
SIGNAL_TO_NOISE_MIN = 5.0
SATURATION_DROP = 0.8  # saturation is seen when the brightest level's variance is below this fraction of the peak's


@dataclass(frozen=True)
class PairStats:
    """One level: two frames at one exposure time."""

    exposure_s: float
    mean: float  # mean over the pixels of (A + B) / 2, ADU
    variance: float  # var(A - B) / 2, ADU^2


def pair_stats(a: np.ndarray, b: np.ndarray, exposure_s: float, keep: np.ndarray | None = None) -> PairStats:
    """The pair's statistics over every pixel, or over those where ``keep`` (a boolean image) is true."""
    fa, fb = a.astype(np.float64), b.astype(np.float64)
    if keep is not None:
        fa, fb = fa[keep], fb[keep]
    diff = fa - fb
    return PairStats(exposure_s, float((fa.mean() + fb.mean()) / 2), float(diff.var() / 2))


@dataclass
class SpatialStats:
    """L frames at one exposure: their mean image and mean per-pixel temporal variance (n - 1)."""

    mean_image: np.ndarray
    temporal_variance: np.ndarray
    frames: int

    @property
    def mean(self) -> float:
        return float(self.mean_image.mean())

    @property
    def spatial_variance(self) -> float:
        """s2_y: the mean image's spatial variance less what temporal noise leaves in it."""
        return float(self.mean_image.var(ddof=1) - self.temporal_variance.mean() / self.frames)


def spatial_stats(frames: Iterable[np.ndarray]) -> SpatialStats:
    """Running sums over the frames (float64, one frame in memory at a time); at least 2 frames."""
    total = squares = None
    n = 0
    for f in frames:
        x = f.astype(np.float64)
        if total is None or squares is None:
            total, squares = np.zeros(x.shape), np.zeros(x.shape)
        total += x
        squares += x * x
        n += 1
    if n < 2 or total is None or squares is None:
        raise BadInput("spatial non-uniformity needs at least 2 frames at one exposure")
    mean = total / n
    variance = np.maximum(squares - n * mean * mean, 0.0) / (n - 1)
    return SpatialStats(mean, variance, n)


@dataclass
class PhotonTransfer:
    """The photon-transfer series, sorted by exposure, with its fit ranges (indices)."""

    exposure_s: np.ndarray
    signal: np.ndarray  # mu_y - mu_y.dark
    variance: np.ndarray  # s2_y - s2_y.dark
    dark_mean: np.ndarray
    dark_variance: np.ndarray
    saturation: int = -1
    sensitivity_range: tuple[int, int] = (0, -1)
    linearity_range: tuple[int, int] = (0, -1)
    gain_adu_per_e: float = math.nan
    responsivity_adu_per_s: float = math.nan
    linearity_fit: tuple[float, float] = (math.nan, math.nan)
    linearity_deviation_pct: np.ndarray = field(default_factory=lambda: np.zeros(0))
    saturated: bool = False  # whether the series shows saturation (a variance peak before its end)


def series(bright: list[PairStats], dark: list[PairStats]) -> PhotonTransfer:
    """The lit pairs matched with the dark pairs of the same exposure (to 1 ns); ``BadInput`` when one
    has none or there are fewer than 3 levels."""
    darks = {round(d.exposure_s, 9): d for d in dark}
    missing = sorted({b.exposure_s for b in bright if round(b.exposure_s, 9) not in darks})
    if missing:
        raise BadInput(f"no dark pair at exposure {', '.join(f'{t * 1000:g} ms' for t in missing[:5])}"
                       f"{' ...' if len(missing) > 5 else ''}: each lit level needs dark frames at its exposure time")
    levels = sorted(bright, key=lambda b: b.exposure_s)
    if len(levels) < 3:
        raise BadInput(f"photon transfer needs at least 3 levels (exposure times); the run has {len(levels)} "
                       "(the light level is set by the exposure time: a series of set points at one exposure is not supported)")
    t = np.array([b.exposure_s for b in levels])
    d = [darks[round(b.exposure_s, 9)] for b in levels]
    return PhotonTransfer(
        exposure_s=t,
        signal=np.array([b.mean for b in levels]) - np.array([x.mean for x in d]),
        variance=np.array([b.variance for b in levels]) - np.array([x.variance for x in d]),
        dark_mean=np.array([x.mean for x in d]), dark_variance=np.array([x.variance for x in d]),
    )


def saturation_index(variance: np.ndarray) -> int:
    """The level of largest temporal variance (the first of equal ones)."""
    return int(np.argmax(variance))


def _slope_through_origin(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.dot(x, y) / np.dot(x, x)) if np.dot(x, x) > 0 else math.nan


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of an ordinary least-squares straight line."""
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def photon_transfer(ptc: PhotonTransfer, dark_pairs: list[PairStats]) -> dict[str, Metric]:
    """Gain, dark noise, saturation capacity, SNR, dynamic range, linearity and dark current; fills
    ``ptc``'s fit fields for the figures. ``dark_pairs``: every dark pair, for the dark current (the
    analysis computes them without the hot pixels)."""
    out: dict[str, Metric] = {}
    signal, variance, t = ptc.signal, ptc.variance, ptc.exposure_s
    dark_t = np.array([d.exposure_s for d in dark_pairs])
    dark_mu = np.array([d.mean for d in dark_pairs])
    # temporal dark noise (ADU) needs no light
    if len(np.unique(t)) <= 2:
        s2_dark = float(ptc.dark_variance[0])
    else:
        s2_dark = _line(t, ptc.dark_variance)[1]
    sigma_y_dark = math.sqrt(max(s2_dark, MIN_DARK_VARIANCE_ADU2))
    if not np.any(ptc.dark_variance > 0):
        out["temporal_dark_noise_adu"] = Metric(math.nan, "ADU", reason="the two frames of every dark pair are identical: no temporal noise "
                                                                          "(a simulated camera that draws the same image)")
    else:
        out["temporal_dark_noise_adu"] = Metric(sigma_y_dark, "ADU")
    dark_slope = _line(dark_t, dark_mu)[0] if len(np.unique(dark_t)) >= 3 else math.nan

    noise = math.sqrt(max(float(np.max(ptc.variance + ptc.dark_variance)), MIN_DARK_VARIANCE_ADU2) / 2)
    if not np.isfinite(signal).all() or float(np.max(signal)) < SIGNAL_TO_NOISE_MIN * noise:
        return _without_light(out, dark_slope, f"no photon transfer: the lit frames are no brighter than the dark ones at any exposure "
                                               f"(largest mean difference {float(np.max(signal)):.3g} ADU, pixel noise {noise:.3g} ADU): "
                                               "the camera does not see this light")

    sat = saturation_index(variance)
    ptc.saturation = sat
    ptc.saturated = sat < len(variance) - 1 and float(variance[-1]) < SATURATION_DROP * float(variance[sat])
    top = np.flatnonzero(signal <= SENSITIVITY_FRACTION * signal[sat])
    top_i = int(top.max()) if top.size else 0
    ptc.sensitivity_range = (0, top_i)
    fit = slice(0, top_i + 1)
    k = _slope_through_origin(signal[fit], variance[fit])
    responsivity = _slope_through_origin(t[fit], signal[fit])
    ptc.gain_adu_per_e, ptc.responsivity_adu_per_s = k, responsivity
    if top_i < 2 or not (k > 0):
        return _without_light(out, dark_slope, f"no photon transfer: the temporal variance does not grow with the signal (slope {k:.3g} "
                                               f"ADU/e- over {top_i + 1} levels up to 70 % of the largest-variance level)")

    out["system_gain_adu_per_e"] = Metric(k, "ADU/e-")
    out["conversion_gain_e_per_adu"] = Metric(1 / k, "e-/ADU")
    dark_noise = out["temporal_dark_noise_adu"]
    out["temporal_dark_noise_e"] = (Metric(math.nan, "e-", reason=dark_noise.reason) if dark_noise.reason
                                    else Metric(math.sqrt(max(sigma_y_dark**2 - QUANTISATION_VARIANCE, 0.0)) / k, "e-"))
    if math.isfinite(dark_slope):
        out["dark_current_adu_per_s"] = Metric(dark_slope, "ADU/s")
        out["dark_current_e_per_s"] = Metric(dark_slope / k, "e-/s")
    else:
        why = "needs dark pairs at 3 or more exposure times"
        out["dark_current_adu_per_s"] = Metric(math.nan, "ADU/s", reason=why)
        out["dark_current_e_per_s"] = Metric(math.nan, "e-/s", reason=why)

    if not ptc.saturated:
        why = (f"the series did not reach saturation: the temporal variance does not fall by {100 * (1 - SATURATION_DROP):.0f} % after its "
               f"largest value by the brightest level ({t[-1] * 1000:g} ms, {signal[-1]:.0f} ADU above dark): extend the exposures or raise the light")
        for name, unit in NEEDS_SATURATION.items():
            out[name] = Metric(math.nan, unit, reason=why)
    else:
        e_sat = responsivity * t[sat] / k
        out["saturation_capacity_e"] = Metric(e_sat, "e-")
        out["snr_max"] = Metric(math.sqrt(e_sat), "")
        out["snr_max_db"] = Metric(20 * math.log10(math.sqrt(e_sat)), "dB")
        if dark_noise.reason:
            out["dynamic_range_db"] = Metric(math.nan, "dB", reason=f"no temporal dark noise: {dark_noise.reason}")
        else:
            out["dynamic_range_db"] = Metric(20 * math.log10(e_sat / (sigma_y_dark / k + 0.5)), "dB")
        out.update(_linearity(ptc))
    return out


def _without_light(out: dict[str, Metric], dark_slope: float, reason: str) -> dict[str, Metric]:
    """``out`` with every metric that needs the light not determined (``reason``); the dark ones kept."""
    for name, unit in NEEDS_LIGHT.items():
        out[name] = Metric(math.nan, unit, reason=reason)
    out["dark_current_adu_per_s"] = _dark_current_adu(dark_slope, out["temporal_dark_noise_adu"])
    return out


def _dark_current_adu(slope: float, dark_noise: Metric) -> Metric:
    if dark_noise.reason:  # frames that never change: a slope of 0 says nothing about the sensor
        return Metric(math.nan, "ADU/s", reason=f"no dark current to measure: {dark_noise.reason}")
    if not math.isfinite(slope):
        return Metric(math.nan, "ADU/s", reason="needs dark pairs at 3 or more exposure times")
    return Metric(slope, "ADU/s")


def _linearity(ptc: PhotonTransfer) -> dict[str, Metric]:
    signal, t, sat = ptc.signal, ptc.exposure_s, ptc.saturation
    lo = np.flatnonzero(signal >= LINEARITY_RANGE[0] * signal[sat])
    hi = np.flatnonzero(signal <= LINEARITY_RANGE[1] * signal[sat])
    if not lo.size or not hi.size or int(hi.max()) - int(lo.min()) < 2:
        why = "fewer than 3 levels between 5 % and 95 % of saturation"
        return {n: Metric(math.nan, "%", reason=why) for n in ("linearity_error_min_pct", "linearity_error_max_pct", "linearity_error_pct")}
    i0, i1 = int(lo.min()), int(hi.max())
    ptc.linearity_range = (i0, i1)
    x, y = t[i0:i1 + 1], signal[i0:i1 + 1]
    slope, offset = np.polynomial.polynomial.polyfit(x, y, 1, w=1 / y)[::-1]
    ptc.linearity_fit = (float(slope), float(offset))
    line = slope * t + offset
    ptc.linearity_deviation_pct = 100 * (signal - line) / line
    dev = ptc.linearity_deviation_pct[i0:i1 + 1]
    return {
        "linearity_error_min_pct": Metric(float(dev.min()), "%"),
        "linearity_error_max_pct": Metric(float(dev.max()), "%"),
        "linearity_error_pct": Metric(float(np.max(np.abs(dev))), "%"),
    }


def high_pass(image: np.ndarray) -> np.ndarray:
    """``image`` less its 5 x 5 box mean, without the 2-pixel border the box does not cover."""
    box = ndimage.uniform_filter(image.astype(np.float64), HIGH_PASS_SIZE, mode="nearest")
    b = HIGH_PASS_SIZE // 2
    out: np.ndarray = (image - box)[b:-b, b:-b]
    return out


def spatial_nonuniformity(lit: SpatialStats, dark: SpatialStats, gain_adu_per_e: float) -> dict[str, Metric]:
    """DSNU (e- and ADU), PRNU (high-pass and plain) from the spatial stacks; ``gain_adu_per_e`` NaN:
    DSNU in e- not determined."""
    out: dict[str, Metric] = {}
    s2_dark = dark.spatial_variance
    if s2_dark > 0:
        dsnu_adu = math.sqrt(s2_dark)
        out["dsnu_adu"] = Metric(dsnu_adu, "ADU")
        out["dsnu_e"] = Metric(dsnu_adu / gain_adu_per_e, "e-") if gain_adu_per_e > 0 else Metric(
            math.nan, "e-", reason="no system gain (no photon transfer)")
    else:
        why = (f"below what {dark.frames} dark frames resolve: the spatial variance less the temporal part is "
               f"{s2_dark:.3g} ADU^2 (take more frames)")
        out["dsnu_adu"] = Metric(math.nan, "ADU", reason=why)
        out["dsnu_e"] = Metric(math.nan, "e-", reason=why)
    level = lit.mean - dark.mean
    temporal = lit.temporal_variance.mean() / lit.frames + dark.temporal_variance.mean() / dark.frames
    if not level > SIGNAL_TO_NOISE_MIN * math.sqrt(temporal):
        why = f"no signal in the spatial frames (lit - dark = {level:.3g} ADU)"
        out["prnu_pct"] = Metric(math.nan, "%", reason=why)
        out["prnu_plain_pct"] = Metric(math.nan, "%", reason=why)
        return out
    plain = lit.spatial_variance - s2_dark
    hp = high_pass(lit.mean_image - dark.mean_image)
    s2 = float(hp.var(ddof=1)) / HIGH_PASS_WHITE_GAIN - temporal
    for name, variance in (("prnu_plain_pct", plain), ("prnu_pct", s2)):
        out[name] = Metric(100 * math.sqrt(variance) / level, "%") if variance > 0 else Metric(
            math.nan, "%", reason=f"below what {lit.frames} lit frames resolve (spatial variance less the temporal part: {variance:.3g} ADU^2)")
    return out


@dataclass
class Defects:
    """Defect pixels as (row, col) in the analysed frames; ``None``: could not be determined (why)."""

    hot: np.ndarray | None
    dead: np.ndarray | None
    noisy: np.ndarray | None
    reasons: dict[str, str]
    pixels: int
    shape: tuple[int, int] = (0, 0)


def hot_pixels(longest_dark: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    """(row, col) of the hot pixels of the mean of the longest dark pair, or None and why not."""
    if longest_dark is None:
        return None, "no dark frames"
    x = longest_dark.astype(np.float64)
    threshold = float(np.median(x)) + _outlier_z(x.size) * max(_clipped_sd(x), 0.5)
    hot = np.argwhere(x > threshold)
    if len(hot) > HOT_MAX_FRACTION * x.size:
        return None, (f"{len(hot)} pixels ({100 * len(hot) / x.size:.1f} %) stand out of the dark image: it has a pattern, "
                      "not isolated hot pixels")
    return hot, ""


def defect_pixels(hot_found: tuple[np.ndarray | None, str], shape: tuple[int, int], lit: SpatialStats | None,
                  dark: SpatialStats | None) -> Defects:
    """Hot (``hot_pixels``), dead and noisy pixels (rules in the module's conventions) of frames of ``shape``."""
    hot, why = hot_found
    reasons: dict[str, str] = {"hot": why} if hot is None else {}
    dead = noisy = None
    if lit is not None and dark is not None:
        response = lit.mean_image - dark.mean_image
        local = ndimage.uniform_filter(response, HIGH_PASS_SIZE, mode="nearest")
        noise = math.sqrt(float(lit.temporal_variance.mean()) / lit.frames + float(dark.temporal_variance.mean()) / dark.frames)
        lit_enough = local > DEAD_MIN_SNR * max(noise, math.sqrt(QUANTISATION_VARIANCE))
        if lit_enough.mean() >= 0.5:
            is_dead = (response < DEAD_FRACTION * local) & lit_enough
            if hot is not None and len(hot):  # a hot pixel clipped in the lit frames reads as dead: it is counted as hot
                is_dead[hot[:, 0], hot[:, 1]] = False
            dead = np.argwhere(is_dead)
        else:
            reasons["dead"] = (f"the lit frames are too dim to tell: the neighbourhood mean is above {DEAD_MIN_SNR:g} x the pixel noise "
                               f"({noise:.3g} ADU) on {100 * float(lit_enough.mean()):.0f} % of the pixels (needs half)")
    else:
        reasons["dead"] = "no lit and dark spatial frames"
    if dark is not None and dark.frames >= NOISY_MIN_FRAMES:
        sd_image = np.sqrt(dark.temporal_variance)
        if not np.any(sd_image > 0):
            reasons["noisy"] = "the dark frames do not change from one to the next: no temporal noise to compare"
            return Defects(hot, dead, None, reasons, int(shape[0] * shape[1]), shape)
        is_noisy = sd_image > NOISY_SD_FACTOR * max(float(np.median(sd_image)), 0.5)
        if hot is not None and len(hot):  # a hot pixel's dark shot noise makes it noisy too: it is counted as hot
            is_noisy[hot[:, 0], hot[:, 1]] = False
        noisy = np.argwhere(is_noisy)
    else:
        reasons["noisy"] = f"needs at least {NOISY_MIN_FRAMES} dark frames at one exposure"
    return Defects(hot, dead, noisy, reasons, int(shape[0] * shape[1]), shape)


def _clipped_sd(x: np.ndarray, clip: float = 4.0, rounds: int = 5) -> float:
    """SD of ``x`` after iteratively leaving out values more than ``clip`` SDs from the median."""
    keep = np.isfinite(x)
    sd = float(np.std(x[keep]))
    for _ in range(rounds):
        centre = float(np.median(x[keep]))
        keep = np.abs(x - centre) <= clip * max(sd, 1e-12)
        sd = float(np.std(x[keep], ddof=1)) if keep.sum() > 1 else 0.0
    return sd


def _outlier_z(n: int) -> float:
    """How many SDs above the median a pixel must be so that, over ``n`` normal pixels, one stands out
    by chance with probability ``OUTLIER_FAMILY_P`` (Bonferroni): about 5.8 for 512 x 512 pixels."""
    return float(special.ndtri(1 - OUTLIER_FAMILY_P / max(n, 1)))


def defect_metrics(d: Defects) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    total = 0
    known = True
    for kind in ("hot", "dead", "noisy"):
        found = getattr(d, kind)
        if found is None:
            out[f"{kind}_pixels"] = Metric(math.nan, "", reason=d.reasons[kind])
            known = False
        else:
            out[f"{kind}_pixels"] = Metric(float(len(found)), "")
            total += len(found)
    if known and d.pixels:
        union = {tuple(p) for kind in ("hot", "dead", "noisy") for p in getattr(d, kind)}
        out["defect_pixels_per_million"] = Metric(1e6 * len(union) / d.pixels, "")
    else:
        out["defect_pixels_per_million"] = Metric(math.nan, "", reason="; ".join(f"{k}: {v}" for k, v in d.reasons.items()))
    return out


NEEDS_LIGHT: dict[str, str] = {
    "system_gain_adu_per_e": "ADU/e-", "conversion_gain_e_per_adu": "e-/ADU", "temporal_dark_noise_e": "e-",
    "dark_current_e_per_s": "e-/s", "saturation_capacity_e": "e-", "snr_max": "", "snr_max_db": "dB",
    "dynamic_range_db": "dB", "linearity_error_min_pct": "%", "linearity_error_max_pct": "%", "linearity_error_pct": "%",
}
NEEDS_SATURATION: dict[str, str] = {
    "saturation_capacity_e": "e-", "snr_max": "", "snr_max_db": "dB", "dynamic_range_db": "dB",
    "linearity_error_min_pct": "%", "linearity_error_max_pct": "%", "linearity_error_pct": "%",
}
