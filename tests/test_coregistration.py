"""Chromatic co-registration from multi-colour bead z-stacks: bead matching, shifts and MetroloJ_QC's
co-alignment ratio (``harness.analysis.psf_metrics``) on synthetic z-stacks with known shifts
(tests/bead_stacks.py), the ratio against MetroloJ_QC's getReferenceDistance transcribed in
tests/test_psf_analysis.py, and the co-registration protocol on simulated stations against the
simulator's chromatic shifts (``World.chromatic_shift_um``).

Tolerances (asserted below):
- synthetic (20x/0.75-like, 0.252 um/px, peak SNR ~100): mean shift within 0.01 um in x and y and
  0.03 um in z of the applied shift; per-bead co-alignment ratio equal to distance / MetroloJ_QC's
  reference distance (longer wavelength's resolution) to 1e-9;
- protocol on the default station (no chromatic shift; Z drive 0.05 um rms per plane, common to the
  beads of one z-stack): mean shift within 0.02 um (x, y) and 0.06 um (z) of the truth;
- protocol on the other station (63x/1.4 oil, 0.103 um/px, shifts of 0.1-0.5 um, piezo Z 0.01 um rms):
  within 0.02 um (x, y) and 0.04 um (z).
  Measured: default errors at most 0.005 um (x, y) and 0.036 um (z); other 0.0033 um (x, y), 0.0085 um (z).
  The z truth is the Z drive reading at which each line is in focus when its z-stack passes its middle
  (``World.focal_plane_z_um``: chromatic shift, best focus under spherical aberration, focus drift).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.analysis import psf_metrics
from harness.analysis.bead_fits import find_beads, rules_for
from harness.finishing.runner import FinishingRunner as Runner
from harness.records.series_writer import read_series
from harness.station.station import Station
from tests.bead_stacks import grid_beads, render
from tests.conftest import DEMO, ROOT, station_variant
from tests.shipped_runs import shipped_run
from tests.test_psf_analysis import OTHER_STATION, _metroloj_reference_distance, laser_label, run_protocol

PROTOCOL = ROOT / "protocols" / "co-registration.yaml"
SHIFT = (0.08, -0.05, 0.3)  # um, channel 2 - channel 1


def _two_channels(shift: tuple[float, float, float], seed: int = 5) -> tuple[list[Any], list[Any], psf_metrics.Resolution, psf_metrics.Resolution]:
    pixel, step, nz = 0.252, 0.38, 41
    z = np.arange(nz) * step
    truth = grid_beads(5, 4.5, 4.0, z[nz // 2], np.random.default_rng(seed), jitter_um=0.4, z_jitter_um=0.3)
    moved = [(x + shift[0], y + shift[1], zc + shift[2], b) for x, y, zc, b in truth]
    ref, other = psf_metrics.resolution(515, 0.75, 1.0), psf_metrics.resolution(590, 0.75, 1.0)
    out = []
    for res, beads, s in ((ref, truth, seed), (other, moved, seed + 1)):
        stack = render((nz, 256, 256), pixel, z, beads, res.lateral_um, res.axial_um, seed=s)
        out.append(find_beads(stack, pixel, z.tolist(), rules_for(pixel, res.lateral_um, res.axial_um, 65535.0)))
    return out[0], out[1], ref, other


@pytest.mark.fast
def test_shifts_and_coalignment_ratio_of_synthetic_channels() -> None:
    ref_beads, beads, _, longer = _two_channels(SHIFT)
    pairs = psf_metrics.match(ref_beads, beads, max(1.0, 3 * longer.lateral_um))
    assert len(pairs) >= 20
    m = psf_metrics.coregistration_metrics(pairs, longer, "")
    assert m["shift_x_um"].value == pytest.approx(SHIFT[0], abs=0.01)
    assert m["shift_y_um"].value == pytest.approx(SHIFT[1], abs=0.01)
    assert m["shift_z_um"].value == pytest.approx(SHIFT[2], abs=0.03)
    assert m["distance_3d_um"].value == pytest.approx(math.dist((0, 0, 0), SHIFT), abs=0.03)
    ratios = [p.distance_um / _metroloj_reference_distance(p.shift_um, longer.metroloj) for p in pairs]
    assert m["coalignment_ratio"].value == pytest.approx(float(np.mean(ratios)), rel=1e-9)
    assert m["beads_matched"].value == len(pairs) and not m["shift_x_sd_um"].reason


@pytest.mark.fast
def test_no_pair_is_said_and_a_shift_beyond_the_radius_fails_the_count() -> None:
    ref_beads, beads, _, longer = _two_channels((3.0, 0.0, 0.0))  # beyond the 1.05 um match radius
    pairs = psf_metrics.match(ref_beads, beads, 1.05)
    assert pairs == []
    m = psf_metrics.coregistration_metrics(pairs, longer, "no bead within 1.05 um", count_judged=True)
    assert m["beads_matched"].value == 0 and not m["beads_matched"].reason  # judged: 0 matched
    assert math.isnan(m["shift_x_um"].value) and m["shift_x_um"].reason == "no bead within 1.05 um"
    m = psf_metrics.coregistration_metrics([], longer, "488 nm: no bead: every plane is the same image")
    assert m["beads_matched"].reason and math.isnan(m["coalignment_ratio"].value)


# --- the co-registration protocol on simulated stations -----------------------------------------

@pytest.fixture(scope="module")
def coreg_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict[str, Any]], Any, float]]:
    shipped = shipped_run("co-registration", tmp_path_factory)  # the shipped protocol on the shipped station
    out = {"default": (shipped.folder, shipped.results("coregistration"), shipped.world, shipped.t0)}
    base = tmp_path_factory.mktemp("coreg-other")
    out["other"] = run_protocol(station_variant(base, OTHER_STATION), base / "runs", PROTOCOL, "coregistration")
    return out


@pytest.mark.parametrize("which", ["default", "other"])
def test_the_protocol_recovers_the_simulated_chromatic_shifts(which: str, coreg_runs: dict[str, Any]) -> None:
    folder, results, world, t0 = coreg_runs[which]
    lateral_tol, axial_tol = (0.02, 0.06) if which == "default" else (0.02, 0.04)
    assert sorted(r["line"] for r in results) == ["488", "561", "640"] and {r["reference"] for r in results} == {"405"}
    # when each line's z-stack passed its middle plane (station clock): the focus drifts between the lines
    rows = [x for x in read_series(folder / "coregistration_frames.csv") if x["tag"] == "coregistration"]
    planes = {c: sorted((x for x in rows if x["channel"] == c), key=lambda x: int(x["t"])) for c in {x["channel"] for x in rows}}
    middle = {c: t0 + float(p[len(p) // 2]["time_s"]) for c, p in planes.items()}

    def truth(channel: str) -> tuple[float, float, float]:
        label = laser_label(world, channel)
        x, y, _ = world.chromatic_shift_um(label)
        return x, y, world.focal_plane_z_um(middle[channel], label)  # the Z drive reading at which that line is in focus

    ref = truth("405")
    for r in results:
        shift = truth(r["line"])
        m = {k: v["value"] for k, v in r["metrics"].items()}
        assert m["beads_matched"] >= 5
        for i, axis in enumerate("xyz"):
            tol = axial_tol if axis == "z" else lateral_tol
            assert m[f"shift_{axis}_um"] == pytest.approx(shift[i] - ref[i], abs=tol), (r["subject"], axis, shift, ref)
        per_bead = [p["distance_um"] / p["ratio"] for p in r["pairs"]]
        res = r["reference_resolution"]
        assert res["emission_nm"] == max(r["emission_nm"].values())
        want = [_metroloj_reference_distance((p["dx_um"], p["dy_um"], p["dz_um"]), (res["lateral_um"], res["lateral_um"], res["axial_metroloj_um"]))
                for p in r["pairs"]]
        assert per_bead == pytest.approx(want, rel=1e-9)


def test_the_report_draws_a_vector_map_per_line(coreg_runs: dict[str, Any]) -> None:
    folder, results, _, _ = coreg_runs["other"]
    html = (folder / "report.html").read_text()
    assert html.count("shift of each bead&#x27;s centre (arrows: x-y shift x ") == 2 * len(results)


def test_the_protocol_on_the_demo_camera_says_the_image_does_not_depend_on_the_line(tmp_path: Path) -> None:
    with Station.load(DEMO) as station:
        outcome = Runner(station, PROTOCOL, runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    results = [r for r in json.loads((outcome.folder / "results.json").read_text())["results"] if r["kind"] == "coregistration"]
    assert results
    for r in results:
        assert r["verdict"] == "not judged"
        assert all(v["verdict"] == "not judged" and "the image does not depend on the laser line" in v["reason"] for k, v in r["metrics"].items()
                   if k not in ("saturated_pixels", "defect_pixels")), r["metrics"]
