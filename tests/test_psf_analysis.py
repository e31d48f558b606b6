"""PSF from bead z-stacks: the fits and rules (``harness.analysis.bead_fits``) and the per-line summary
(``harness.analysis.psf_metrics``) on synthetic z-stacks of known FWHMs (tests/bead_stacks.py, numpy
only), independent agreement with microscope-metrics 0.2.4 (``analyse_psf_beads``) on identical data
and with the MetroloJ_QC formulas implemented here from its source (PSFprofiler: a plain Gaussian
fit through the brightest pixel; theoreticalResolutionCalculator, WIDEFIELD).

Tolerances (asserted below):
- synthetic stacks (Poisson + 2 ADU read noise, peak SNR ~100): mean FWHM x, y, z within 2 % of the
  truth (pixel-integrated fits), on a 20x/0.75-like stack (0.252 um/px, sigma 0.59 px: undersampled)
  and a 63x/1.4-oil-like one (0.103 um/px); the plain Gaussian FWHM within 2 % of
  2 sqrt(2 ln 2) sqrt(sigma^2 + w^2/12) (the pixel-width bias); centres within 0.02 um (x, y) and
  0.05 um (z) of the truth, every bead;
- microscope-metrics (a Nyquist-sampled stack, 0.065 um/px: its LoG detection finds no bead whose
  lateral sigma is below about 1 px, such as the 20x one): per matched bead, our plain x/y FWHM and
  our z FWHM within 2 % of its fwhm_micron_x/y/z (measured: at most 0.22 % x, 0.92 % y, 0.72 % z over
  8 beads; its profiles span +-20 px, ours the fit box), its channel means within 1 % of ours
  (measured 0.1 %);
- MetroloJ_QC's PSFprofiler fit, written here: per bead within 1e-4 of our plain x/y and z FWHMs
  (measured 4e-7: the same model on the same profile); MetroloJ_QC's theoretical resolution and
  reference distance equal to 1e-12.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import curve_fit

from harness.analysis import bead_fits, psf_metrics
from harness.analysis.bead_fits import find_beads, rules_for
from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station
from tests.bead_stacks import FWHM_PER_SIGMA, grid_beads, render
from tests.conftest import DEMO, ROOT, station_variant
from tests.shipped_runs import shipped_run

PSF_PROTOCOL = ROOT / "protocols" / "psf.yaml"

STATIONS = {  # name: pixel (um), z step (um), lateral and axial FWHM of the synthetic beads (um)
    "20x/0.75 air, 6.5 um / 25.8 (0.252 um/px)": (0.252, 0.38, 0.35, 1.62),
    "63x/1.4 oil, 6.5 um / 63 (0.103 um/px)": (0.103, 0.15, 0.26, 0.95),  # about 1.2 x its theory at 580 nm: an aberrated objective
}


def _stack(pixel: float, step: float, fwhm: float, fwhm_z: float, seed: int = 0, nz: int = 41) -> tuple[np.ndarray, np.ndarray, list]:
    z = np.arange(nz) * step
    rng = np.random.default_rng(seed)
    spacing = 12 * fwhm  # beyond the 10-FWHM isolation distance
    n_side = int((256 * pixel - 2 * 4 * fwhm) // spacing)
    beads = grid_beads(n_side, spacing, 4 * fwhm + 0.5 * spacing / 2, z[nz // 2], rng, jitter_um=fwhm, z_jitter_um=step)
    return render((nz, 256, 256), pixel, z, beads, fwhm, fwhm_z, seed=seed), z, beads


def _nearest(bead: bead_fits.Bead, truth: list) -> tuple[float, float, float]:
    x, y, _ = bead.centre_um
    return min(truth, key=lambda t: math.hypot(t[0] - x, t[1] - y))[:3]


@pytest.mark.fast
@pytest.mark.parametrize("name", list(STATIONS))
def test_fwhm_and_centres_are_recovered_from_a_synthetic_stack(name: str) -> None:
    pixel, step, fwhm, fwhm_z = STATIONS[name]
    stack, z, truth = _stack(pixel, step, fwhm, fwhm_z)
    beads = find_beads(stack, pixel, z.tolist(), rules_for(pixel, fwhm, fwhm_z, 65535.0))
    accepted = [b for b in beads if b.accepted]
    assert len(accepted) >= 0.8 * len(truth), bead_fits.reason_counts(beads)
    for axis, true in (("x", fwhm), ("y", fwhm), ("z", fwhm_z)):
        assert np.mean([b.fwhm_um(axis) for b in accepted]) == pytest.approx(true, rel=0.02), axis
    plain = FWHM_PER_SIGMA * math.sqrt((fwhm / FWHM_PER_SIGMA) ** 2 + pixel**2 / 12)
    assert np.mean([b.fits["x"].fwhm_plain_um for b in accepted]) == pytest.approx(plain, rel=0.02)
    for b in accepted:
        tx, ty, tz = _nearest(b, truth)
        x, y, zc = b.centre_um
        assert abs(x - tx) < 0.02 and abs(y - ty) < 0.02 and abs(zc - tz) < 0.05, (b.centre_um, (tx, ty, tz))


@pytest.mark.fast
def test_each_acceptance_rule_rejects_with_its_reason() -> None:
    pixel, step, fwhm, fwhm_z = 0.252, 0.38, 0.35, 1.62
    z = np.arange(41) * step
    zc = z[20]
    beads = [
        (20.0, 20.0, zc, 1.0),  # a good bead
        (45.0, 20.0, zc, 1.0), (46.5, 20.0, zc, 1.0),  # two beads 1.5 um apart: not isolated (3.5 um)
        (0.5, 40.0, zc, 1.0),  # at the image's edge: border
        (20.0, 45.0, zc, 10.0),  # saturated (12-bit)
        (45.0, 45.0, zc, 0.07),  # a faint bead (peak ~70 ADU over ~10 ADU noise): low signal
        (20.0, 58.0, z[1], 1.0),  # focus at the stack's first planes: axial edge
        (33.0, 33.0, zc, 2.0),  # two beads on top of each other: an aggregate
        (33.0, 8.0, zc, 1.0), (58.0, 33.0, zc, 1.0), (8.0, 30.0, zc, 1.0),
    ]
    stack = render((41, 256, 256), pixel, z, beads, fwhm, fwhm_z, seed=1, clip=4095.0)
    found = find_beads(stack, pixel, z.tolist(), rules_for(pixel, fwhm, fwhm_z, 4095.0))

    def at(x: float, y: float) -> bead_fits.Bead:
        b = min(found, key=lambda b: math.hypot(b.x_px * pixel - x, b.y_px * pixel - y))
        assert math.hypot(b.x_px * pixel - x, b.y_px * pixel - y) < 0.5, (x, y)
        return b

    assert at(20, 20).accepted and at(33, 8).accepted
    assert at(45, 20).reason == "not_isolated" and at(46.5, 20).reason == "not_isolated"
    assert at(0.5, 40).reason == "border"
    assert at(20, 45).reason == "saturated" and "saturation level" in at(20, 45).detail
    assert at(45, 45).reason == "low_signal" and "signal-to-noise" in at(45, 45).detail
    assert at(20, 58).reason == "axial_edge"
    assert at(33, 33).reason == "aggregate" and "median" in at(33, 33).detail
    counts = bead_fits.reason_counts(found)
    assert counts["not_isolated"] == 2 and sum(counts.values()) == len(found) - sum(b.accepted for b in found)


@pytest.mark.fast
def test_no_bead_and_identical_planes_are_said_not_invented() -> None:
    res = psf_metrics.resolution(515, 0.75, 1.0)
    flat = np.full((11, 64, 64), 100, dtype=np.uint16)
    assert bead_fits.planes_identical(flat)
    from harness.analyses.psf.analysis import beads_of

    found = beads_of(flat.astype(float), 0.252, list(np.arange(11) * 0.4), res, 65535.0)
    beads, why = found.beads, found.why
    assert beads == [] and "the image does not change with focus" in why
    m = psf_metrics.psf_summary(beads, res, why)
    for name in ("fwhm_x_um", "fwhm_z_ratio", "lateral_asymmetry", "fwhm_y_sd_um"):
        assert math.isnan(m[name].value) and "does not change with focus" in m[name].reason
    assert m["beads_found"].value == 0 and m["beads_accepted"].value == 0
    noise = np.random.default_rng(0).normal(100, 2, (11, 64, 64))
    found = beads_of(noise, 0.252, list(np.arange(11) * 0.4), res, 65535.0)
    assert not found.beads and "no spot stands out" in found.why


@pytest.mark.fast
def test_summary_means_sds_ratios_and_asymmetry() -> None:
    pixel, step, fwhm, fwhm_z = STATIONS["20x/0.75 air, 6.5 um / 25.8 (0.252 um/px)"]
    stack, z, _ = _stack(pixel, step, fwhm, fwhm_z, seed=2)
    res = psf_metrics.resolution(515, 0.75, 1.0)
    beads = find_beads(stack, pixel, z.tolist(), rules_for(pixel, res.lateral_um, res.axial_um, 65535.0))
    m = psf_metrics.psf_summary(beads, res)
    accepted = [b for b in beads if b.accepted]
    xs = [b.fwhm_um("x") for b in accepted]
    assert m["fwhm_x_um"].value == pytest.approx(np.mean(xs)) and m["fwhm_x_sd_um"].value == pytest.approx(np.std(xs, ddof=1))
    assert m["fwhm_z_ratio"].value == pytest.approx(m["fwhm_z_um"].value / (0.88 * 0.515 / (1 - math.sqrt(1 - 0.75**2))))
    assert m["lateral_asymmetry"].value == pytest.approx(min(m["fwhm_x_um"].value, m["fwhm_y_um"].value) / max(m["fwhm_x_um"].value, m["fwhm_y_um"].value))
    assert m["beads_accepted"].value + m["beads_rejected"].value == m["beads_found"].value == len(beads)


# --- MetroloJ_QC, implemented here from its source ----------------------------------------------

def _imagej_gaussian(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """ImageJ CurveFitter GAUSSIAN: y = a + (b - a) exp(-(x - c)^2 / (2 d^2))."""
    return a + (b - a) * np.exp(-((x - c) ** 2) / (2 * d * d))


def _metroloj_fwhm(profile: np.ndarray, spacing: float) -> float:
    """CurveFitterPlus.fitProfile(GAUSSIAN): initial a = min, b = max, c = position of the max,
    d = 2 x the pixel size; FWHM = 2 sqrt(2 ln 2) d."""
    x = np.arange(profile.size) * spacing
    p0 = [profile.min(), profile.max(), x[int(np.argmax(profile))], 2 * spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, _ = curve_fit(_imagej_gaussian, x, profile.astype(float), p0=p0, maxfev=5000)
    return 2 * math.sqrt(2 * math.log(2)) * abs(p[3])


@pytest.mark.fast
def test_metroloj_psfprofiler_fit_agrees_bead_by_bead() -> None:
    """PSFprofiler (MAX_INTENSITY centre): x, y of the brightest pixel of the maximum projection, z of
    the brightest plane there; lines through it across the bead's crop."""
    pixel, step, fwhm, fwhm_z = STATIONS["63x/1.4 oil, 6.5 um / 63 (0.103 um/px)"]
    stack, z, _ = _stack(pixel, step, fwhm, fwhm_z, seed=4)
    rules = rules_for(pixel, fwhm, fwhm_z, 65535.0)
    accepted = [b for b in find_beads(stack, pixel, z.tolist(), rules) if b.accepted]
    r = rules.box_half_px
    compared = 0
    for b in accepted:
        crop = stack[:, b.y_px - r:b.y_px + r + 1, b.x_px - r:b.x_px + r + 1]
        y, x = np.unravel_index(int(np.argmax(crop.max(axis=0))), crop.shape[1:])
        k = int(np.argmax(crop[:, y, x]))
        if (k, y + b.y_px - r, x + b.x_px - r) != (b.z_index, round(b.fits["y"].centre_um / pixel), round(b.fits["x"].centre_um / pixel)):
            continue  # the brightest voxel is not the one nearest the fitted centre: another profile
        compared += 1
        assert b.fits["x"].fwhm_plain_um == pytest.approx(_metroloj_fwhm(crop[k, y, :], pixel), rel=1e-4)
        assert b.fits["y"].fwhm_plain_um == pytest.approx(_metroloj_fwhm(crop[k, :, x], pixel), rel=1e-4)
        assert b.fwhm_um("z") == pytest.approx(_metroloj_fwhm(crop[:, y, x], step), rel=1e-4)
    assert compared >= len(accepted) // 2


def _metroloj_resolution(em_nm: float, na: float, n: float) -> tuple[float, float]:
    lam = em_nm / 1000
    return 0.51 * lam / na, 1.77 * n * lam / na**2  # WIDEFIELD case of getResolution


def _metroloj_reference_distance(d: tuple[float, float, float], res: tuple[float, float, float]) -> float:
    """theoreticalResolutionCalculator.getReferenceDistance (2024 form), transcribed."""
    x, y, z = d
    dist_xy = math.sqrt(x * x + y * y)
    dist_xyz = math.sqrt(dist_xy * dist_xy + z * z)
    theta = math.acos(z / dist_xyz) if dist_xyz != 0 else 0.0
    phi = math.acos(x / dist_xy) if dist_xy != 0 else math.pi / 2
    x_ref = res[1] * res[2] * math.cos(phi) * math.sin(theta)
    y_ref = res[0] * res[2] * math.sin(phi) * math.sin(theta)
    z_ref = res[0] * res[1] * math.cos(theta)
    return res[0] * res[1] * res[2] / math.sqrt(x_ref * x_ref + y_ref * y_ref + z_ref * z_ref)


@pytest.mark.fast
@pytest.mark.parametrize(("em", "na", "n"), [(515, 0.75, 1.0), (580, 1.4, 1.518), (680, 1.2, 1.333)])
def test_metroloj_theoretical_resolution_and_reference_distance(em: float, na: float, n: float) -> None:
    res = psf_metrics.resolution(em, na, n)
    lateral, axial = _metroloj_resolution(em, na, n)
    assert res.lateral_um == pytest.approx(lateral, rel=1e-12) and res.axial_metroloj_um == pytest.approx(axial, rel=1e-12)
    assert res.axial_um == pytest.approx(0.88 * em / 1000 / (n - math.sqrt(n * n - na * na)), rel=1e-12)  # harness.common.optics
    rng = np.random.default_rng(int(em))
    for d in [tuple(rng.normal(0, 0.2, 3)) for _ in range(20)] + [(0.1, 0.0, 0.0), (0.0, 0.0, 0.3), (0.0, -0.1, 0.0)]:
        want = _metroloj_reference_distance(d, (lateral, lateral, axial))  # type: ignore[arg-type]
        assert psf_metrics.reference_distance_um(d, res) == pytest.approx(want, rel=1e-12)  # type: ignore[arg-type]
    # along an axis the ellipsoid's radius is that axis' resolution
    assert psf_metrics.reference_distance_um((0.0, 0.0, 0.5), res) == pytest.approx(axial)  # MetroloJ_QC's axial resolution
    assert psf_metrics.reference_distance_um((0.2, 0.0, 0.0), res) == pytest.approx(lateral)
    with pytest.raises(ValueError):
        psf_metrics.resolution(em, n, n)


# --- microscope-metrics 0.2.4 on identical data -------------------------------------------------

@pytest.mark.fast
def test_microscope_metrics_psf_beads_agrees_on_identical_data() -> None:
    mm_schema = pytest.importorskip("microscopemetrics_schema.datamodel")
    psf_beads = pytest.importorskip("microscopemetrics.analyses.psf_beads")
    from microscopemetrics.analyses import numpy_to_mm_image

    pixel, step, fwhm, fwhm_z = 0.065, 0.2, 0.25, 0.8  # 100x/1.4 oil-like, Nyquist-sampled: sigma 1.6 px
    nz = 41
    z = np.arange(nz) * step
    truth = grid_beads(4, 4.5, 2.5, z[nz // 2], np.random.default_rng(3), jitter_um=0.3, z_jitter_um=0.1)
    stack = render((nz, 256, 256), pixel, z, truth, fwhm, fwhm_z, peak=3000.0, seed=3)
    image = numpy_to_mm_image(array=stack[None, ..., None], name="beads", channel_names=["515"])
    image.voxel_size_x_micron, image.voxel_size_y_micron, image.voxel_size_z_micron = pixel, pixel, step
    dataset = mm_schema.PSFBeadsDataset(name="synthetic", microscope=mm_schema.Microscope(name="synthetic"),
                                        input_data={"psf_beads_images": [image]},
                                        input_parameters={"min_lateral_distance_factor": 20, "sigma_min": 1.0, "sigma_max": 4.0})
    psf_beads.analyse_psf_beads(dataset)
    cols = {c.name: c.values for c in dataset.output.bead_properties.columns}
    theirs = [(float(cols["center_x"][i]), float(cols["center_y"][i]), *(float(cols[f"fwhm_micron_{a}"][i]) for a in "xyz"))
              for i in range(len(cols["center_x"])) if str(cols["considered_valid"][i]) == "True"]
    ours = [b for b in find_beads(stack, pixel, z.tolist(), rules_for(pixel, fwhm, fwhm_z, 65535.0)) if b.accepted]
    assert len(theirs) >= 6 and len(ours) >= 6
    matched = 0
    for x, y, fx, fy, fz in theirs:
        b = min(ours, key=lambda b: math.hypot(b.x_px - x, b.y_px - y))
        if math.hypot(b.x_px - x, b.y_px - y) > 2:
            continue
        matched += 1
        assert b.fits["x"].fwhm_plain_um == pytest.approx(fx, rel=0.02)
        assert b.fits["y"].fwhm_plain_um == pytest.approx(fy, rel=0.02)
        assert b.fwhm_um("z") == pytest.approx(fz, rel=0.02)
    assert matched >= 6
    km = dataset.output.key_measurements[0]
    assert np.mean([b.fits["x"].fwhm_plain_um for b in ours]) == pytest.approx(km.fwhm_micron_x_mean, rel=0.01)
    assert np.mean([b.fwhm_um("z") for b in ours]) == pytest.approx(km.fwhm_micron_z_mean, rel=0.01)
    # the pixel-integrated fit gives back the truth; microscope-metrics' plain fit is wider by the pixel
    assert np.mean([b.fwhm_um("x") for b in ours]) == pytest.approx(fwhm, rel=0.01)


# --- the psf protocol on simulated stations -----------------------------------------------------
# Needs the simulated bead slide (simulators/psf_model.py) and the station file's simulation.bead_slide.
# Truth: the simulator's exact bead image (``World.bead_image_model``: Debye PSF convolved with the
# 100 nm sphere) and its exact FWHMs (``World.psf_truth``). What the harness reports is a Gaussian fit
# (the MetroloJ_QC model), so the comparison is with the Gaussian fitted here (scipy, finely sampled,
# continuous) to the exact profile over the analysis' own window (the fit box laterally, the z-stack's
# extent axially): the "Gaussian truth". Tolerances, asserted per line:
#   default station (20x/0.75 air, 0.252 um/px: 1.4 px per lateral FWHM, Z drive 0.05 um rms per plane):
#     lateral mean FWHM within 6 % of the Gaussian truth (undersampled: the fit depends on where the
#     bead falls on its pixel, +-2 %), axial within 5 %;
#   other station (63x/1.4 oil, 6.5 um pixels: 0.103 um/px; a piezo Z drive of 0.01 um rms):
#     lateral within 3 %, axial within 5 %;
#   both: measured / exact FWHM between 0.85 and 1.02 (the Gaussian model's bias, stated in the conventions).
# Measured (09:10 UTC, four lines each): default lateral -1.8 .. -5.1 % of the Gaussian truth (-5.9 .. -9.2 %
# of the exact FWHM), axial -3.3 .. +0.4 % (-3.3 .. -6.5 %); other lateral -0.8 .. -2.5 % (-4.9 .. -6.7 %),
# axial -1.7 .. +2.2 % (-0.4 .. -4.7 %).

OTHER_STATION = {
    "devices": {"Camera": {"simulation": {"pixel_size_um": 6.5}},
                "ZDrive": {"simulation": {"z": {"backlash_um": 0.05, "repeatability_sigma_um": 0.01, "min_um": 0, "max_um": 10000,
                                                "speed_um_per_s": 1000}}}},
    "instrument": {"objectives": [{"id": "obj63x", "manufacturer": "Simulated", "model": "Plan Apo 63x/1.4 Oil", "nominal_magnification": 63,
                                   "lens_na": 1.4, "immersion": "Oil"}], "objective_in_use": "obj63x"},
    "simulation": {"optics": {"magnification": 63, "na": 1.4, "immersion_index": 1.518,
                              "chromatic_shift_um": {"Laser405": [0.12, -0.08, 0.35], "Laser561": [-0.06, 0.05, -0.2], "Laser640": [0.15, 0.1, 0.45]}},
                   "bead_slide": {"density_per_mm2": 40000}},  # a 26 um field at 63x: about 30 beads
}
TOLERANCE = {"default": (0.06, 0.05), "other": (0.03, 0.05)}  # (lateral, axial) relative to the Gaussian truth


def run_protocol(station_file: Path, runs: Path, protocol: Path, kind: str) -> tuple[Path, list[dict[str, Any]], Any, float]:
    """Run ``protocol`` on the station; (folder, results of ``kind``, world, the run's start on the
    station clock)."""
    with Station.load(station_file) as station:
        runner = Runner(station, protocol, runs_dir=runs, quiet=True)
        outcome = runner.run()
        assert outcome.status == "completed", outcome.reason
        world = station.sim.world
    results = [r for r in json.loads((outcome.folder / "results.json").read_text())["results"] if r["kind"] == kind]
    return outcome.folder, results, world, runner.t0


def laser_label(world: Any, channel: str) -> str:
    return next(label for label, laser in world.lasers.items() if f"{laser.p.wavelength_nm:g}" == channel)


def _gaussian_fwhm(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a noise-free profile: no covariance to estimate
        p, _ = curve_fit(lambda x, a, b, c, d: a + b * np.exp(-((x - c) ** 2) / (2 * d * d)), x, y,
                         p0=[float(y.min()), float(y.max() - y.min()), 0.0, (x[-1] - x[0]) / 8], maxfev=5000)
    return FWHM_PER_SIGMA * abs(p[3])


def gaussian_truth(world: Any, label: str, result: dict[str, Any]) -> tuple[float, float]:
    """The Gaussian fitted to the simulator's exact bead image over the analysis' window."""
    model, truth = world.bead_image_model(label), world.psf_truth(label)
    half = (result["box_half_px"] + 0.5) * result["pixel_um"]
    x = np.linspace(-half, half, 801)
    lateral = _gaussian_fwhm(x, model.bead_points(np.abs(x), np.full_like(x, truth.best_focus_um)))
    z = np.asarray(result["z_um"])
    dz = np.linspace(-(z[-1] - z[0]) / 2, (z[-1] - z[0]) / 2, 801)
    axial = _gaussian_fwhm(dz, model.bead_points(np.zeros_like(dz), dz + truth.best_focus_um))
    return lateral, axial


@pytest.fixture(scope="module")
def psf_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict[str, Any]], Any, float]]:
    out = {}
    shipped = shipped_run("psf", tmp_path_factory)  # the shipped protocol on the shipped station
    out = {"default": (shipped.folder, shipped.results("psf"), shipped.world, shipped.t0)}
    base = tmp_path_factory.mktemp("psf-other")
    out["other"] = run_protocol(station_variant(base, OTHER_STATION), base / "runs", PSF_PROTOCOL, "psf")
    return out


@pytest.mark.parametrize("which", ["default", "other"])
def test_the_psf_protocol_recovers_the_simulated_fwhm(which: str, psf_runs: dict[str, Any]) -> None:
    folder, results, world, _ = psf_runs[which]
    lateral_tol, axial_tol = TOLERANCE[which]
    assert sorted(r["lines_on"][0] for r in results) == ["405", "488", "561", "640"]
    for r in results:
        label = laser_label(world, r["lines_on"][0])
        m = {k: v["value"] for k, v in r["metrics"].items()}
        assert m["beads_accepted"] >= 5, r["rejections"]
        lateral, axial = gaussian_truth(world, label, r)
        exact = world.psf_truth(label)
        for axis in "xy":
            assert m[f"fwhm_{axis}_um"] == pytest.approx(lateral, rel=lateral_tol), (label, axis, lateral, exact.lateral_fwhm_um)
            assert 0.85 < m[f"fwhm_{axis}_um"] / exact.lateral_fwhm_um < 1.02
        assert m["fwhm_z_um"] == pytest.approx(axial, rel=axial_tol), (label, axial, exact.axial_fwhm_um)
        assert 0.85 < m["fwhm_z_um"] / exact.axial_fwhm_um < 1.02
        res = psf_metrics.resolution(r["emission_nm"], exact.na, exact.immersion_index)
        assert m["fwhm_x_ratio"] == pytest.approx(m["fwhm_x_um"] / res.lateral_um) and m["lateral_asymmetry"] > 0.95
        assert r["verdict"] in ("pass", "warn") and m["saturated_pixels"] == 0


def test_the_psf_report_draws_the_beads_and_their_profiles(psf_runs: dict[str, Any]) -> None:
    folder, results, _, _ = psf_runs["default"]
    html = (folder / "report.html").read_text()
    # each caption twice: the image's alt text and its figcaption
    assert html.count("accepted beads, XY and XZ maximum projections") == 2 * len(results)
    assert html.count("profiles through the bead of median x FWHM") == 2 * len(results)
    assert "plain Gaussian" in html


def test_the_psf_protocol_on_the_demo_camera_says_the_image_does_not_depend_on_the_line(tmp_path: Path) -> None:
    with Station.load(DEMO) as station:
        outcome = Runner(station, PSF_PROTOCOL, runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    results = [r for r in json.loads((outcome.folder / "results.json").read_text())["results"] if r["kind"] == "psf"]
    assert results
    for r in results:
        assert r["verdict"] == "not judged", r["verdict"]
        for name in ("fwhm_x_um", "fwhm_z_um", "fwhm_x_ratio", "lateral_asymmetry", "beads_accepted"):
            reason = r["metrics"][name]["reason"]
            assert r["metrics"][name]["verdict"] == "not judged" and "the image does not depend on the laser line" in reason, (name, reason)
            assert "DemoCamera" in reason
