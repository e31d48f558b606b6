"""Stage repeatability from images against the simulated stage's ground truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.registration import shift_px
from harness.finishing.runner import FinishingRunner as Runner

PROTOCOL = """\
protocol: repeatability-test
title: short WG6 cycle
acceptance:
  max_displacement_um: {pass: [null, 5.0]}
steps:
  - laser: {line: 488, setpoint: 20 %, emission: on}
  - mark: start
  - repeat: 12
    as: round
    do:
      - for_each: {direction: [+x, -x, +y, -y]}
        do:
          - acquire: {stack: rep, exposure: 200 ms, centre_roi: [512, 512], tag: reference}
          - move: {along: $direction, by: 300 um}
          - move: {to: start}
          - acquire: {stack: rep, exposure: 200 ms, centre_roi: [512, 512], tag: return}
  - laser: {line: 488, emission: off}
"""


def test_registration_recovers_a_known_subpixel_shift() -> None:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:256, 0:256]
    img = np.zeros((256, 256))
    for cx, cy in rng.uniform(20, 236, (40, 2)):
        img += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.5**2))
    shifted = np.fft.ifft2(np.fft.fft2(img) * np.exp(-2j * np.pi * (np.fft.fftfreq(256)[None, :] * 3.3 + np.fft.fftfreq(256)[:, None] * -1.7))).real
    dx, dy = shift_px(img, shifted)
    assert (dx, dy) == pytest.approx((3.3, -1.7), abs=0.05)


def test_repeatability_sigma_recovered(make_station, tmp_path: Path) -> None:
    """No backlash, no drift: each return frame differs from its reference by two independent
    positioning errors, so the SD per axis is sqrt(2) x the stage's sigma."""
    sigma = 0.3
    axis = {"repeatability_sigma_um": sigma, "backlash_um": 0.0, "thermal_drift_um_per_h": 0.0}
    st = make_station({"devices": {"XYStage": {"simulation": {"x": axis, "y": axis}}}})
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL)
    outcome = Runner(st, path, runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    result = json.loads((outcome.folder / "results.json").read_text())
    [rep] = [r for r in result["results"] if r["kind"] == "stage_repeatability"]
    m = {k: v["value"] for k, v in rep["metrics"].items()}
    assert m["pairs"] == 48
    expected = math.sqrt(2) * sigma
    assert m["sd_x_um"] == pytest.approx(expected, rel=0.3)
    assert m["sd_y_um"] == pytest.approx(expected, rel=0.3)
    assert abs(m["mean_x_um"]) < 0.2 and abs(m["mean_y_um"]) < 0.2
    assert rep["verdict"] == "pass"


def test_iso230_reversal_equals_the_simulated_backlash(make_station, tmp_path: Path) -> None:
    """Ground truth: no random error, no drift, backlash 2 um on x: every target shows B_i = -2 um
    (approached upwards the carriage lags by b/2 below, downwards b/2 above) and R = |B|."""
    axis = {"repeatability_sigma_um": 0.0, "backlash_um": 2.0, "thermal_drift_um_per_h": 0.0}
    st = make_station({"devices": {"XYStage": {"simulation": {"x": axis, "y": {"repeatability_sigma_um": 0.0, "thermal_drift_um_per_h": 0.0}}}}})
    from tests.conftest import ROOT

    model = st.sim.world.xy_stages[st.xy_stage.label]
    commanded: list[dict[str, float]] = []
    move = model.move
    model.move = lambda targets: (commanded.append(dict(targets)), move(targets))[1]  # type: ignore[method-assign]
    outcome = Runner(st, ROOT / "protocols" / "stage-iso230.yaml", runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    # only x over-travels, also where the stage already sits at the target (x = 0 at the start, 8 mm at the turn)
    assert commanded and {c["y"] for c in commanded} == {0.0}
    assert {-100.0, 8100.0} <= {c["x"] for c in commanded}
    [iso] = [r for r in json.loads((outcome.folder / "results.json").read_text())["results"] if r["kind"] == "iso230"]
    assert len(iso["targets"]) == 5 and all(t["n_up"] == 5 and t["n_down"] == 5 for t in iso["targets"])
    for t in iso["targets"]:
        assert t["B_i_um"] == pytest.approx(-2.0, abs=0.05)
        assert t["s_up_um"] < 0.02 and t["s_down_um"] < 0.02
    m = {k: v["value"] for k, v in iso["metrics"].items()}
    assert m["reversal_B_um"] == pytest.approx(2.0, abs=0.05)
    assert m["bidirectional_repeatability_R_um"] == pytest.approx(2.0, abs=0.15)


def test_hot_pixels_of_bead_frames_are_found_and_do_not_pull_the_registration(make_station, tmp_path: Path) -> None:
    """Ground truth: 400 simulated hot pixels (about 50 in the 512 x 512 centre region, 1480 ADU each,
    fixed on the sensor while the beads move with the stage's errors). The result's hot pixels are
    those of the simulator in the region (a hot pixel on a bead may be missed: at most 2); they are
    filled before registering, so the SD per axis is still sqrt(2) x the stage's sigma; nothing is
    saturated, the data quality is pass and the report has its line."""
    import tifffile

    from harness.analysis.frame_stats import frame_stats
    from harness.analysis.pixel_quality import spike_defects

    sigma = 0.3
    axis = {"repeatability_sigma_um": sigma, "backlash_um": 0.0, "thermal_drift_um_per_h": 0.0}
    st = make_station({"devices": {"XYStage": {"simulation": {"x": axis, "y": axis}}, "Camera": {"simulation": {"hot_pixels": 400}}}})
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL)
    outcome = Runner(st, path, runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    camera = st.sim.world.cameras["Camera"]
    x0, y0 = (camera.p.width_px - 512) // 2, (camera.p.height_px - 512) // 2
    truth = {(int(r) - y0, int(c) - x0) for r, c in zip(camera.hot_rows, camera.hot_cols) if y0 <= r < y0 + 512 and x0 <= c < x0 + 512}
    assert len(truth) > 20
    [rep] = [r for r in json.loads((outcome.folder / "results.json").read_text())["results"] if r["kind"] == "stage_repeatability"]
    dq = rep["data_quality"]
    assert len(truth) - 2 <= dq["defect_pixels"]["hot"] <= len(truth) and rep["metrics"]["defect_pixels"]["value"] == dq["defect_pixels"]["hot"]
    with tifffile.TiffFile(outcome.folder / "rep.ome.tif") as tif:
        stats = frame_stats(p.asarray() for p in tif.pages)
    found = {(int(r), int(c)) for r, c in zip(*np.nonzero(spike_defects(stats.mean, stats.count).masks["hot"]))}
    assert found <= truth and len(found) == dq["defect_pixels"]["hot"]
    assert dq["saturated_pixels"] == 0 and dq["verdict"] == "pass" and rep["verdict"] == "pass"
    m = {k: v["value"] for k, v in rep["metrics"].items()}
    assert m["sd_x_um"] == pytest.approx(math.sqrt(2) * sigma, rel=0.3)
    assert m["sd_y_um"] == pytest.approx(math.sqrt(2) * sigma, rel=0.3)
    assert "data quality pass" in (outcome.folder / "report.html").read_text(encoding="utf-8")
