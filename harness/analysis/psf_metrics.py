"""PSF and chromatic co-registration metrics from fitted beads (``harness.analysis.bead_fits``).
Pure functions; no file is read.

Conventions:
- Theoretical widefield resolution (``harness.common.optics``, shared with the z-stack planning):
  lateral FWHM = 0.51 lambda_em / NA, axial FWHM = 0.88 lambda_em / (n - sqrt(n^2 - NA^2)) (n: the
  immersion's refractive index, lambda_em: the emission wavelength). MetroloJ_QC 1.3.1 (its source,
  ``theoreticalResolutionCalculator.getResolution``) uses the same lateral expression but, for
  widefield, the paraxial axial FWHM 1.77 n lambda_em / NA^2 (its 0.88 expression is for confocal,
  with the excitation wavelength): about 20 % wider at NA 0.75 in air and 45 % wider at NA 1.4 in
  oil, so MetroloJ_QC's axial ratios are that much lower than these. The non-paraxial expression is
  within 2 % of the exact widefield PSF (the simulator's Debye model); MetroloJ_QC's value is kept in
  each result (``theory.axial_metroloj_um``).
- Per line: mean and SD (n - 1) over the accepted beads of the x, y and z FWHMs; ratio measured /
  theoretical of each mean (a protocol limit of 1.5: Faklaris et al. 2022, J Cell Biol
  221(11):e202107093); lateral asymmetry = min(mean FWHM x, mean FWHM y) / max(...) (MetroloJ_QC's
  batch "Lateral Asymmetry" ratio, 1 = symmetric); medians over the beads of the lateral FWHM
  ((x + y) / 2) and of the axial FWHM (4DN-BINA-OME's Median spot sizes). No axial asymmetry is reported: MetroloJ_QC and
  microscope-metrics have none, and 4DN-BINA-OME's AxialAsymmetry ("the ratio of the minimum axial FWHM
  over the maximum axial FWHM; also referred to as Spherical Aberration") does not say which two axial
  widths it compares.
- The FWHMs are those of the fitted Gaussians (the model the limits above were set with). For a
  diffraction-limited widefield bead image they are below the exact FWHM of its intensity profile
  (Airy core and the axial profile's side lobes: the simulated 20x/0.75 and 63x/1.4 stations give
  about 3-9 % below).
- Co-registration: per bead matched in a channel and in the reference channel, the shift (dx, dy,
  dz) = centre in the channel - centre in the reference (fitted centres, um), its 3-D distance, and
  MetroloJ_QC's co-alignment ratio = distance / reference distance, the reference distance being the
  radius, in the shift's direction, of the ellipsoid whose semi-axes are MetroloJ_QC's theoretical x,
  y, z resolutions (its widefield formulas above, 1.77 n lambda / NA^2 axially: the ratio and its
  default limit of 1 are MetroloJ_QC's) of the longer emission wavelength of the two (``getReferenceDistance``:
  rx ry rz / sqrt((ry rz sin(theta) cos(phi))^2 + (rx rz sin(theta) sin(phi))^2 + (rx ry cos(theta))^2)).
  MetroloJ_QC 1.3.1 passes the pair's index (0 or 1) where it means the channel, so for pairs not
  made of its first two channels it takes another channel's resolution; the harness takes the longer
  wavelength's, as MetroloJ_QC states it intends. Means and SDs (n - 1) over the matched beads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.analysis.bead_fits import Bead, reason_counts
from harness.analysis.metric import Metric
from harness.common.optics import Optics, axial_fwhm_um, lateral_fwhm_um

METROLOJ_AXIAL_FACTOR = 1.77  # MetroloJ_QC's widefield axial FWHM: 1.77 n lambda / NA^2
MATCH_FWHM = 3.0  # a bead of another channel matches within this many lateral FWHMs (and 1 um at least)


@dataclass(frozen=True)
class Resolution:
    """Theoretical widefield FWHMs of one emission wavelength (um)."""

    emission_nm: float
    na: float
    n: float
    lateral_um: float  # 0.51 lambda / NA (harness.common.optics; MetroloJ_QC's too)
    axial_um: float  # 0.88 lambda / (n - sqrt(n^2 - NA^2)) (harness.common.optics)
    axial_metroloj_um: float  # 1.77 n lambda / NA^2: MetroloJ_QC's widefield axial FWHM

    @property
    def metroloj(self) -> tuple[float, float, float]:
        """MetroloJ_QC's (x, y, z) resolutions: the semi-axes of its co-alignment ellipsoid."""
        return self.lateral_um, self.lateral_um, self.axial_metroloj_um


def resolution(emission_nm: float, na: float, n: float) -> Resolution:
    """The theoretical widefield FWHMs. ValueError for NA not below n or a non-positive input."""
    if not emission_nm > 0:
        raise ValueError(f"the emission wavelength must be positive: {emission_nm} nm")
    objective = Optics(na, n)  # ValueError unless 0 < NA < n
    return Resolution(emission_nm, na, n, lateral_fwhm_um(emission_nm, objective), axial_fwhm_um(emission_nm, objective),
                      METROLOJ_AXIAL_FACTOR * n * emission_nm / 1000.0 / na**2)


def _mean_sd(values: Sequence[float], unit: str, what: str) -> tuple[Metric, Metric]:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        why = what
        return Metric(math.nan, unit, why), Metric(math.nan, unit, why)
    sd = Metric(float(np.std(v, ddof=1)), unit) if len(v) > 1 else Metric(math.nan, unit, "one bead: no spread")
    return Metric(float(np.mean(v)), unit), sd


def psf_summary(beads: Sequence[Bead], res: Resolution, why_none: str = "") -> dict[str, Metric]:
    """The metrics of one line (module docstring). ``why_none``: the reason given when no bead was
    accepted (else a count of the rejections)."""
    accepted = [b for b in beads if b.accepted]
    counts = reason_counts(beads)
    what = why_none or (f"no bead accepted: {len(beads)} found, rejected: "
                        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n) if beads else "no bead found")
    out: dict[str, Metric] = {}
    theory = {"x": res.lateral_um, "y": res.lateral_um, "z": res.axial_um}
    for axis in "xyz":
        mean, sd = _mean_sd([b.fwhm_um(axis) for b in accepted], "um", what)
        out[f"fwhm_{axis}_um"], out[f"fwhm_{axis}_sd_um"] = mean, sd
        out[f"fwhm_{axis}_ratio"] = Metric(mean.value / theory[axis], "", mean.reason)
    for axis in "xy":
        out[f"fwhm_{axis}_plain_um"] = _mean_sd([b.fits[axis].fwhm_plain_um for b in accepted if axis in b.fits], "um", what)[0]
    lateral = [(b.fwhm_um("x") + b.fwhm_um("y")) / 2 for b in accepted]
    out["fwhm_lateral_median_um"] = Metric(float(np.median(lateral)), "um") if lateral else Metric(math.nan, "um", what)
    axial = [b.fwhm_um("z") for b in accepted]
    out["fwhm_z_median_um"] = Metric(float(np.median(axial)), "um") if axial else Metric(math.nan, "um", what)
    fx, fy = out["fwhm_x_um"], out["fwhm_y_um"]
    out["lateral_asymmetry"] = (Metric(min(fx.value, fy.value) / max(fx.value, fy.value), "") if not (fx.reason or fy.reason)
                                else Metric(math.nan, "", fx.reason or fy.reason))
    out["theoretical_lateral_fwhm_um"] = Metric(res.lateral_um, "um")
    out["theoretical_axial_fwhm_um"] = Metric(res.axial_um, "um")
    # no bead found at all (why_none): the counts are kept but not judged (the data show no beads to count)
    out["beads_found"] = Metric(float(len(beads)), "", why_none)
    out["beads_accepted"] = Metric(float(len(accepted)), "", why_none)
    out["beads_rejected"] = Metric(float(len(beads) - len(accepted)), "", why_none)
    return out


# --- co-registration -----------------------------------------------------------------------------
def reference_distance_um(shift: tuple[float, float, float], res: Resolution) -> float:
    """MetroloJ_QC's reference distance: the radius of its resolution ellipsoid (``res.metroloj``:
    lateral, lateral, 1.77 n lambda / NA^2) in the direction of ``shift`` (dx, dy, dz); the lateral
    resolution for no shift."""
    dx, dy, dz = shift
    rx, ry, rz = res.metroloj
    dxy = math.hypot(dx, dy)
    d = math.hypot(dxy, dz)
    theta = math.acos(dz / d) if d else 0.0
    phi = math.acos(dx / dxy) if dxy else math.pi / 2
    x_ref = ry * rz * math.cos(phi) * math.sin(theta)
    y_ref = rx * rz * math.sin(phi) * math.sin(theta)
    z_ref = rx * ry * math.cos(theta)
    return rx * ry * rz / math.sqrt(x_ref**2 + y_ref**2 + z_ref**2)


@dataclass(frozen=True)
class Pair:
    """One bead seen in the reference channel and in another channel."""

    reference_um: tuple[float, float, float]
    shift_um: tuple[float, float, float]  # channel - reference

    @property
    def distance_um(self) -> float:
        return math.sqrt(sum(v * v for v in self.shift_um))


def match(reference: Sequence[Bead], other: Sequence[Bead], radius_um: float) -> list[Pair]:
    """Accepted beads of ``other`` paired with accepted beads of ``reference``: mutual nearest
    neighbours in x-y within ``radius_um``."""
    ref = [b for b in reference if b.accepted]
    oth = [b for b in other if b.accepted]
    if not ref or not oth:
        return []
    a = np.array([b.centre_um for b in ref])
    c = np.array([b.centre_um for b in oth])
    d = np.hypot(a[:, None, 0] - c[None, :, 0], a[:, None, 1] - c[None, :, 1])
    pairs = []
    for i in range(len(ref)):
        j = int(np.argmin(d[i]))
        if d[i, j] <= radius_um and int(np.argmin(d[:, j])) == i:
            pairs.append(Pair(tuple(a[i].tolist()), tuple((c[j] - a[i]).tolist())))
    return pairs


def coregistration_metrics(pairs: Sequence[Pair], res: Resolution, why_none: str, count_judged: bool = False) -> dict[str, Metric]:
    """Mean and SD of dx, dy, dz, the 3-D distance and the co-alignment ratio over ``pairs``; ``res``
    is the resolution of the longer emission wavelength of the two channels. Without pairs, every
    metric says ``why_none``; ``beads_matched`` (0) is judged only with ``count_judged`` (beads were
    accepted in both lines but none matched: the lines disagree by more than the match radius)."""
    out: dict[str, Metric] = {}
    for i, axis in enumerate("xyz"):
        out[f"shift_{axis}_um"], out[f"shift_{axis}_sd_um"] = _mean_sd([p.shift_um[i] for p in pairs], "um", why_none)
    out["distance_3d_um"], out["distance_3d_sd_um"] = _mean_sd([p.distance_um for p in pairs], "um", why_none)
    ratios = [p.distance_um / reference_distance_um(p.shift_um, res) for p in pairs]
    out["coalignment_ratio"], out["coalignment_ratio_sd"] = _mean_sd(ratios, "", why_none)
    out["beads_matched"] = Metric(float(len(pairs)), "", why_none if not pairs and not count_judged else "")
    return out
