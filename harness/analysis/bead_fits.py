"""Beads of one z-stack: detection, acceptance rules and per-bead fits (PSF, co-registration).
Pure functions of arrays (numpy, scipy); no file is read.

``find_beads(stack, pixel_um, z_um, rules)`` takes a ZYX stack (planes bottom to top), the pixel size
(um) and the z position of each plane (um, increasing), and returns every bead candidate found, each
accepted or rejected with its reason. ``rules_for`` derives the rules from the theoretical FWHMs.

Detection: the maximum projection along z, smoothed by a Gaussian of sigma = the theoretical lateral
sigma (at least 0.5 px); its local maxima (within a square of +-1 lateral FWHM) that stand more than
``DETECT_SIGMAS`` robust SDs (1.4826 MAD) above its median are the candidates. A candidate within
``satellite_um`` of one at least ``SATELLITE_RATIO`` (10) times higher (above the median) is that
bead's out-of-focus light (the rings of a defocused widefield PSF, a few % of its peak, reach the
geometric blur radius z tan(asin(NA / n)) at the stack's ends), not a bead: it is left out and
counted (``satellites``). A real bead ten times fainter than a neighbour is left out with them.

Acceptance rules, checked in this order (the first that fails is the bead's reason):

1. ``border``: the fit box (+-``box_half_px`` around the brightest pixel) must lie inside the image;
2. ``not_isolated``: no other candidate within ``isolation_um`` (lateral distance; default 10
   theoretical lateral FWHMs, at least the box width: boxes do not overlap);
3. ``saturated``: no pixel of the bead's box, in any plane, at the saturation level;
4. ``low_signal``: signal-to-noise ratio >= ``snr_min`` (10): the peak above the local background
   (median of the 2-pixel outer ring of the box in the bead's brightest plane), over the noise
   (1.4826 MAD of that ring; at least the rounding noise sqrt(1/12) ADU);
5. ``fit_failed``: each profile fit converges with its centre inside the profile and a width
   between 0.1 px (plane) and the profile's length;
6. ``axial_edge``: the fitted z centre at least ``axial_margin_um`` (1.5 theoretical axial FWHMs)
   from the first and the last plane (the profile needs its tails);
7. ``aggregate`` (among the beads passing 1-6, when there are at least 3): integrated signal above
   ``AGGREGATE_BRIGHTNESS`` (1.75) x their median (two beads or more together), or mean lateral FWHM
   above ``AGGREGATE_WIDTH`` (1.3) x their median.

Fits (the model of MetroloJ_QC's PSFprofiler: ImageJ's CurveFitter Gaussian y = a + (b - a)
exp(-(x - c)^2 / (2 d^2)), FWHM = 2 sqrt(2 ln 2) d): 1-D profiles through the bead's centre pixel,
x along its row and y along its column in its brightest plane, z along its pixel column through the
stack; offset, amplitude, centre and sigma free (least squares, ``scipy.optimize.curve_fit``). The
profiles go through the pixel nearest the fitted centre (fitted once from the brightest pixel, then
again if the centre pixel moved). Lateral profiles are fitted with the pixel-integrated Gaussian
(each pixel the mean of the Gaussian over its width: erf differences): a camera pixel integrates the
image, and at 0.252 um/px (20x/0.75, coarser than Nyquist) a plain Gaussian fit widens the FWHM by
about the pixel width (sigma_plain^2 ~ sigma^2 + w^2/12, +11 % there); the plain fit (MetroloJ_QC's) is
reported too (``fwhm_plain_um``). The z profile is a point sample per plane: plain Gaussian, on the
planes' z positions. The bead's 3-D centre is the fitted centres (x, y: pixel units from the image's
first pixel centre, times the pixel size; z: um on the given z axis), sub-pixel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize, special

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
DETECT_SIGMAS = 6.0
ISOLATION_FWHM = 10.0
SNR_MIN = 10.0
AXIAL_MARGIN_FWHM = 1.5
SATELLITE_RATIO = 10.0
AGGREGATE_BRIGHTNESS = 1.75
AGGREGATE_WIDTH = 1.3
AGGREGATE_MIN_BEADS = 3
RING_PX = 2
REASONS = ("border", "not_isolated", "saturated", "low_signal", "fit_failed", "axial_edge", "aggregate")


@dataclass(frozen=True)
class Rules:
    """The acceptance rules of one analysis (stated in its result)."""

    box_half_px: int  # the fit box is (2 box_half_px + 1) px wide
    isolation_um: float
    axial_margin_um: float
    saturation_adu: float  # math.inf: none
    lateral_sigma_px: float  # expected, for detection smoothing and the first guess
    axial_sigma_um: float
    satellite_um: float = 0.0  # out-of-focus light within this distance of a 10x brighter bead is not a bead
    snr_min: float = SNR_MIN
    detect_sigmas: float = DETECT_SIGMAS

    def text(self) -> str:
        return (f"spots within {self.satellite_um:.3g} um of a spot {SATELLITE_RATIO:g} x higher are its out-of-focus light, not beads; "
                f"fit box {2 * self.box_half_px + 1} px wide, inside the image; no other bead within {self.isolation_um:.3g} um; "
                f"no pixel of the box at the saturation level ({self.saturation_adu:g} ADU); signal-to-noise ratio >= {self.snr_min:g}; "
                f"fits converge; z centre at least {self.axial_margin_um:.3g} um from the stack's ends; not an aggregate "
                f"(integrated signal <= {AGGREGATE_BRIGHTNESS:g} x and lateral FWHM <= {AGGREGATE_WIDTH:g} x the median of the beads)")


def rules_for(pixel_um: float, lateral_fwhm_um: float, axial_fwhm_um: float, saturation_adu: float,
              isolation_fwhm: float = ISOLATION_FWHM, snr_min: float = SNR_MIN, blur_um: float = 0.0) -> Rules:
    """The rules for a stack of ``pixel_um`` pixels, from the theoretical FWHMs; ``blur_um``: the
    geometric blur radius at the stack's ends (half its extent x tan(asin(NA / n))), the reach of a
    bead's out-of-focus light (0: twice the isolation distance)."""
    if not (pixel_um > 0 and lateral_fwhm_um > 0 and axial_fwhm_um > 0):
        raise ValueError(f"pixel size and FWHMs must be positive: {pixel_um}, {lateral_fwhm_um}, {axial_fwhm_um}")
    fwhm_px = lateral_fwhm_um / pixel_um
    half = max(4, math.ceil(3.0 * fwhm_px))
    isolation = max(isolation_fwhm * lateral_fwhm_um, (2 * half + 1) * pixel_um)
    return Rules(box_half_px=half, isolation_um=isolation, satellite_um=max(blur_um, isolation) if blur_um else 2 * isolation,
                 axial_margin_um=AXIAL_MARGIN_FWHM * axial_fwhm_um, saturation_adu=saturation_adu,
                 lateral_sigma_px=fwhm_px / FWHM_PER_SIGMA, axial_sigma_um=axial_fwhm_um / FWHM_PER_SIGMA, snr_min=snr_min)


@dataclass(frozen=True)
class Fit:
    """One profile and its Gaussian fit: ``coords`` in um, ``values`` in ADU."""

    axis: str  # "x", "y" or "z"
    coords: list[float]
    values: list[float]
    offset: float
    amplitude: float
    centre_um: float
    sigma_um: float
    r2: float
    plain_sigma_um: float = math.nan  # the plain Gaussian fit of a lateral profile (MetroloJ_QC's model)

    @property
    def fwhm_um(self) -> float:
        return FWHM_PER_SIGMA * self.sigma_um

    @property
    def fwhm_plain_um(self) -> float:
        return FWHM_PER_SIGMA * self.plain_sigma_um


@dataclass
class Bead:
    """A candidate: where it was found, its fits, and whether it was accepted (``reason`` empty)."""

    x_px: int  # its centre pixel (column, row, plane)
    y_px: int
    z_index: int
    reason: str = ""  # one of REASONS, empty when accepted
    detail: str = ""  # the reason in words
    snr: float = math.nan
    background_adu: float = math.nan
    integrated_adu: float = math.nan  # signal above background in its box, brightest plane
    fits: dict[str, Fit] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.reason

    @property
    def centre_um(self) -> tuple[float, float, float]:
        """(x, y, z) fitted centre (NaN for an axis not fitted)."""
        return tuple(self.fits[a].centre_um if a in self.fits else math.nan for a in "xyz")  # type: ignore[return-value]

    def fwhm_um(self, axis: str) -> float:
        return self.fits[axis].fwhm_um if axis in self.fits else math.nan

    def reject(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


# --- models ---------------------------------------------------------------------------------------
def gaussian(x: np.ndarray, offset: float, amplitude: float, centre: float, sigma: float) -> np.ndarray:
    """Point-sampled Gaussian with offset (MetroloJ_QC's and microscope-metrics' model)."""
    return offset + amplitude * np.exp(-((x - centre) ** 2) / (2.0 * sigma**2))


def pixel_gaussian(x: np.ndarray, offset: float, amplitude: float, centre: float, sigma: float) -> np.ndarray:
    """The Gaussian averaged over pixels of width 1 centred at ``x`` (``amplitude``: the Gaussian's
    own peak, so ``sigma`` is the continuous image's)."""
    s = math.sqrt(2.0) * sigma
    area = special.erf((x + 0.5 - centre) / s) - special.erf((x - 0.5 - centre) / s)
    return offset + amplitude * sigma * math.sqrt(math.pi / 2.0) * area


def fit_profile(x: np.ndarray, y: np.ndarray, sigma_guess: float, pixel_integrated: bool = False) -> tuple[np.ndarray, float]:
    """Least-squares fit of offset, amplitude, centre, sigma (in the units of ``x``); returns the
    parameters and R^2. Raises ValueError when the fit does not converge or is outside the profile
    (centre outside it, sigma below a tenth of its spacing or above its length)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 5 or not np.all(np.isfinite(y)):
        raise ValueError("fewer than 5 finite points")
    step = float(np.min(np.diff(x))) if x.size > 1 else 1.0
    length = float(x[-1] - x[0])
    p0 = [float(y.min()), float(y.max() - y.min()), float(x[int(np.argmax(y))]), float(min(max(sigma_guess, step), length / 4))]
    model = pixel_gaussian if pixel_integrated else gaussian
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, _ = optimize.curve_fit(model, x, y, p0=p0, maxfev=2000)
    except (RuntimeError, optimize.OptimizeWarning, ValueError) as exc:
        raise ValueError(f"no convergence ({exc})") from None
    popt[3] = abs(popt[3])
    if not np.all(np.isfinite(popt)) or not (x[0] <= popt[2] <= x[-1]) or not (0.1 * step <= popt[3] <= length) or popt[1] <= 0:
        raise ValueError(f"fit outside the profile (centre {popt[2]:.3g}, sigma {popt[3]:.3g}, amplitude {popt[1]:.3g})")
    residual = float(np.sum((y - model(x, *popt)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    return popt, 1.0 - residual / total if total > 0 else math.nan


# --- detection ------------------------------------------------------------------------------------
def _robust_sd(values: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def candidates(stack: np.ndarray, rules: Rules, pixel_um: float) -> tuple[list[tuple[int, int]], int]:
    """(row, column) of the local maxima of the smoothed maximum projection above the threshold,
    brightest first, without the satellites; and how many satellites were left out."""
    mip = stack.max(axis=0).astype(np.float64)
    smooth = ndimage.gaussian_filter(mip, max(0.5, rules.lateral_sigma_px), mode="nearest")
    median = float(np.median(smooth))
    level = median + rules.detect_sigmas * max(_robust_sd(smooth), math.sqrt(1 / 12))
    size = 2 * max(1, round(rules.lateral_sigma_px * FWHM_PER_SIGMA)) + 1
    peaks = (smooth == ndimage.maximum_filter(smooth, size=size, mode="nearest")) & (smooth > level)
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-smooth[rows, cols])
    kept: list[tuple[int, int, float]] = []
    satellites = 0
    reach = rules.satellite_um / pixel_um
    for i in order:
        r, c, height = int(rows[i]), int(cols[i]), float(smooth[rows[i], cols[i]]) - median
        if any(h >= SATELLITE_RATIO * height and math.hypot(rr - r, cc - c) <= reach for rr, cc, h in kept):
            satellites += 1
        else:
            kept.append((r, c, height))
    return [(r, c) for r, c, _ in kept], satellites


def planes_identical(stack: np.ndarray) -> bool:
    """Whether every plane equals the first (a camera whose image does not change with focus)."""
    return bool(np.all(stack == stack[:1]))


def find_beads(stack: np.ndarray, pixel_um: float, z_um: Sequence[float], rules: Rules) -> list[Bead]:
    """Every candidate bead of a ZYX ``stack`` with its fits and verdict (module docstring)."""
    return detect(stack, pixel_um, z_um, rules)[0]


def detect(stack: np.ndarray, pixel_um: float, z_um: Sequence[float], rules: Rules) -> tuple[list[Bead], int]:
    """``find_beads`` and the number of satellites left out. Raises ValueError for a stack that is
    not 3-D or whose ``z_um`` does not match its planes or does not increase."""
    data = np.asarray(stack)
    if data.dtype.kind != "f":  # camera ADU (integers below 2^24) are exact in float32: half the memory of float64
        data = data.astype(np.float32)
    z = np.asarray(z_um, dtype=np.float64)
    if data.ndim != 3 or z.shape != (data.shape[0],):
        raise ValueError(f"a ZYX stack and one z per plane: stack {data.shape}, {z.size} z positions")
    if z.size > 1 and not np.all(np.diff(z) > 0):
        raise ValueError("the z positions must increase")
    found, satellites = candidates(data, rules, pixel_um)
    beads = []
    for row, col in found:
        column = ndimage.uniform_filter(data[:, max(row - 1, 0):row + 2, max(col - 1, 0):col + 2], size=(1, 3, 3), mode="nearest")
        bead = Bead(x_px=col, y_px=row, z_index=int(np.argmax(column[:, min(row, 1), min(col, 1)])))
        _judge(bead, data, pixel_um, z, rules, found)
        beads.append(bead)
    _aggregates(beads)
    return beads, satellites


def _judge(bead: Bead, data: np.ndarray, pixel_um: float, z: np.ndarray, rules: Rules, found: list[tuple[int, int]]) -> None:
    h, w = data.shape[1:]
    r = rules.box_half_px
    row, col = bead.y_px, bead.x_px
    if row - r < 0 or col - r < 0 or row + r >= h or col + r >= w:
        bead.reject("border", f"within {r} px of the image's edge")
        return
    others = [math.hypot(rr - row, cc - col) * pixel_um for rr, cc in found if (rr, cc) != (row, col)]
    if others and min(others) < rules.isolation_um:
        bead.reject("not_isolated", f"another bead {min(others):.3g} um away (< {rules.isolation_um:.3g} um)")
        return
    box = data[:, row - r:row + r + 1, col - r:col + r + 1]
    if float(box.max()) >= rules.saturation_adu:
        bead.reject("saturated", f"{int(np.count_nonzero(box >= rules.saturation_adu))} voxels at the saturation level ({rules.saturation_adu:g} ADU)")
        return
    plane = box[bead.z_index]
    ring = np.ones(plane.shape, dtype=bool)
    ring[RING_PX:-RING_PX, RING_PX:-RING_PX] = False
    plane = plane.astype(np.float64)
    bead.background_adu = float(np.median(plane[ring]))
    noise = max(_robust_sd(plane[ring]), math.sqrt(1 / 12))
    bead.snr = (float(plane[r, r]) - bead.background_adu) / noise
    bead.integrated_adu = float(np.sum(plane - bead.background_adu))
    if bead.snr < rules.snr_min:
        bead.reject("low_signal", f"signal-to-noise ratio {bead.snr:.3g} < {rules.snr_min:g}")
        return
    try:
        _fit(bead, box, pixel_um, z, rules)
    except ValueError as exc:
        bead.reject("fit_failed", str(exc))
        return
    zc = bead.fits["z"].centre_um
    if zc - z[0] < rules.axial_margin_um or z[-1] - zc < rules.axial_margin_um:
        bead.reject("axial_edge", f"z centre {zc:.3g} um, within {rules.axial_margin_um:.3g} um of the stack's ends ({z[0]:.3g}, {z[-1]:.3g} um)")


def _fit(bead: Bead, box: np.ndarray, pixel_um: float, z: np.ndarray, rules: Rules) -> None:
    """The three profile fits through the box's centre pixel, then through the pixel nearest the
    fitted centre if it moved (box coordinates; results in um of the whole image)."""
    r = rules.box_half_px
    iy, ix, iz = r, r, bead.z_index
    for _ in range(2):
        fits = _fits_at(box, iy, ix, iz, z, rules)
        ny = min(max(round(fits["y"][0][2]), 1), 2 * r - 1)
        nx = min(max(round(fits["x"][0][2]), 1), 2 * r - 1)
        nz = int(np.argmin(np.abs(z - fits["z"][0][2])))
        if (ny, nx, nz) == (iy, ix, iz):
            break
        iy, ix, iz = ny, nx, nz
    origin = {"x": bead.x_px - r, "y": bead.y_px - r}
    out = {}
    for axis, (p, r2, coords, values, plain) in fits.items():
        if axis == "z":
            out[axis] = Fit("z", coords.tolist(), values.tolist(), p[0], p[1], p[2], p[3], r2)
        else:
            scale = pixel_um
            out[axis] = Fit(axis, ((coords + origin[axis]) * scale).tolist(), values.tolist(), p[0], p[1],
                            (p[2] + origin[axis]) * scale, p[3] * scale, r2, plain_sigma_um=plain * scale)
    bead.fits = out
    bead.z_index = iz


def _fits_at(box: np.ndarray, iy: int, ix: int, iz: int, z: np.ndarray, rules: Rules) -> dict[str, tuple[np.ndarray, float, np.ndarray, np.ndarray, float]]:
    px = np.arange(box.shape[2], dtype=np.float64)
    out = {}
    for axis, values in (("x", box[iz, iy, :]), ("y", box[iz, :, ix])):
        try:
            p, r2 = fit_profile(px, values, rules.lateral_sigma_px, pixel_integrated=True)
            plain, _ = fit_profile(px, values, rules.lateral_sigma_px)
        except ValueError as exc:
            raise ValueError(f"{axis} profile: {exc}") from None
        out[axis] = (p, r2, px, values, float(plain[3]))
    try:
        p, r2 = fit_profile(z, box[:, iy, ix], rules.axial_sigma_um)
    except ValueError as exc:
        raise ValueError(f"z profile: {exc}") from None
    out["z"] = (p, r2, z, box[:, iy, ix], math.nan)
    return out


def _aggregates(beads: list[Bead]) -> None:
    good = [b for b in beads if b.accepted]
    if len(good) < AGGREGATE_MIN_BEADS:
        return
    brightness = float(np.median([b.integrated_adu for b in good]))
    width = float(np.median([(b.fwhm_um("x") + b.fwhm_um("y")) / 2 for b in good]))
    for b in good:
        lateral = (b.fwhm_um("x") + b.fwhm_um("y")) / 2
        if brightness > 0 and b.integrated_adu > AGGREGATE_BRIGHTNESS * brightness:
            b.reject("aggregate", f"integrated signal {b.integrated_adu / brightness:.3g} x the median of the beads (> {AGGREGATE_BRIGHTNESS:g})")
        elif lateral > AGGREGATE_WIDTH * width:
            b.reject("aggregate", f"lateral FWHM {lateral / width:.3g} x the median of the beads (> {AGGREGATE_WIDTH:g})")


def reason_counts(beads: Sequence[Bead]) -> dict[str, int]:
    """Rejected beads by reason (every reason listed, 0 included)."""
    return {reason: sum(1 for b in beads if b.reason == reason) for reason in REASONS}

