"""Focus stability and Z repeatability (QUAREP-LiMi WG6 for Z) from z-stacks of a bead field.

Conventions: the focal position of one z-stack is found from its focus curve, independently of any
per-bead PSF fit: each plane's sharpness is its normalised variance, sum((I - mean)^2) / (N mean)
over the whole frame (Groen et al. 1985; hot pixels filled first), against the plane's Z drive
position as the frame log reports it (z_um). The curve's peak is located sub-plane by a least-squares
Gaussian + constant fitted to the planes within 1.5 x the curve's FWHM of the peak (at least 5
planes), the window re-centred on the fitted peak twice; the focal position is the Gaussian's centre,
in Z drive coordinates (um), and its precision the standard error of that centre from the fit, each
point's uncertainty being the curve's noise (below): photon noise, not the drive's per-plane error
nor the Gaussian's misfit (a symmetric curve's centre is unbiased by it). On synthetic widefield
bead stacks (Nyquist / 2 steps) the centre is within 0.01 um of the truth with photon noise; with a
per-plane drive error of SD s it scatters by about 0.5 s (tests/test_focus_analysis.py). With
spherical aberration the curve is asymmetric and its centre differs from the on-axis intensity maximum
by a constant (simulated: -0.04 um at 0.05 waves rms and NA 0.75, -0.27 um at 0.1 waves and NA 0.45);
drift, range and return errors are differences and do not see it.
Not determined (the metric says why): fewer than 5 planes; a flat curve (the peak, max - min, not
above 10 x the curve's noise, the robust SD of its second differences / sqrt(6): e.g. a camera whose
image does not change with Z); a curve that does not fall to half its height on both sides of the
peak within the stack (the focus is at or beyond the stack's edge); a fit that fails or puts the
centre outside its window.
Focus stability: one focal position per z-stack, at the mean station time of its planes; drift =
slope of the least-squares line through them (um/h), range = max - min, SD with n - 1, residual SD
about the line; every z-stack is used (no warm-up is excluded: a protocol waits before its first
z-stack for that).
Z repeatability (a z-stack re-approaches every plane from below, which erases the error of the move
before it, so the return position is located from single frames): a z_reference frame, a move of the
Z drive away (+z or -z, by the move size) and back, a z_return frame, both taken at a mark on the
flank of the focus curve (about half its FWHM from focus); each frame's normalised variance is
located on that flank of the last z_calibration z-stack taken before the reference frame, whose
focus curve is modelled by a Pearson VII peak + constant (b + a (1 + ((z - z0)/w)^2 (2^(1/m) - 1))^-m,
FWHM 2w, Lorentzian m = 1 to Gaussian m -> inf) fitted within 1.5 FWHM of its focal position. The
located z is where the calibration planes (reported z_um) show the same sharpness; its standard error
is the curve's noise over the model's slope there. Return error dz = z(return) - z(reference), in um:
the drive's displacement on return (positive: it sits higher), the same sign as the XY stage's
displacement; the calibration's own error cancels to first order. Not located (with the reason): a
frame within 0.15 FWHM of the calibration's focus, a sharpness outside the model's range, a z outside
the calibrated range. Tables per move size, for all directions and per direction (+z, -z): n, mean,
SD (n - 1) and max |dz|, as the XY stage repeatability; max_displacement_um is max |dz|. Focus drift
between the two frames (seconds) is in dz.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from harness.analysis.metric import Metric
from harness.analysis.stage_metrics import pair_frames, repeatability_tables
from harness.common.errors import BadInput

Floats = Sequence[float] | np.ndarray
MIN_PLANES = 5
FLAT_SNR = 10.0  # the peak must stand this many curve-noise SDs above the curve's minimum
WINDOW_FWHM = 1.5  # fit window half-width, in FWHMs of the curve
FIT_ITERATIONS = 3


def normalised_variance(image: np.ndarray) -> float:
    """sum((I - mean)^2) / (N mean) of one frame; BadInput for a frame whose mean is not positive."""
    values = np.asarray(image, dtype=np.float64)
    mean = float(values.mean())
    if not (math.isfinite(mean) and mean > 0):
        raise BadInput(f"normalised variance: the frame's mean is {mean:g}, not a positive number")
    return float(values.var() / mean)


@dataclass(frozen=True)
class FocusFit:
    """The focal position of one focus curve (``z_um`` NaN when not determined, ``reason`` says why)."""

    z_um: float
    se_um: float = math.nan  # standard error of z_um from the fit
    fwhm_um: float = math.nan  # FWHM of the fitted Gaussian
    window_um: tuple[float, float] = (math.nan, math.nan)  # the planes the last fit used
    model: tuple[float, float, float, float] = (math.nan,) * 4  # amplitude, centre, sigma, constant
    reason: str = ""

    @property
    def determined(self) -> bool:
        return math.isfinite(self.z_um)


def _gauss(z: np.ndarray, a: float, z0: float, s: float, b: float) -> np.ndarray:
    return b + a * np.exp(-((z - z0) ** 2) / (2 * s * s))


def curve_noise(sharpness: np.ndarray) -> float:
    """Robust SD of the curve's noise: 1.4826 MAD of its second differences / sqrt(6) (0 for fewer than 3 points)."""
    if sharpness.size < 3:
        return 0.0
    d2 = np.diff(sharpness, 2)
    return 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6)


def _half_width(z: np.ndarray, s: np.ndarray, k: int, half: float) -> tuple[float | None, float | None]:
    """Where the curve first falls below ``half`` below and above plane ``k`` (linear interpolation); None: never."""
    lo_z = hi_z = None
    for i in range(k, 0, -1):
        if s[i - 1] < half:
            lo_z = z[i - 1] + (half - s[i - 1]) / (s[i] - s[i - 1]) * (z[i] - z[i - 1])
            break
    for i in range(k, len(s) - 1):
        if s[i + 1] < half:
            hi_z = z[i] + (s[i] - half) / (s[i] - s[i + 1]) * (z[i + 1] - z[i])
            break
    return lo_z, hi_z


def focal_position(z_um: Floats, sharpness: Floats) -> FocusFit:
    """The peak of a focus curve (sharpness against Z drive position), as the module states; never raises."""
    z = np.asarray(z_um, dtype=np.float64)
    s = np.asarray(sharpness, dtype=np.float64)
    if z.size != s.size:
        return FocusFit(math.nan, reason=f"{z.size} positions for {s.size} sharpness values")
    if z.size < MIN_PLANES:
        return FocusFit(math.nan, reason=f"the z-stack has {z.size} usable planes, fewer than {MIN_PLANES}")
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(s))):
        return FocusFit(math.nan, reason="the z positions or the focus curve are not all finite")
    order = np.argsort(z, kind="stable")
    z, s = z[order], s[order]
    if np.any(np.diff(z) <= 0):
        return FocusFit(math.nan, reason="two planes of the z-stack have the same Z position")
    k = int(np.argmax(s))
    base, height, noise = float(s.min()), float(s[k] - s.min()), curve_noise(s)
    if not height > FLAT_SNR * noise:
        return FocusFit(math.nan, reason=(f"the focus curve is flat: its peak ({height:.3g}) is not above {FLAT_SNR:g} x its noise "
                                          f"({noise:.3g}) over z {z[0]:.3f}..{z[-1]:.3f} um: the image does not change with Z"))
    lo, hi = _half_width(z, s, k, base + height / 2)
    if lo is None or hi is None:
        side = "below" if lo is None else "above"
        return FocusFit(math.nan, reason=(f"the focus curve does not fall to half its height {side} its peak (z {z[k]:.3f} um) "
                                          f"within the z-stack ({z[0]:.3f}..{z[-1]:.3f} um): the focus is at or {side} its "
                                          f"{'lower' if lo is None else 'upper'} edge"))
    fwhm, centre = hi - lo, float(z[k])
    try:
        for _ in range(FIT_ITERATIONS):
            dist = np.abs(z - centre)
            sel = dist <= WINDOW_FWHM * fwhm
            if sel.sum() < MIN_PLANES:
                sel = dist <= np.sort(dist)[MIN_PLANES - 1]
            p0 = (height, centre, fwhm / 2.3548, base)
            p, cov = curve_fit(_gauss, z[sel], s[sel], p0=p0, sigma=np.full(int(sel.sum()), max(noise, 1e-12 * height)),
                               absolute_sigma=True, maxfev=5000)
            if not (p[0] > 0 and np.all(np.isfinite(p)) and z[sel][0] <= p[1] <= z[sel][-1]):
                return FocusFit(math.nan, reason=f"the Gaussian fit of the focus curve did not find a peak within z "
                                                 f"{z[sel][0]:.3f}..{z[sel][-1]:.3f} um")
            centre = float(p[1])
    except (RuntimeError, ValueError) as exc:
        return FocusFit(math.nan, reason=f"the Gaussian fit of the focus curve failed: {exc}")
    se = float(np.sqrt(cov[1, 1])) if np.all(np.isfinite(cov)) else math.nan
    return FocusFit(centre, se, float(2.3548 * abs(p[2])), (float(z[sel][0]), float(z[sel][-1])),
                    (float(p[0]), float(p[1]), float(abs(p[2])), float(p[3])))


# --- z-stacks of a frame log ------------------------------------------------------------------------
@dataclass
class ZStack:
    """One z-stack of a stack's frame log: its planes that were recorded, and their focus."""

    channel: str
    index: int  # k: the frame log's t // nz
    tag: str
    context: dict[str, Any]
    rows: list[dict[str, str]] = field(default_factory=list)  # recorded planes ('ok'), in frame-log order
    planned: int = 0  # planes in the frame log, recorded or not
    focus: FocusFit | None = None
    curve: dict[str, list[float]] = field(default_factory=dict)  # z_um, sharpness: the focus curve measured

    @property
    def time_s(self) -> float:
        return float(np.mean([float(r["time_s"]) for r in self.rows])) if self.rows else math.nan

    @property
    def status(self) -> str:
        """'ok' when it has enough recorded planes for a focus curve."""
        return "ok" if len(self.rows) >= MIN_PLANES else "missing"


def z_stacks(rows: list[dict[str, str]], nz: int, tags: Sequence[str]) -> list[ZStack]:
    """The z-stacks whose tag is one of ``tags``, in acquisition order (frame-log rows of ``nz`` planes
    each; a plane's z-stack is its ``t // nz`` in its channel). BadInput for nz < 1."""
    if nz < 1:
        raise BadInput(f"z-stacks: the stack has {nz} planes per z-stack (OME SizeZ)")
    out: dict[tuple[str, int], ZStack] = {}
    for row in rows:
        if row.get("tag") not in tags:
            continue
        key = (row["channel"], int(row["t"]) // nz)
        stack = out.get(key)
        if stack is None:
            stack = out[key] = ZStack(row["channel"], key[1], row["tag"], json.loads(row.get("context") or "{}"))
        stack.planned += 1
        if row.get("status") == "ok":
            stack.rows.append(row)
    return list(out.values())


def measure(stack: ZStack, page: Callable[[int], np.ndarray]) -> FocusFit:
    """The stack's focus curve from its pages (``page(ifd)``) and its focal position; stored on it."""
    if stack.status != "ok":
        stack.focus = FocusFit(math.nan, reason=f"z-stack {stack.index}: {len(stack.rows)} of {stack.planned} planes recorded, "
                                                f"fewer than {MIN_PLANES}")
        return stack.focus
    z = [float(r["z_um"]) if r.get("z_um") not in (None, "") else math.nan for r in stack.rows]
    sharp = [normalised_variance(page(int(r["ifd"]))) for r in stack.rows]
    stack.focus = focal_position(z, sharp)
    stack.curve = {"z_um": z, "sharpness": sharp}
    return stack.focus


# --- focus stability -----------------------------------------------------------------------------
def stability_metrics(time_s: Floats, z_um: Floats) -> tuple[dict[str, Metric], dict[str, float]]:
    """Drift (um/h), range, SD and residual SD of focal positions over time, as the module states; the
    line (``slope_um_per_h``, ``intercept_um`` at t = 0, and from 3 positions on ``slope_se_um_per_h``). Positions not determined (NaN) are left out;
    a metric that needs more of them says so."""
    t = np.asarray(time_s, dtype=np.float64)
    z = np.asarray(z_um, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(z)
    t, z = t[ok], z[ok]
    n = int(t.size)
    none = "no z-stack with a focal position"

    def need(k: int, what: str) -> str:
        return "" if n >= k else f"{what} needs at least {k} z-stacks with a focal position, there {'is' if n == 1 else 'are'} {n}"

    line = {"slope_um_per_h": math.nan, "intercept_um": math.nan}
    if n >= 2 and np.ptp(t) > 0:
        slope, intercept = np.polyfit(t / 3600.0, z, 1)
        line = {"slope_um_per_h": float(slope), "intercept_um": float(intercept)}
    drift_why = need(2, "a drift") or ("" if np.ptp(t) > 0 else "the z-stacks were taken at one time")
    residual = z - (line["intercept_um"] + line["slope_um_per_h"] * t / 3600.0) if n >= 3 else np.array([])
    if n >= 3 and np.ptp(t) > 0:  # the slope's standard error: residual variance over the spread of the times
        line["slope_se_um_per_h"] = float(np.sqrt(np.sum(residual**2) / (n - 2) / np.sum((t / 3600.0 - np.mean(t / 3600.0)) ** 2)))
    metrics = {
        "focus_drift_um_per_h": Metric(line["slope_um_per_h"] if not drift_why else math.nan, "um/h", drift_why),
        "focus_range_um": Metric(float(np.ptp(z)) if n else math.nan, "um", "" if n else none),
        "focus_sd_um": Metric(float(np.std(z, ddof=1)) if n > 1 else math.nan, "um", need(2, "an SD")),
        "focus_residual_sd_um": Metric(float(np.std(residual, ddof=2)) if n >= 3 and not drift_why else math.nan, "um",
                                       need(3, "an SD about the line") or drift_why),
        "focus_stacks": Metric(float(n), ""),
    }
    return metrics, line


# --- Z repeatability: single frames located against a calibration z-stack --------------------------
@dataclass(frozen=True)
class Calibration:
    """A calibration z-stack's focus curve as a Pearson VII peak + constant, to locate single frames
    on one of its flanks (``locate``); ``reason`` says why it cannot (``params`` NaN then)."""

    params: tuple[float, float, float, float, float]  # amplitude a, centre z0, half width w, shape m, constant b
    noise: float  # the curve's noise (``curve_noise``): the SD of one sharpness value
    window_um: tuple[float, float]  # the planes fitted: the calibrated range
    index: int = -1  # the calibration z-stack's index in its stack
    time_s: float = math.nan
    reason: str = ""

    def sharpness(self, z: np.ndarray | float) -> np.ndarray:
        return _pearson7(np.asarray(z, dtype=np.float64), *self.params)


def _pearson7(z: np.ndarray, a: float, z0: float, w: float, m: float, b: float) -> np.ndarray:
    return b + a * (1 + ((z - z0) / w) ** 2 * (2 ** (1 / m) - 1)) ** (-m)


def calibrate(z_um: Floats, sharpness: Floats, focus: FocusFit, index: int = -1, time_s: float = math.nan) -> Calibration:
    """The Pearson VII + constant model of a focus curve whose focal position was found (``focus``),
    fitted to the planes within 1.5 FWHM of it (the shape m bounded to 0.5..50: Lorentzian m = 1 to
    near-Gaussian); never raises."""
    nan5 = (math.nan,) * 5
    if not focus.determined:
        return Calibration(nan5, math.nan, (math.nan, math.nan), index, time_s, f"the calibration z-stack has no focal position: {focus.reason}")
    z = np.asarray(z_um, dtype=np.float64)
    s = np.asarray(sharpness, dtype=np.float64)
    order = np.argsort(z)
    z, s = z[order], s[order]
    sel = np.abs(z - focus.z_um) <= WINDOW_FWHM * focus.fwhm_um
    a, z0, sigma, b = focus.model
    try:
        p, _ = curve_fit(_pearson7, z[sel], s[sel], p0=(a, z0, 1.1774 * sigma, 2.0, b), maxfev=10000,
                         bounds=([0, z[sel][0], 1e-3 * focus.fwhm_um, 0.5, -np.inf], [np.inf, z[sel][-1], 10 * focus.fwhm_um, 50, np.inf]))
    except (RuntimeError, ValueError) as exc:
        return Calibration(nan5, math.nan, (math.nan, math.nan), index, time_s, f"the calibration model (Pearson VII) did not fit: {exc}")
    params = (float(p[0]), float(p[1]), float(p[2]), float(p[3]), float(p[4]))
    return Calibration(params, curve_noise(s), (float(z[sel][0]), float(z[sel][-1])), index, time_s)


NEAR_FOCUS_FWHM = 0.15  # a frame this close to the calibration's focus (in FWHMs of its curve) cannot be located


def locate(cal: Calibration, sharpness: float, near_z_um: float) -> tuple[float, float, str]:
    """(z, standard error, reason) of a single frame with this sharpness, taken with the Z drive reported
    at ``near_z_um``: where the calibration model has that sharpness on the flank that ``near_z_um`` is on,
    in the calibration z-stack's Z drive coordinates. The standard error is the curve's noise over
    the model's slope there. NaN and a reason when it cannot be located."""
    if cal.reason:
        return math.nan, math.nan, cal.reason
    a, z0, w, m, b = cal.params
    fwhm = 2 * w
    side = 1.0 if near_z_um >= z0 else -1.0
    if abs(near_z_um - z0) < NEAR_FOCUS_FWHM * fwhm:
        return math.nan, math.nan, (f"the frame was taken {near_z_um - z0:+.3f} um from the calibration's focus (within {NEAR_FOCUS_FWHM:g} x its "
                                    f"FWHM {fwhm:.3f} um): the sharpness hardly changes with z there; mark a position on the focus "
                                    "curve's flank (about half its FWHM from focus)")
    rise = sharpness - b
    if not (0 < rise <= a):
        return math.nan, math.nan, (f"the frame's sharpness {sharpness:.4g} is outside the calibration curve's range "
                                    f"({b:.4g}..{a + b:.4g}): the frame is out of the calibrated z range or the light changed")
    k = 2 ** (1 / m) - 1
    q = ((a / rise) ** (1 / m) - 1) / k
    z = z0 + side * w * math.sqrt(max(q, 0.0))
    if not (cal.window_um[0] <= z <= cal.window_um[1]):
        return math.nan, math.nan, (f"the frame locates at z {z:.3f} um, outside the calibrated range {cal.window_um[0]:.3f}.."
                                    f"{cal.window_um[1]:.3f} um")
    u = (z - z0) / w
    slope = abs(a * m * (1 + u * u * k) ** (-m - 1) * 2 * u * k / w)
    return z, (cal.noise / slope if slope > 0 else math.inf), ""


def frame_return_errors(rows: list[dict[str, str]], calibrations: list[Calibration],
                        sharpness: Callable[[dict[str, str]], float]) -> list[dict[str, Any]]:
    """One row per (z_reference, z_return) frame pair of a frame log's ``rows`` (paired as the XY stage
    pairs reference/return frames: ``stage_metrics.pair_frames``): both frames located against the
    last calibration taken before the reference frame (``calibrations`` of the same channel, in time
    order); ``dz_um`` = z(return) - z(reference), NaN with ``reason`` when a
    frame could not be located. ``sharpness(row)`` gives a frame's normalised variance."""
    out = []
    for ref, ret in pair_frames(rows, reference="z_reference", ret="z_return"):
        ctx = json.loads(ret.get("context") or "{}")
        row: dict[str, Any] = {"size": str(ctx.get("size", "")), "direction": str(ctx.get("direction", "")), "round": ctx.get("round"),
                               "time_s": float(ret["time_s"]), "dz_um": math.nan}
        before = [c for c in calibrations if c.time_s <= float(ref["time_s"])]
        if not before:
            out.append({**row, "reason": "no z_calibration z-stack before the reference frame"})
            continue
        cal = before[-1]
        found = [locate(cal, sharpness(r), float(r["z_um"]) if r.get("z_um") not in (None, "") else math.nan) for r in (ref, ret)]
        row.update(calibration=cal.index, z_reference_um=found[0][0], z_return_um=found[1][0], se_um=math.hypot(found[0][1], found[1][1]))
        why = [f"{tag} frame: {f[2]}" for tag, f in zip(("reference", "return"), found, strict=True) if f[2]]
        if why:
            row["reason"] = "; ".join(why)
        else:
            row["dz_um"] = found[1][0] - found[0][0]
        out.append(row)
    return out


def z_tables(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per move size: the repeatability table of the XY stage analysis, for the z axis."""
    return repeatability_tables(rows, axes=("z",))


def z_repeatability_metrics(table: dict[str, Any]) -> dict[str, Metric]:
    """Headline metrics of one move size (all directions): the XY names, for z."""
    a = table["all"]
    few = "" if a["n"] > 1 else f"an SD needs at least 2 reference/return pairs, there {'is' if a['n'] == 1 else 'are'} {a['n']}"
    return {
        "max_displacement_um": Metric(a["z"]["max_abs_um"], "um"),
        "sd_z_um": Metric(a["z"]["sd_um"], "um", few),
        "mean_z_um": Metric(a["z"]["mean_um"], "um"),
        "pairs": Metric(float(a["n"]), ""),
    }
