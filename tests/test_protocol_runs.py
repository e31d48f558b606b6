"""Every shipped protocol runs on the simulated station (virtual time), and its run folder holds
what it should: provenance, series with units, OME-TIFFs that tifffile, ome-types and Bio-Formats
read back exactly as written, and a manifest that verifies."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile
from ome_types import from_xml

from harness.finishing.runner import FinishingRunner as Runner
from harness.records.journal import read_journal
from tests.conftest import ROOT
from tests.imaging import illumination_peak
from tests.omecheck import bioformats_info, bioformats_value
from tests.shipped_runs import shipped_run

PROTOCOLS = sorted((ROOT / "protocols").glob("*.yaml"))
# as fast as the loopback round trip (~0.5 ms real) allows each protocol's sampling interval


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Runner]]:
    """Every shipped protocol, run once on the shipped simulated station (tests/shipped_runs.py: the
    same runs other modules check against their ground truth)."""
    out = {}
    for protocol in PROTOCOLS:
        run = shipped_run(protocol.stem, tmp_path_factory)
        out[protocol.stem] = (run.folder, run.runner)
    return out


def test_all_shipped_protocols_ran(runs: dict) -> None:
    assert set(runs) == {p.stem for p in PROTOCOLS}
    assert len(PROTOCOLS) >= 6


@pytest.mark.parametrize("protocol", [p.stem for p in PROTOCOLS])
def test_run_json_has_full_provenance(runs: dict, protocol: str) -> None:
    folder, runner = runs[protocol]
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "completed" and run["reason"] == ""
    assert run["run_id"] == runner.run_id and len(run["run_id"]) == 36
    text = (ROOT / "protocols" / f"{protocol}.yaml").read_text()
    assert run["protocol"]["text"] == text
    assert run["protocol"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert run["station"]["sha256"] == hashlib.sha256(run["station"]["text"].encode()).hexdigest()
    sw = run["software"]
    assert sw["mmcore"].startswith("MMCore version") and "Device API version" in sw["device_interface"]
    for package in ("pymmcore-plus", "pyvisa", "tifffile", "ome-types", "numpy"):
        assert sw["packages"][package] != "not installed"
    assert run["host"]["hostname"] and run["operator"]
    assert run["devices"]["Meter"]["serial"] == "P0012345" and run["devices"]["Laser488"]["model"].startswith("OBIS 488")
    assert run["clock"]["mode"] == "virtual" and run["clock"]["time_scale"] is None
    # station time: the run's dates are as far apart as its station clock ran
    elapsed = datetime.fromisoformat(run["ended_utc"]) - datetime.fromisoformat(run["started_utc"])
    assert elapsed.total_seconds() == pytest.approx(run["clock"]["elapsed_s"], abs=1e-3)
    for name, entry in run["files"].items():
        assert entry["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()


@pytest.mark.parametrize("protocol", [p.stem for p in PROTOCOLS])
def test_manifest_covers_and_verifies_every_file(runs: dict, protocol: str) -> None:
    folder, _ = runs[protocol]
    listed = {}
    for line in (folder / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    on_disk = {p.name for p in folder.iterdir() if p.name != "MANIFEST.sha256"}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_journal_is_complete_and_ordered(runs: dict) -> None:
    folder, runner = runs["power-stability-short"]
    records = read_journal(folder / "journal.jsonl")
    assert records[0]["type"] == "run_start" and [r["type"] for r in records][-4:] == ["run_end", "finishing", "finishing", "finished"]
    assert [r["seq"] for r in records] == list(range(len(records)))
    readings = [r for r in records if r["type"] == "reading"]
    assert len(readings) == 4 * 300
    assert any(r["type"] == "safe_state" and r["confirmed"] for r in records)


def test_power_series_sample_on_the_clock_without_drift(runs: dict) -> None:
    folder, runner = runs["power-stability-short"]
    for line in ("405", "488", "561", "640"):
        with open(folder / f"power_short_{line}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 300
        deadlines = np.array([float(r["deadline_s"]) for r in rows])
        times = np.array([float(r["time_s"]) for r in rows])
        assert np.allclose(np.diff(deadlines), 1.0)  # t0 + k * interval
        assert np.all(times >= deadlines)
        assert {r["lines_on"] for r in rows} == {line}
        assert {r["meter_wavelength_nm"] for r in rows} == {f"{float(line)}"}
        assert {r["location"] for r in rows} == {"OBJECTIVE_FOCAL"}
        assert all(r["status"] == "ok" for r in rows)
        # virtual time: every sample is taken exactly at its deadline, however busy the machine is
        # (real-time precision is measured by benchmarks/sampling_precision.py)
        assert np.array_equal(times, deadlines)
        assert {r["late"] for r in rows} == {"0"} and {float(r["lateness_s"]) for r in rows} == {0.0}
        assert times[-1] - times[0] == 299.0  # no accumulated drift
    header = (folder / "power_short_488.csv").read_text().splitlines()[0]
    assert "power_W" in header and "setpoint_mW" in header and "meter_wavelength_nm" in header


def test_power_readings_match_ground_truth(runs: dict) -> None:
    """Mean power per line against the simulator's steady-state truth at the meter."""
    folder, runner = runs["power-stability-short"]
    world = runner.station.sim.world
    for line, label in (("488", "Laser488"), ("640", "Laser640")):
        with open(folder / f"power_short_{line}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        measured = np.mean([float(r["power_W"]) for r in rows])
        laser = world.lasers[label]
        truth_w = laser.steady_power_mw(float(rows[0]["setpoint_mW"])) * world.params.optics.transmission_to_meter[label] / 1e3
        # after 5 min of warm-up; drift below 0.3 %/h over the first hour of the run
        assert measured == pytest.approx(truth_w, rel=0.01)


def test_long_protocol_in_virtual_time_reads_120_minutes(runs: dict) -> None:
    folder, runner = runs["power-stability-long"]
    with open(folder / "power_long_488.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 240
    deadlines = np.array([float(r["deadline_s"]) for r in rows])
    times = np.array([float(r["time_s"]) for r in rows])
    assert deadlines[-1] - deadlines[0] == pytest.approx(119.5 * 60, abs=1e-6)
    assert np.array_equal(times, deadlines)  # virtual time: on the dot
    run = json.loads((folder / "run.json").read_text())
    # station time is what the protocol and the devices take: zeroing (1 s), then per line the CDRH
    # emission delay (5 s), 30 min of warm-up, 239 intervals of 30 s and the last 1 s reading
    # (averaging 1000 x 1 ms); plus command latencies
    cdrh = runner.station.sim.world.lasers["Laser488"].p.cdrh_delay_s
    assert run["clock"]["elapsed_s"] == pytest.approx(1.0 + 4 * (cdrh + 30 * 60 + 239 * 30 + 1.0), abs=0.5)


def test_linearity_series_steps_through_the_set_points(runs: dict) -> None:
    folder, _ = runs["power-linearity"]
    with open(folder / "linearity_561.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pct = sorted({float(r["setpoint_pct_nominal"]) for r in rows})
    assert pct == [1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert len(rows) == 13 * 10


def _ome(path: Path):
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
        pages = [p.asarray() for p in tif.pages]
        resolution = tif.pages[0].resolution
        unit = tif.pages[0].resolutionunit
    return from_xml(xml, validate=True), pages, resolution, unit


@pytest.mark.parametrize("protocol,stack", [("flat-field", "flatfield"), ("stage-repeatability", "repeatability"), ("stage-iso230", "iso230")])
def test_ome_tiff_reads_back_exactly_what_was_written(runs: dict, protocol: str, stack: str) -> None:
    folder, runner = runs[protocol]
    ome, pages, resolution, unit = _ome(folder / f"{stack}.ome.tif")
    image = ome.images[0]
    px = image.pixels
    plan = runner.plan.stacks[stack]
    with open(folder / f"{stack}_frames.csv", newline="") as f:
        frames = list(csv.DictReader(f))
    assert len(pages) == len(frames) == sum(plan.frames_per_channel.values())
    assert px.size_c == len(plan.channels) and px.size_t == plan.size_t
    assert [c.name for c in px.channels] == plan.channels
    assert len(px.planes) == len(px.tiff_data_blocks) == len(pages)
    # each IFD maps to the (C, T) the plan gave that frame; positions and times as recorded
    for row, td, plane in zip(frames, px.tiff_data_blocks, px.planes):
        assert (td.ifd, td.first_c, td.first_t) == (int(row["ifd"]), int(row["c"]), int(row["t"]))
        assert (plane.the_c, plane.the_t) == (td.first_c, td.first_t)
        assert plane.delta_t == pytest.approx(float(row["time_s"]), abs=1e-6)
        assert plane.position_x == pytest.approx(float(row["x_um"])) and plane.exposure_time == pytest.approx(float(row["exposure_s"]))
    journal = [r for r in read_journal(folder / "journal.jsonl") if r["type"] == "frame" and r["stack"] == stack]
    assert [r["mean"] for r in journal] == pytest.approx([float(p.mean()) for p in pages])
    # physical size and the TIFF resolution tag agree (pixels per cm)
    assert px.physical_size_x == pytest.approx(runner.station.camera.pixel_size_um)
    assert unit == 3 and resolution[0] == pytest.approx(1e4 / px.physical_size_x)
    inst = ome.instruments[0]
    assert [laser.wavelength for laser in inst.lasers] == [405, 488, 561, 640]
    assert inst.detectors[0].serial_number == "SIM21001" and inst.objectives[0].lens_na == 0.75
    keys = {m.k: m.value for a in ome.structured_annotations.map_annotations for m in a.value.ms}
    assert keys["RunId"] == runner.run_id and keys["Protocol"] == protocol
    assert {a.id for a in ome.structured_annotations.map_annotations} == {r.id for r in image.annotation_refs}


def test_flat_field_channels_carry_light_source_settings(runs: dict) -> None:
    folder, runner = runs["flat-field"]
    ome, pages, _, _ = _ome(folder / "flatfield.ome.tif")
    channels = ome.images[0].pixels.channels
    assert channels[0].name == "dark" and channels[0].light_source_settings is None
    ch488 = next(c for c in channels if c.name == "488")
    assert ch488.excitation_wavelength == 488
    assert ch488.light_source_settings.id == "LightSource:1"
    assert ch488.light_source_settings.attenuation == pytest.approx(0.8)  # 20 % of nominal
    dark = np.mean([p.mean() for p, td in zip(pages, ome.images[0].pixels.tiff_data_blocks) if td.first_c == 0])
    lit = np.mean([p.mean() for p, td in zip(pages, ome.images[0].pixels.tiff_data_blocks) if td.first_c == 2])
    assert dark == pytest.approx(100, abs=2) and lit > 3 * dark


@pytest.mark.parametrize("protocol,stack", [("flat-field", "flatfield"), ("stage-iso230", "iso230")])
def test_bioformats_reads_the_files(runs: dict, protocol: str, stack: str) -> None:
    folder, runner = runs[protocol]
    info = bioformats_info(folder / f"{stack}.ome.tif")
    plan = runner.plan.stacks[stack]
    assert int(bioformats_value(info, "Image count")) == sum(plan.frames_per_channel.values())
    assert int(bioformats_value(info, "SizeC")) == len(plan.channels)
    assert int(bioformats_value(info, "SizeT")) == plan.size_t
    assert bioformats_value(info, "Pixel type") == "uint16"


def test_drift_rate_recovered_from_the_long_protocol(runs: dict) -> None:
    """Ground truth: each simulated laser's drift in %/h (the 561 line also has a -1.2 % mode hop at
    t = 5400 s, which falls before its part of the run)."""
    folder, runner = runs["power-stability-long"]
    results = json.loads((folder / "results.json").read_text())
    world = runner.station.sim.world
    by_line = {r["lines_on"][0]: r for r in results["results"]}
    for line, label in (("405", "Laser405"), ("488", "Laser488"), ("561", "Laser561"), ("640", "Laser640")):
        truth = world.lasers[label].p.drift_pct_per_h
        measured = by_line[line]["metrics"]["drift_pct_per_h"]["value"]
        assert measured == pytest.approx(truth, abs=0.05), line
    assert results["verdict"] in ("pass", "warn", "fail")


def test_laser_noise_recovered_from_the_short_protocol(runs: dict) -> None:
    """Ground truth: each reading averages ``averaging`` ~1 ms samples of a laser with relative
    intensity noise ``rin_rms`` per sample, so its relative SD is rin_rms / sqrt(averaging); the
    short-term noise metric (reading to reading) must find it within 15 % (300 readings), blind to
    the warm-up and drift that dominate the CV."""
    from harness.records.series_writer import read_series

    folder, runner = runs["power-stability-short"]
    results = {r["lines_on"][0]: r for r in json.loads((folder / "results.json").read_text())["results"]}
    world = runner.station.sim.world
    for line, label in (("405", "Laser405"), ("488", "Laser488"), ("561", "Laser561"), ("640", "Laser640")):
        averaging = int(read_series(folder / f"power_short_{line}.csv")[0]["averaging"])
        truth = 100 * world.lasers[label].p.rin_rms / averaging**0.5
        assert results[line]["metrics"]["noise_pct"]["value"] == pytest.approx(truth, rel=0.15), line


def test_linearity_detects_lasers_with_a_threshold(runs: dict) -> None:
    """Ground truth: 561 (threshold 1.0 mW) and 405 (0.8 mW) emit little at 1 % of nominal; 640
    (threshold 0.3 mW) and 488 (0.5 mW) stay within 5 %."""
    folder, _ = runs["power-linearity"]
    results = {r["lines_on"][0]: r for r in json.loads((folder / "results.json").read_text())["results"]}
    assert results["561"]["metrics"]["max_relative_deviation_pct"]["verdict"] == "fail"
    assert results["405"]["metrics"]["max_relative_deviation_pct"]["verdict"] == "fail"
    assert results["640"]["metrics"]["max_relative_deviation_pct"]["verdict"] == "pass"
    assert all(r["kind"] == "linearity" and len(r["points"]) == 13 for r in results.values())
    # slope against ground truth: set point x transmission to the meter (x calibration 1)
    assert results["640"]["metrics"]["slope"]["value"] == pytest.approx(0.40, rel=0.01)


def test_analyze_recreates_results_from_the_folder_alone(runs: dict, tmp_path: Path) -> None:
    import shutil

    from harness.cli.commands import run

    folder, _ = runs["power-stability-short"]
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    before = json.loads((copy / "results.json").read_text())
    (copy / "results.json").unlink()
    assert run(["analyze", str(copy)]) == 0
    after = json.loads((copy / "results.json").read_text())
    assert after["results"] == before["results"] and after["verdict"] == before["verdict"]
    listed = [line.split("  ", 1)[1] for line in (copy / "MANIFEST.sha256").read_text().splitlines()]
    assert "results.json" in listed


def test_flat_field_metrics_recover_the_simulated_illumination(runs: dict) -> None:
    """The same metrics on the noise-free ground-truth profile (off-centre Gaussian x vignetting)
    and on the measured, dark-subtracted frames agree."""
    from harness.analysis.flat_field_metrics import flat_field_metrics
    from simulators.camera import Exposure

    folder, runner = runs["flat-field"]
    world = runner.station.sim.world
    camera = world.cameras["Camera"]
    p = camera.p
    fov = camera.field_of_view(0.0, Exposure(0.1, (0, 0, p.width_px - 1, p.height_px - 1)))
    from simulators.sample import illumination_profile

    truth, _ = flat_field_metrics(illumination_profile(world.params.uniform_slide, fov))
    peak = illumination_peak(world.params.uniform_slide, p.width_px, p.height_px)
    results = json.loads((folder / "results.json").read_text())
    flat = [r for r in results["results"] if r["kind"] == "flat_field"]
    assert [r["subject"] for r in flat] == ["405 nm", "488 nm", "561 nm", "640 nm"]
    for r in flat:
        m = {k: v["value"] for k, v in r["metrics"].items()}
        # measured (x120 run): |error| <= 0.12 point, 0.03 point, 0.01 point, 0.13 px, 0.002 px
        assert m["uniformity_pct"] == pytest.approx(truth["uniformity_pct"].value, abs=0.35)
        assert m["field_uniformity_pct"] == pytest.approx(truth["field_uniformity_pct"].value, abs=0.1)
        assert m["centering_accuracy_pct"] == pytest.approx(truth["centering_accuracy_pct"].value, abs=0.05)
        assert m["reference_zone_x_px"] == pytest.approx(truth["reference_zone_x_px"].value, abs=0.5)
        assert m["reference_zone_y_px"] == pytest.approx(truth["reference_zone_y_px"].value, abs=0.5)
        assert m["centroid_x_px"] == pytest.approx(truth["centroid_x_px"].value, abs=0.02)
        assert m["centroid_y_px"] == pytest.approx(truth["centroid_y_px"].value, abs=0.02)
        assert len(r["profiles"]["centre_row"]) == p.width_px
        # the fitted centre: the same fit on the noise-free profile within 0.5 px, and within 3 px of
        # where the simulator's profile peaks (found from the simulator's function alone); measured 1.1 px
        assert m["fitted_centre_x_px"] == pytest.approx(truth["fitted_centre_x_px"].value, abs=0.5)
        assert m["fitted_centre_y_px"] == pytest.approx(truth["fitted_centre_y_px"].value, abs=0.5)
        assert math.hypot(m["fitted_centre_x_px"] - peak[0], m["fitted_centre_y_px"] - peak[1]) < 3.0
        assert m["saturated_pixels"] == 0 and r["data_quality"]["verdict"] == "pass"
        # at least the simulated hot pixels are found in the dark frames (positions: tests/test_image_quality.py)
        assert r["data_quality"]["defect_pixels"]["hot"] >= len(set(zip(camera.hot_rows.tolist(), camera.hot_cols.tolist())))
    # the profile's centre is right of and above the image centre, as configured (+8 %, -5 %)
    assert flat[0]["metrics"]["reference_zone_x_px"]["value"] > p.width_px / 2
    assert flat[0]["metrics"]["reference_zone_y_px"]["value"] < p.height_px / 2


def test_flat_field_correction_images_recover_the_illumination_and_correct_it(runs: dict) -> None:
    """Each lit channel's correction image (mean 1) equals the simulator's illumination profile
    normalised to mean 1 within 1 % everywhere; dividing a raw frame by it lifts U from ~27 % to > 95 %."""
    from harness.analysis.flat_field_metrics import flat_field_metrics
    from harness.analysis.pixel_quality import fill_excluded
    from simulators.camera import Exposure
    from simulators.sample import illumination_profile

    folder, runner = runs["flat-field"]
    world = runner.station.sim.world
    camera = world.cameras["Camera"]
    p = camera.p
    truth = illumination_profile(world.params.uniform_slide, camera.field_of_view(0.0, Exposure(0.1, (0, 0, p.width_px - 1, p.height_px - 1))))
    truth = truth / truth.mean()
    results = json.loads((folder / "results.json").read_text())
    flat = [r for r in results["results"] if r["kind"] == "flat_field"]
    ome, pages, _, _ = _ome(folder / "flatfield.ome.tif")
    channels = [c.name for c in ome.images[0].pixels.channels]
    dark = np.mean([pages[td.ifd] for td in ome.images[0].pixels.tiff_data_blocks if td.first_c == channels.index("dark")], axis=0)
    defects = np.zeros(truth.shape, bool)
    for kind in ("dead", "hot"):
        for r0, c0 in camera.defect_pixels()[kind]:
            defects[r0, c0] = True
    for r in flat:
        name = r["lines_on"][0]
        path = folder / r["correction_image"]
        correction = tifffile.imread(path)
        assert correction.dtype == np.float32 and correction.shape == truth.shape
        assert float(correction.mean()) == pytest.approx(1.0, abs=1e-5)
        assert float(np.max(np.abs(correction - truth))) < 0.01  # defect pixels are masked: no dip at a dead or hot pixel
        corr_ome = from_xml(tifffile.TiffFile(path).ome_metadata, validate=True)
        assert corr_ome.images[0].pixels.channels[0].name == name
        assert corr_ome.images[0].pixels.physical_size_x == ome.images[0].pixels.physical_size_x
        raw = next(pages[td.ifd] for td in ome.images[0].pixels.tiff_data_blocks if td.first_c == channels.index(name)).astype(float)
        signal = fill_excluded(raw - dark, defects)  # a dead pixel stays dark in any frame: U of the field, not of the defects
        before = flat_field_metrics(signal)[0]["uniformity_pct"].value
        after = flat_field_metrics(signal / correction)[0]["uniformity_pct"].value
        assert before < 30 and after > 95, (name, before, after)
    info = bioformats_info(folder / flat[0]["correction_image"])
    assert bioformats_value(info, "Pixel type") == "float" and bioformats_value(info, "Image count") == "1"


@pytest.mark.parametrize("protocol,stack", [("flat-field", "flatfield"), ("stage-repeatability", "repeatability"), ("stage-iso230", "iso230")])
def test_qc_results_travel_in_the_ome_tiff(runs: dict, protocol: str, stack: str, tmp_path: Path) -> None:
    """The metrics of results.json are in the stack's own OME-XML (schema-valid, linked from the
    Image), with 4DN-BINA-OME calibration names; re-analysing replaces them, it does not pile up."""
    import shutil

    from harness.analysis.qc_annotations import NS_NBO_QC, NS_QC
    from harness.finishing.results import analyse_run

    copy = tmp_path / "copy"
    shutil.copytree(runs[protocol][0], copy)
    first = analyse_run(copy)
    analyse_run(copy)  # twice: still one set of QC annotations
    ome = from_xml(tifffile.TiffFile(copy / f"{stack}.ome.tif").ome_metadata, validate=True)
    maps = {a.namespace: a for a in ome.structured_annotations.map_annotations if a.namespace in (NS_QC, NS_NBO_QC)}
    assert len([a for a in ome.structured_annotations.map_annotations if a.namespace == NS_QC]) == 1
    refs = {r.id for r in ome.images[0].annotation_refs}
    assert {a.id for a in maps.values()} <= refs
    qc = {m.k: m.value for m in maps[NS_QC].value.ms}
    assert qc["OverallVerdict"] == first["verdict"] and qc["RunId"] == first["run_id"]
    for r in first["results"]:
        assert qc[f"{r['subject']}/verdict"] == r["verdict"]
        for name, metric in r["metrics"].items():
            if metric["value"] is not None:
                assert float(qc[f"{r['subject']}/{name}"]) == pytest.approx(metric["value"], rel=1e-5)
    nbo = {m.k: m.value for m in maps[NS_NBO_QC].value.ms}
    expected = {"flat-field": "FieldUniformityEvaluation[488 nm]", "stage-repeatability": "XYRepeatability[300 um moves]",
                "stage-iso230": "XYRepeatability.ISO230-2.R[x axis]"}[protocol]
    assert expected in nbo
    # the pixels did not change; run.json knows both checksums; the manifest verifies
    run = json.loads((copy / "run.json").read_text())
    entry = run["files"][f"{stack}.ome.tif"]
    assert entry["sha256"] == hashlib.sha256((copy / f"{stack}.ome.tif").read_bytes()).hexdigest() != entry["sha256_acquired"]
    original = tifffile.imread(runs[protocol][0] / f"{stack}.ome.tif")
    assert np.array_equal(tifffile.imread(copy / f"{stack}.ome.tif"), original)
    assert "Exception" not in bioformats_info(copy / f"{stack}.ome.tif")


@pytest.mark.parametrize("protocol", [p.stem for p in PROTOCOLS])
def test_report_is_one_readable_page_with_verdicts_and_figures(runs: dict, protocol: str) -> None:
    """report.html: self-contained (no external reference), the overall verdict, every judged metric
    with its verdict colour, and decodable PNG figures: one per result (five for the camera: photon
    transfer, SNR, linearity, non-uniformity histograms, defect map; two for a PSF line: its beads and
    their profiles)."""
    import base64
    import io

    import lxml.html
    from matplotlib.image import imread

    from harness.report.report import COLOURS

    folder, _ = runs[protocol]
    results = json.loads((folder / "results.json").read_text())
    assert results["report"] == "report.html" and "report_error" not in results
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "virtual time (simulated station: dates and times are station time)" in page  # which clock the dates are on
    doc = lxml.html.fromstring(page)
    assert not doc.xpath("//script") and not doc.xpath("//link")
    images = doc.xpath("//img")
    assert len(images) == sum({"camera": 5, "psf": 2}.get(r["kind"], 1) for r in results["results"]) > 0
    for img in images:
        src = img.get("src")
        assert src.startswith("data:image/png;base64,")
        pixels = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and pixels.std() > 0.01  # a drawing, not a blank
    text = doc.text_content()
    assert results["verdict"].upper() in text and results["run_id"] in text
    rows = doc.xpath("//table[@id='metrics']//tr[td]")
    flagged = doc.xpath("//table[@id='failures']//tr[td]")
    expected_flagged = []
    for r in results["results"]:
        for name, metric in r["metrics"].items():
            if metric["limit"]:
                row = [tr for tr in rows if len(tr) >= 7 and tr[0].text_content() == r["subject"] and tr[2].text_content() == name]
                assert len(row) == 1, (r["subject"], name)
                assert row[0][6].text_content() == metric["verdict"].upper()
                assert COLOURS[metric["verdict"]] in lxml.html.tostring(row[0][6]).decode()
                if metric["verdict"] in ("fail", "warn"):
                    expected_flagged.append((metric["verdict"], r["subject"], name))
    # what needs attention comes first: failures (then warnings), then the figures, then the long tables
    assert [(tr[6].text_content().lower(), tr[0].text_content(), tr[2].text_content()) for tr in flagged] == sorted(
        expected_flagged, key=lambda f: f[0] != "fail")
    headings = [h.text_content() for h in doc.xpath("//h2")]
    assert headings.index("Figures") < headings.index("Metrics") < headings.index("Run")
    assert headings[0] == ("Failures and warnings" if expected_flagged else "Failures")
    order = page.index
    assert order(results["verdict"].upper()) < order("<h2>Figures") < order("<img") < order("<table id=metrics>")


def test_analyze_names_changed_and_missing_files(runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A folder whose data no longer match run.json's checksums is analysed with a warning naming
    the files; a folder with a listed file missing, or a damaged run.json, is one clear message."""
    import shutil

    from harness.cli.commands import run

    copy = tmp_path / "copy"
    shutil.copytree(runs["power-stability-short"][0], copy)
    series = copy / "power_short_405.csv"
    series.write_text("".join(series.read_text().splitlines(keepends=True)[:23]))
    assert run(["analyze", str(copy)]) == 0
    assert "WARNING: changed since the run recorded them (checksum differs from run.json): power_short_405.csv" in capsys.readouterr().out
    assert json.loads((copy / "results.json").read_text())["files_changed_since_run"] == ["power_short_405.csv"]
    assert "Files changed since the run recorded them" in (copy / "report.html").read_text()
    series.unlink()
    assert run(["analyze", str(copy)]) == 2
    assert "files listed in run.json are missing: power_short_405.csv" in capsys.readouterr().err
    (copy / "run.json").write_text("{ not json")
    assert run(["analyze", str(copy)]) == 2
    assert "run.json: cannot read the run record" in capsys.readouterr().err
