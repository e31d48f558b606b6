"""Focus stability and Z repeatability (harness.analysis.focus_metrics, harness.analyses.focus).

Part 1, synthetic: bead z-stacks written here (Gaussian-beam beads: a bead defocused by dz is a 2-D
Gaussian of sigma w0 sqrt(1 + (dz/zR)^2) holding its photons, Poisson noise, camera offset and gain)
with known focal positions and drive errors; the formulas and the analysis of a run folder written
here recover them within the tolerances stated in each test.
Part 2 (below), the simulated station: the protocols run against the simulator's truth.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import yaml

from harness.analyses.focus.analysis import ANALYSIS
from harness.analyses.stage.analysis import ANALYSIS as STAGE
from harness.analysis import focus_metrics as fm
from harness.finishing.runner import FinishingRunner as Runner
from harness.records.image_records import FRAME_COLUMNS
from harness.station.station import Station
from tests.conftest import DEMO, ROOT, SIMULATED, merge, station_variant
from tests.shipped_runs import shipped_run

PX_UM = 0.25  # sample pixel
W0_UM = 0.15  # in-focus bead sigma
ZR_UM = 0.67  # Rayleigh range: focus curve FWHM ~ 2 zR = 1.34 um (a 20x/0.75 air objective)
STEP_UM = 0.36  # Nyquist / 2 of that objective at 488 nm
NZ = 29


class Beads:
    """A seeded field of beads rendered at any defocus."""

    def __init__(self, rng: np.random.Generator, size: int = 128, n: int = 30, photons: float = 2e4) -> None:
        self.rng, self.size = rng, size
        self.x, self.y = rng.uniform(5, size - 5, n), rng.uniform(5, size - 5, n)
        self.photons = photons * rng.uniform(0.8, 1.2, n)
        self.yy, self.xx = np.mgrid[0:size, 0:size]

    def frame(self, defocus_um: float, background: float = 10.0) -> np.ndarray:
        w = W0_UM * math.sqrt(1 + (defocus_um / ZR_UM) ** 2) / PX_UM
        rate = np.full((self.size, self.size), background)
        for x, y, p in zip(self.x, self.y, self.photons, strict=True):
            rate += p / (2 * math.pi * w * w) * np.exp(-((self.xx - x) ** 2 + (self.yy - y) ** 2) / (2 * w * w))
        return (100 + 0.37 * self.rng.poisson(rate)).astype(np.uint16)

    def stack(self, z_um: np.ndarray, focus_um: float, drive_error_um: np.ndarray | None = None) -> list[np.ndarray]:
        errors = np.zeros(len(z_um)) if drive_error_um is None else drive_error_um
        return [self.frame(z + e - focus_um) for z, e in zip(z_um, errors, strict=True)]


def planes(centre: float = 100.0) -> np.ndarray:
    return centre + (np.arange(NZ) - NZ // 2) * STEP_UM


def curve(stack: list[np.ndarray]) -> list[float]:
    return [fm.normalised_variance(a) for a in stack]


# --- the focal position of one z-stack ----------------------------------------------------------
def test_focal_position_of_synthetic_bead_stacks_is_recovered() -> None:
    """30 stacks, focus anywhere within +-2 um of the centre: every focal position within 0.01 um
    (measured: max 0.003 um, SD 0.001 um), and the stated standard error within a factor 3 of the
    actual scatter (it is the photon-noise precision)."""
    rng = np.random.default_rng(11)
    z = planes()
    errors, ses = [], []
    for _ in range(30):
        focus = 100.0 + rng.uniform(-2, 2)
        fit = fm.focal_position(z, curve(Beads(rng).stack(z, focus)))
        assert fit.determined, fit.reason
        errors.append(fit.z_um - focus)
        ses.append(fit.se_um)
        assert fit.fwhm_um == pytest.approx(2 * ZR_UM, rel=0.15)
    assert np.max(np.abs(errors)) < 0.01
    rms = float(np.sqrt(np.mean(np.square(errors))))
    assert rms / 3 < float(np.median(ses)) < 3 * rms


def test_a_per_plane_drive_error_scatters_the_focal_position_by_about_half_of_it() -> None:
    """Each plane at its own random drive error (SD s = 0.05 um): the focal position scatters by
    0.5 s (measured 0.44-0.50 s over seeds); asserted 0.3 s .. 0.7 s over 40 stacks."""
    rng = np.random.default_rng(12)
    s = 0.05
    z = planes()
    errors = []
    for _ in range(40):
        focus = 100.0 + rng.uniform(-1, 1)
        fit = fm.focal_position(z, curve(Beads(rng).stack(z, focus, rng.normal(0, s, NZ))))
        errors.append(fit.z_um - focus)
    assert 0.3 * s < float(np.std(errors, ddof=1)) < 0.7 * s


@pytest.mark.parametrize("case,words", [
    ("no change with z", "the focus curve is flat"),
    ("focus below the stack", "at or below its lower edge"),
    ("focus above the stack", "at or above its upper edge"),
    ("constant frames", "the focus curve is flat"),
    ("four planes", "fewer than 5"),
])
def test_a_focal_position_that_cannot_be_determined_says_why(case: str, words: str) -> None:
    rng = np.random.default_rng(13)
    z = planes()
    beads = Beads(rng)
    if case == "no change with z":
        values = curve([beads.frame(30.0) for _ in z])  # far out of focus at every plane: noise only
    elif case == "focus below the stack":
        values = curve(beads.stack(z, z[0] - 0.3))
    elif case == "focus above the stack":
        values = curve(beads.stack(z, z[-1] + 0.2))
    elif case == "constant frames":
        frame = beads.frame(0.0)
        values = curve([frame] * NZ)
    else:
        z = z[:4]
        values = curve(beads.stack(z, z[1]))
    fit = fm.focal_position(z, values)
    assert not fit.determined and math.isnan(fit.z_um)
    assert words in fit.reason, fit.reason


# --- focus stability -----------------------------------------------------------------------------
def test_stability_metrics_recover_a_known_drift() -> None:
    """19 focal positions over 3 h, drift 0.5 um/h, scatter 0.02 um: the slope within 0.02 um/h
    (its SE is 0.006 um/h), the range and SD as numpy gives them, the residual SD within 10 % of the
    SD of the scatter drawn (the line takes 2 degrees of freedom)."""
    rng = np.random.default_rng(14)
    t = np.arange(19) * 600.0
    noise = rng.normal(0, 0.02, t.size)
    z = 50.0 + 0.5 * t / 3600 + noise
    m, line = fm.stability_metrics(t, z)
    assert m["focus_drift_um_per_h"].value == pytest.approx(0.5, abs=0.02) == line["slope_um_per_h"]
    assert m["focus_range_um"].value == pytest.approx(float(np.ptp(z)))
    assert m["focus_sd_um"].value == pytest.approx(float(np.std(z, ddof=1)))
    assert m["focus_residual_sd_um"].value == pytest.approx(float(np.std(noise, ddof=1)), rel=0.1)
    assert m["focus_stacks"].value == 19
    one, _ = fm.stability_metrics([0.0], [1.0])
    assert math.isnan(one["focus_drift_um_per_h"].value) and "at least 2" in one["focus_drift_um_per_h"].reason


# --- locating single frames on the flank of a calibration z-stack ----------------------------------
def test_frames_on_the_flank_are_located_against_the_calibration() -> None:
    """Calibration z-stack with per-plane drive errors (SD 0.05 um); frames at the mark (0.7 um below
    focus) and 0.2 um above or below it: their z differences within 0.04 um of the truth (measured:
    0.03 um at most, SD 0.01-0.018 um; without the planes' errors 0.007 um at most: the model's shape
    follows the planes' errors, a random scale error of a few % per calibration), the standard error
    of a frame's z below 0.01 um; a frame at the focus is not located, with the reason."""
    rng = np.random.default_rng(15)
    z = planes()
    worst = 0.0
    for _ in range(10):
        beads = Beads(rng)
        focus = 100.0 + rng.uniform(-0.1, 0.1)
        values = curve(beads.stack(z, focus, rng.normal(0, 0.05, NZ)))
        cal = fm.calibrate(z, values, fm.focal_position(z, values))
        assert not cal.reason
        mark = 99.3
        ref, ref_se, why = fm.locate(cal, fm.normalised_variance(beads.frame(mark - focus)), mark)
        assert not why and ref_se < 0.01
        for d in (0.2, -0.2):
            ret, _, why = fm.locate(cal, fm.normalised_variance(beads.frame(mark + d - focus)), mark)
            assert not why
            worst = max(worst, abs((ret - ref) - d))
    assert worst < 0.04
    _, _, why = fm.locate(cal, fm.normalised_variance(beads.frame(0.0)), focus)
    assert "from the calibration's focus" in why


# --- the analysis of a run folder (written here) ----------------------------------------------------
def _write(folder: Path, stack: str, frames: list[np.ndarray], rows: list[dict[str, Any]], nz: int) -> None:
    data = np.stack(frames).reshape((len(frames) // nz, nz, *frames[0].shape)) if nz > 1 else np.stack(frames)
    tifffile.imwrite(folder / f"{stack}.ome.tif", data, ome=True,
                     metadata={"axes": "TZYX" if nz > 1 else "TYX", "PhysicalSizeX": PX_UM, "PhysicalSizeY": PX_UM})
    with open(folder / f"{stack}_frames.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FRAME_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({"frame": i, "stack": stack, "channel": "488", "c": 0, "t": i, "ifd": i, "status": "ok", **row})


def _entry(stack: str) -> dict[str, str]:
    return {"kind": "ome_tiff", "stack": stack}


def test_the_analysis_of_a_synthetic_run_folder(tmp_path: Path) -> None:
    """Ground truth written here: (1) focus stability: 7 z-stacks 30 min apart, the focus drifting
    0.6 um/h: drift within 0.02 um/h, range within 0.02 um of 1.8 um; (2) Z repeatability: a
    calibration z-stack per round (planes with drive errors of SD 0.03 um), the mark 0.7 um below focus,
    returns from +z sitting 0.2 um higher (a backlash), from -z on the mark, each frame with its own
    drive error (SD 0.03 um), 12 rounds: per-direction means within 0.04 um of 0.2 and 0 (3 x their SE of
    0.012 um), SD within 50 % of
    sqrt(2) x 0.03 um. The stage analysis does not take these stacks; this one does not take a stage stack."""
    rng = np.random.default_rng(16)
    beads = Beads(rng)
    # (1) focus stability
    frames, rows = [], []
    for k in range(7):
        t0 = k * 1800.0
        focus = 100.0 + 0.6 * t0 / 3600
        z = planes()
        frames += beads.stack(z, focus)
        rows += [{"tag": "focus", "z_um": f"{zi:.4f}", "time_s": f"{t0 + 0.2 * i:.3f}", "context": "{}"} for i, zi in enumerate(z)]
    _write(tmp_path, "focus", frames, rows, NZ)
    # (2) Z repeatability
    cal_frames, cal_rows, rep_frames, rep_rows = [], [], [], []
    mark, s, t = 99.3, 0.03, 0.0
    truth = {"+z": 0.2, "-z": 0.0}
    for rnd in range(1, 13):
        z = planes(mark)
        cal_frames += beads.stack(z, 100.0, rng.normal(0, s, NZ))
        cal_rows += [{"tag": "z_calibration", "z_um": f"{zi:.4f}", "time_s": f"{t + 0.2 * i:.3f}", "context": json.dumps({"round": rnd})}
                     for i, zi in enumerate(z)]
        t += 10
        for direction, offset in truth.items():
            ctx = json.dumps({"size": "10 um", "round": rnd, "direction": direction})
            for tag, d in (("z_reference", 0.0), ("z_return", offset)):
                rep_frames.append(beads.frame(mark + d + rng.normal(0, s) - 100.0))
                rep_rows.append({"tag": tag, "z_um": f"{mark:.4f}", "time_s": f"{t:.3f}", "context": ctx})
                t += 2
    _write(tmp_path, "zcal", cal_frames, cal_rows, NZ)
    _write(tmp_path, "zrep", rep_frames, rep_rows, 1)

    for stack in ("focus", "zcal", "zrep"):
        assert ANALYSIS.applies(tmp_path, {}, f"{stack}.ome.tif", _entry(stack))
        assert not STAGE.applies(tmp_path, {}, f"{stack}.ome.tif", _entry(stack))
    [stability] = ANALYSIS.analyse(tmp_path, "focus.ome.tif", _entry("focus"), {})
    m = {k: v["value"] for k, v in stability["metrics"].items()}
    assert stability["kind"] == "focus_stability" and stability["subject"] == "488 nm"
    assert m["focus_drift_um_per_h"] == pytest.approx(0.6, abs=0.02)
    assert m["focus_range_um"] == pytest.approx(1.8, abs=0.02)
    assert m["focus_stacks"] == 7

    [calibration] = ANALYSIS.analyse(tmp_path, "zcal.ome.tif", _entry("zcal"), {})
    assert calibration["kind"] == "focus_stability" and "calibration" in calibration["subject"]
    assert calibration["metrics"]["focus_range_um"]["value"] < 0.1  # 8 z-stacks of one focus (100 um), their planes with drive errors

    [rep] = ANALYSIS.analyse(tmp_path, "zrep.ome.tif", _entry("zrep"), {})
    assert rep["kind"] == "z_repeatability" and rep["subject"] == "10 um moves"
    table = rep["table"]
    assert table["all"]["n"] == 24 and table["+z"]["n"] == 12 and table["-z"]["n"] == 12
    for direction, offset in truth.items():
        assert table[direction]["z"]["mean_um"] == pytest.approx(offset, abs=0.04)
        assert table[direction]["z"]["sd_um"] == pytest.approx(math.sqrt(2) * s, rel=0.5)
    m = {k: v["value"] for k, v in rep["metrics"].items()}
    assert m["pairs"] == 24 and m["max_displacement_um"] == pytest.approx(max(abs(x["dz_um"]) for x in rep["errors"]))
    assert rep["data_quality"]["saturated_pixels"] == 0
    html = ANALYSIS.figures(tmp_path, rep) + ANALYSIS.figures(tmp_path, stability) + "".join(ANALYSIS.section(rep))
    assert html.count("<figure>") == 2 and "mean z" in html


def test_a_stage_stack_is_not_taken_by_the_focus_analysis(tmp_path: Path) -> None:
    frame = Beads(np.random.default_rng(17)).frame(0.0)
    _write(tmp_path, "rep", [frame, frame], [{"tag": "reference", "context": "{}"}, {"tag": "return", "context": "{}"}], 1)
    assert STAGE.applies(tmp_path, {}, "rep.ome.tif", _entry("rep"))
    assert not ANALYSIS.applies(tmp_path, {}, "rep.ome.tif", _entry("rep"))


# --- part 2: the protocols on the simulated station -----------------------------------------------
OTHER = {  # a 20x/0.45 air objective, a focus drifting -0.8 um/h (no settling), a worse Z drive
    "instrument": {"objectives": [{"id": "obj20x045", "manufacturer": "Simulated", "model": "LD Plan 20x/0.45", "nominal_magnification": 20,
                                   "lens_na": 0.45, "immersion": "Air"}], "objective_in_use": "obj20x045"},
    "devices": {"ZDrive": {"simulation": {"z": {"backlash_um": 0.5, "repeatability_sigma_um": 0.1, "thermal_drift_um_per_h": 0.2}}}},
    "simulation": {"optics": {"focus_drift_um_per_h": -0.8, "focus_settle_um": 0.0, "spherical_aberration_waves": 0.1}},
}
OTHER_MARK = "  - move: {along: +z, by: 1.5 um}"  # half the focus curve's FWHM of the 20x/0.45 (about 3 um)


class SimRun:
    def __init__(self, results: list[dict[str, Any]], world: Any, t0: float, folder: Path) -> None:
        self.results, self.world, self.t0, self.folder = results, world, t0, folder

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.results if r["kind"] == kind]


def _sim_run(tmp: Path, extra: dict[str, Any], protocol: str, text: str | None = None) -> SimRun:
    path = ROOT / "protocols" / protocol
    if text is not None:
        path = tmp / protocol
        path.write_text(text)
    with Station.load(station_variant(tmp, extra)) as station:
        runner = Runner(station, path, runs_dir=tmp / "runs", quiet=True)
        outcome = runner.run()
        assert outcome.status == "completed", outcome.reason
        assert station.sim is not None
        world = station.sim.world
    results = json.loads((outcome.folder / "results.json").read_text())["results"]
    return SimRun(results, world, runner.t0, outcome.folder)


def _z_drive(extra: dict[str, Any]) -> dict[str, float]:
    data = merge(yaml.safe_load(SIMULATED.read_text()), extra)
    return dict(data["devices"]["ZDrive"]["simulation"]["z"])


@pytest.fixture(scope="module")
def stability_default(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    run = shipped_run("focus-stability", tmp_path_factory)  # the shipped protocol on the shipped station
    return SimRun(run.results(), run.world, run.t0, run.folder)


@pytest.fixture(scope="module")
def stability_other(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    return _sim_run(tmp_path_factory.mktemp("focus-other"), OTHER, "focus-stability.yaml")


@pytest.fixture(scope="module")
def repeatability_default(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    run = shipped_run("z-repeatability", tmp_path_factory)
    return SimRun(run.results(), run.world, run.t0, run.folder)


@pytest.fixture(scope="module")
def repeatability_other(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    text = (ROOT / "protocols" / "z-repeatability.yaml").read_text()
    assert "  - move: {along: +z, by: 0.6 um}" in text
    return _sim_run(tmp_path_factory.mktemp("zrep-other"), OTHER, "z-repeatability.yaml",
                    text.replace("  - move: {along: +z, by: 0.6 um}", OTHER_MARK))


@pytest.mark.parametrize("which,drift_tol,range_tol", [("default", 0.03, 0.1), ("other", 0.05, 0.25)])
def test_focus_stability_against_the_simulated_focal_plane(which: str, drift_tol: float, range_tol: float, request: pytest.FixtureRequest) -> None:
    """Truth: ``world.focal_plane_z_um(t, 'Laser488')`` (the Z drive reported position at which the beads
    are in focus, the drive approaching from below, without its random per-move error) at each
    z-stack's time. Tolerances: the drift within ``drift_tol`` um/h of the slope of the line through
    the truth at the same times (its SE is about 0.006 um/h on the default station, 0.012 um/h on the
    other, from the drive's per-plane error), the range within ``range_tol`` um of the truth's range;
    the focal positions minus the truth: a constant offset under 0.1 x the focus curve's FWHM (the
    normalised-variance peak of a PSF with spherical aberration is not at its on-axis intensity
    maximum, the truth's definition: measured -0.04 um at 0.05 waves rms and NA 0.75, -0.27 um (7 %
    of the FWHM) at 0.1 waves and NA 0.45, under 0.015 um without aberration) and a scatter about it under
    0.6 x the drive's repeatability sigma (a per-plane error of SD s scatters a focal position by about 0.5 s)."""
    run: SimRun = request.getfixturevalue(f"stability_{which}")
    [r] = run.of("focus_stability")
    stacks = r["stacks"]
    assert len(stacks) == 19 and all(s["z_um"] is not None for s in stacks), [s.get("reason") for s in stacks]
    t = np.array([s["time_s"] for s in stacks])
    z = np.array([s["z_um"] for s in stacks])
    truth = np.array([run.world.focal_plane_z_um(run.t0 + ti, "Laser488") for ti in t])
    m = {k: v["value"] for k, v in r["metrics"].items()}
    truth_slope = float(np.polyfit(t / 3600, truth, 1)[0])
    assert m["focus_drift_um_per_h"] == pytest.approx(truth_slope, abs=drift_tol)
    assert m["focus_range_um"] == pytest.approx(float(np.ptp(truth)), abs=range_tol)
    fwhm = float(np.median([s["fwhm_um"] for s in stacks]))
    assert abs(float(np.mean(z - truth))) < 0.1 * fwhm
    sigma = _z_drive(OTHER if which == "other" else {})["repeatability_sigma_um"]
    assert float(np.std(z - truth, ddof=1)) < 0.6 * sigma
    assert m["focus_stacks"] == 19 and r["data_quality"]["saturated_pixels"] == 0


@pytest.mark.parametrize("which", ["default", "other"])
def test_z_return_errors_against_the_simulated_drive(which: str, request: pytest.FixtureRequest) -> None:
    """Truth (simulators/stage.py): the reference frame is approached from below, a return from +z
    comes from above and sits a backlash b higher, a return from -z comes from below like the
    reference: mean dz per direction = focal_plane_z_um(approach +1) - focal_plane_z_um(approach -1)
    (= b) for +z, 0 for -z; each frame has its own random drive error, so the SD per direction is
    sqrt(2) sigma. Tolerances: each direction's mean (10 pairs per move size) within 3 standard errors
    (3 sqrt(2) sigma / sqrt(10)) + 0.02 um of the truth (the 0.02 um: the calibration model's scale
    error, a few % of b); the SD within the directions, pooled over both move sizes (36 degrees of
    freedom), within 35 % of sqrt(2) sigma (3 x its relative SE of 12 %)."""
    run: SimRun = request.getfixturevalue(f"repeatability_{which}")
    axis = _z_drive(OTHER if which == "other" else {})
    sigma = axis["repeatability_sigma_um"]
    t = run.t0 + 60.0
    backlash = run.world.focal_plane_z_um(t, "Laser488", 1) - run.world.focal_plane_z_um(t, "Laser488", -1)
    assert backlash == pytest.approx(axis["backlash_um"], rel=1e-6)
    results = {r["subject"]: r for r in run.of("z_repeatability")}
    assert sorted(results) == ["10 um moves", "100 um moves"]
    squares, dof = 0.0, 0
    for r in results.values():
        table = r["table"]
        assert table["+z"]["n"] == 10 and table["-z"]["n"] == 10, [e.get("reason") for e in r["errors"]]
        tol = 3 * math.sqrt(2) * sigma / math.sqrt(10) + 0.02
        assert table["+z"]["z"]["mean_um"] == pytest.approx(backlash, abs=tol)
        assert table["-z"]["z"]["mean_um"] == pytest.approx(0.0, abs=tol)
        for d in ("+z", "-z"):
            squares += table[d]["z"]["sd_um"] ** 2 * (table[d]["n"] - 1)
            dof += table[d]["n"] - 1
        assert r["metrics"]["max_displacement_um"]["value"] == pytest.approx(max(abs(e["dz_um"]) for e in r["errors"]))
    assert math.sqrt(squares / dof) == pytest.approx(math.sqrt(2) * sigma, rel=0.35)
    [calibration] = run.of("focus_stability")  # the calibration z-stacks' focus over the run
    assert calibration["metrics"]["focus_stacks"]["value"] == 20


def test_the_demo_station_runs_both_protocols_and_says_what_it_cannot_show(tmp_path: Path) -> None:
    """The Micro-Manager demo station (DemoCamera, DStage, real time: the protocols shortened to 2
    z-stacks 1 s apart, one round of 10 um moves, 10 ms exposures). The DemoCamera's synthetic image is
    sharpest at the DStage's z = 0 whatever else happens: the focus stability finds the focal position
    there and no drift (there is none to see); the Z repeatability's mark (0.6 um from focus, for a
    20x/0.75) lies within 0.15 FWHM of the demo's wide focus curve, so no frame is located and the
    metrics say why."""
    short = {"focus-stability.yaml": lambda t: t.replace("repeat: 19", "repeat: 2").replace("wait: 10 min", "wait: 1 s"),
             "z-repeatability.yaml": lambda t: t.replace("repeat: 10", "repeat: 1").replace("[10 um, 100 um]", "[10 um]")}
    results = []
    for name, edit in short.items():
        text = edit((ROOT / "protocols" / name).read_text()).replace("exposure: 100 ms", "exposure: 10 ms")
        (tmp_path / name).write_text(text)
        with Station.load(DEMO) as station:
            outcome = Runner(station, tmp_path / name, runs_dir=tmp_path / "runs", quiet=True).run()
        assert outcome.status == "completed", outcome.reason
        results += json.loads((outcome.folder / "results.json").read_text())["results"]
    [stability] = [r for r in results if r["kind"] == "focus_stability" and "calibration" not in r["subject"]]
    assert all(abs(s["z_um"]) < 0.01 for s in stability["stacks"])
    assert abs(stability["metrics"]["focus_drift_um_per_h"]["value"]) < 1e-3 and stability["metrics"]["focus_range_um"]["value"] < 1e-3
    [rep] = [r for r in results if r["kind"] == "z_repeatability"]
    for name in ("max_displacement_um", "sd_z_um", "mean_z_um"):
        m = rep["metrics"][name]
        assert m["value"] is None and m["verdict"] == "not judged" and "from the calibration's focus" in m["reason"], m
    assert rep["verdict"] == "not judged"
