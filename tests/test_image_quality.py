"""Image statistics that say when they cannot be trusted (``harness.analysis.pixel_quality``): the
saturation level, saturated and defect pixels on synthetic frames with known defects; the fitted
centre of a field; then simulated flat-field and stage runs against the simulator's truth (hot pixel
positions, saturated values, illumination centre), old results.json names, and the report line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from harness.analysis.flat_field_metrics import fitted_centre, flat_field_metrics
from harness.analysis.frame_stats import frame_stats
from harness.analysis.pixel_quality import (
    DefectMap,
    SaturationLevel,
    apply_quality,
    assess,
    dark_defects,
    fill_excluded,
    gaussian_blur,
    masked_blur,
    quality_metrics,
    response_defects,
    saturated_mask,
    saturation_level,
    spike_defects,
)
from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station
from tests.conftest import ROOT, station_variant
from tests.imaging import illumination_peak

RNG_SEED = 13
LEVEL = SaturationLevel(4095.0, "test")


def _positions(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask))}


# --- unit tests on synthetic frames -----------------------------------------------------------
@pytest.mark.fast
def test_saturation_level_from_significant_bits_else_the_stored_type() -> None:
    assert saturation_level(12, np.uint16) == SaturationLevel(4095.0, "OME Pixels SignificantBits = 12")
    level = saturation_level(None, np.uint16)
    assert level.adu == 65535 and "uint16" in level.source and "no SignificantBits" in level.source
    assert saturation_level(None, np.uint8).adu == 255
    assert math.isinf(saturation_level(None, np.float32).adu)


@pytest.mark.fast
def test_saturated_pixels_are_counted_while_frames_stream() -> None:
    rng = np.random.default_rng(RNG_SEED)
    frames = [rng.integers(3900, 4096, (40, 50)).astype(np.uint16) for _ in range(6)]
    stats = frame_stats(iter(frames), 4095, keep_variance=True)
    stack = np.stack(frames)
    assert stats.saturated is not None and stats.variance is not None
    assert np.array_equal(stats.saturated, (stack >= 4095).any(axis=0))
    assert np.array_equal(stats.saturated, saturated_mask(frames, LEVEL))
    assert stats.saturated_values == int((stack >= 4095).sum()) > 0
    assert np.allclose(stats.variance, stack.astype(float).var(axis=0, ddof=1))
    assert frame_stats(iter(frames)).saturated is None  # not asked: not counted


def _dark_frames(rng: np.random.Generator, n: int = 10, shape: tuple[int, int] = (256, 320)) -> tuple[list[np.ndarray], dict[str, set[tuple[int, int]]]]:
    """Dark frames with a fixed DSNU pattern (2 ADU), read noise 1.5 ADU, quantised; hot pixels from
    30 ADU to saturation above the pattern, and noisy pixels (SD 12 ADU, no offset)."""
    dsnu = 100 + rng.normal(0, 2.0, shape)
    hot = {(10, 10): 30.0, (100, 200): 80.0, (255, 319): 4000.0, (0, 5): 300.0}
    noisy = {(50, 60), (200, 30), (128, 128)}
    frames = []
    for _ in range(n):
        f = dsnu + rng.normal(0, 1.5, shape)
        for (r, c), excess in hot.items():
            f[r, c] += excess
        for r, c in noisy:
            f[r, c] += rng.normal(0, 12.0)
        frames.append(np.clip(np.rint(f), 0, 4095).astype(np.uint16))
    return frames, {"hot": set(hot), "noisy": noisy}


@pytest.mark.fast
def test_hot_and_noisy_pixels_of_dark_frames_are_found_and_nothing_else() -> None:
    """Robust statistics: a DSNU pattern and read noise give no false defect in 82 000 pixels; a hot
    pixel 30 ADU (15 SD of the pattern) above it is found, so is a saturated one; noisy pixels (8 x
    the read noise, no offset) are noisy, not hot."""
    frames, truth = _dark_frames(np.random.default_rng(RNG_SEED))
    stats = frame_stats(iter(frames), 4095, keep_variance=True)
    found = dark_defects(stats.mean, stats.count, stats.variance)
    assert _positions(found.masks["hot"]) == truth["hot"]
    assert _positions(found.masks["noisy"]) == truth["noisy"]
    assert found.counts() == {"hot": 4, "noisy": 3}
    # too few frames for noisy pixels: said, not guessed
    few = frame_stats(iter(frames[:3]), keep_variance=True)
    assert "noisy" not in dark_defects(few.mean, few.count, few.variance).masks
    assert "noisy pixels" in dark_defects(few.mean, few.count, few.variance).not_assessed[0]


@pytest.mark.fast
def test_dead_and_stuck_pixels_of_a_lit_image_are_found_under_prnu() -> None:
    rng = np.random.default_rng(RNG_SEED)
    y, x = np.mgrid[0:200, 0:300]
    field = 2000 * np.exp(-((x - 170) ** 2 + (y - 90) ** 2) / (2 * 150.0**2)) * rng.normal(1, 0.02, (200, 300))  # 2 % PRNU
    signal = field + rng.normal(0, 5, field.shape)
    dead = {(20, 30), (150, 250), (100, 100)}
    for r, c in dead:
        signal[r, c] = rng.normal(0, 5)  # no response (dark-subtracted: stuck at the dark level reads the same)
    signal[60, 60] *= 0.7  # a weak pixel, not dead
    found = response_defects(signal, noise_sd=5.0)
    assert _positions(found.masks["dead"]) == dead


@pytest.mark.fast
def test_hot_pixels_of_a_bead_field_are_spikes_beads_are_not() -> None:
    """Beads (Gaussian spots, sigma 1.4 px, up to 2000 ADU over a 100 ADU background) are never taken
    for hot pixels; one-pixel spikes of 40 to 1500 ADU are found."""
    rng = np.random.default_rng(RNG_SEED)
    y, x = np.mgrid[0:256, 0:256]
    img = np.full((256, 256), 100.0)
    for cx, cy, a in zip(rng.uniform(5, 251, 150), rng.uniform(5, 251, 150), rng.uniform(200, 2000, 150)):
        img += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.4**2))
    spikes = {(3, 250): 1500.0, (128, 7): 40.0, (200, 200): 400.0}
    frames = []
    for _ in range(8):
        f = img + rng.normal(0, 3.0, img.shape)
        for (r, c), v in spikes.items():
            f[r, c] += v
        frames.append(f)
    found = spike_defects(np.mean(frames, axis=0), len(frames))
    beads_hit = {p for p in spikes if img[p] > 150}
    assert _positions(found.masks["hot"]) == set(spikes) - beads_hit and len(beads_hit) == 0


@pytest.mark.fast
def test_masked_blur_leaves_excluded_pixels_out_and_fill_matches_it() -> None:
    """A pixel at half its value (a saturated hot pixel after dark subtraction) dips the plain
    Gaussian smoothing by ~2 % there; left out, the smoothed image is the clean one within 0.1 %."""
    rng = np.random.default_rng(RNG_SEED)
    y, x = np.mgrid[0:120, 0:160]
    clean = 1000 + 3 * x + 2 * y + 0.01 * (x - 80) ** 2
    bad = clean.copy()
    bad[60, 80] *= 0.5
    bad[0, 0] = 0.0
    mask = np.zeros(clean.shape, dtype=bool)
    mask[60, 80] = mask[0, 0] = True
    plain, masked, reference = gaussian_blur(bad), masked_blur(bad, mask), gaussian_blur(clean)
    assert plain[60, 80] / reference[60, 80] < 0.985  # the dip the mask removes
    assert np.max(np.abs(masked / reference - 1)) < 1e-3
    assert np.array_equal(masked_blur(bad, None), plain) and np.array_equal(masked_blur(bad, np.zeros_like(mask)), plain)
    filled = fill_excluded(bad, mask)
    assert np.allclose(filled[mask], masked[mask], rtol=1e-12) and np.array_equal(filled[~mask], bad[~mask])
    rng_image = rng.normal(100, 5, (50, 70))
    many = rng.random((50, 70)) < 0.3  # more than the local fill handles at once: the same numbers
    assert np.allclose(fill_excluded(rng_image, many)[many], masked_blur(rng_image, many)[many])


@pytest.mark.fast
def test_data_quality_verdict_rule() -> None:
    """Saturated defect pixels are excluded with the defects: pass. Saturated signal: at least warn,
    with the reason, whatever the metrics said (never fail, never lowered). Defects not looked for:
    defect_pixels not judged, with the reason."""
    shape = (100, 100)
    hot = np.zeros(shape, dtype=bool)
    hot[5, 5] = hot[50, 50] = True
    defects = DefectMap({"hot": hot}, ("test",))
    only_defects = assess(LEVEL, hot.copy(), 10, defects, "excluded", hot)
    assert only_defects.verdict == "pass" and only_defects.saturated == 2 and only_defects.clipped_signal == 0
    signal = hot.copy()
    signal[70:72, 70:75] = True
    clipped = assess(LEVEL, signal, 10, defects, "excluded", hot | signal)
    assert clipped.verdict == "warn" and clipped.clipped_signal == 10 and "10 pixels of the signal saturated" in clipped.reasons[0]
    for before, after in (("pass", "warn"), ("not judged", "warn"), ("warn", "warn"), ("fail", "fail")):
        result: dict[str, Any] = apply_quality({"verdict": before, "note": "x"}, clipped)
        assert result["verdict"] == after and result["note"].startswith("x; data quality: 10 pixels")
        assert result["data_quality"]["saturated_pixels"] == 12 and result["data_quality"]["saturation_adu"] == 4095
    assert apply_quality({"verdict": "not judged"}, only_defects)["verdict"] == "not judged"
    many = np.zeros(shape, dtype=bool)
    many[:20, :] = True  # 20 % excluded
    assert assess(LEVEL, np.zeros(shape, dtype=bool), 10, DefectMap({"dead": many}, ()), "excluded", many).verdict == "warn"
    metrics = quality_metrics(assess(LEVEL, np.zeros(shape, dtype=bool), 10, None, "none"))
    assert metrics["saturated_pixels"].value == 0 and math.isnan(metrics["defect_pixels"].value) and metrics["defect_pixels"].reason


@pytest.mark.fast
def test_fitted_centre_of_a_gaussian_field_and_of_a_field_without_a_peak() -> None:
    y, x = np.mgrid[0:300, 0:400] + 0.5
    field = np.exp(-((x - 251.3) ** 2 / (2 * 180.0**2) + (y - 97.6) ** 2 / (2 * 130.0**2)))
    assert fitted_centre(field) == pytest.approx((251.3, 97.6), abs=1e-6)
    m, _ = flat_field_metrics(field, blur=False)
    assert m["fitted_centre_offset_px"].value == pytest.approx(math.hypot(251.3 - 200, 97.6 - 150), abs=1e-6)
    assert m["fitted_centre_offset_px"].value > m["centroid_offset_px"].value  # the centroid of a broad field lags
    saddle = 10 + (x / 400) ** 2 - (y / 300) ** 2 + 0.0
    m, _ = flat_field_metrics(saddle, blur=False)
    assert math.isnan(m["fitted_centre_x_px"].value) and "no maximum" in m["fitted_centre_x_px"].reason


# --- simulated runs ---------------------------------------------------------------------------
# A brighter slide (2 x photons) with the illumination further off-centre and no vignetting (its
# peak is then the Gaussian's centre, centre_offset_*_frac): the hot pixels saturate in the bright
# channels (hot + signal > 4095), the signal itself does not.
BRIGHT = {"simulation": {"uniform_slide": {"photons_per_s_per_mw": 4.0e4, "centre_offset_x_frac": 0.2,
                                           "centre_offset_y_frac": -0.1, "vignetting": 0.0}}}
# 3.2 x photons: the signal itself saturates at the illumination peak in the 488 channel
CLIPPED = {"simulation": {"uniform_slide": {"photons_per_s_per_mw": 6.4e4}},
           "devices": {"Camera": {"simulation": {"serial": "SIMIQ02"}}}}


def _run(base: Path, extra: dict[str, Any], protocol: Path) -> tuple[Path, Any]:
    with Station.load(station_variant(base, extra, "station.yaml")) as station:
        outcome = Runner(station, protocol, runs_dir=base / "runs", quiet=True).run()
        assert outcome.status == "completed", outcome.reason
        assert station.sim is not None
        return outcome.folder, station.sim.world


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return _run(tmp_path_factory.mktemp("bright"), BRIGHT, ROOT / "protocols" / "flat-field.yaml")


def _channels(folder: Path) -> dict[str, np.ndarray]:
    from ome_types import from_xml

    with tifffile.TiffFile(folder / "flatfield.ome.tif") as tif:
        pixels = from_xml(tif.ome_metadata).images[0].pixels
        names = [c.name for c in pixels.channels]
        out: dict[str, list[np.ndarray]] = {}
        for td in pixels.tiff_data_blocks:
            out.setdefault(str(names[td.first_c]), []).append(tif.pages[td.ifd].asarray())
    return {name: np.stack(frames) for name, frames in out.items()}


def _results(folder: Path) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in json.loads((folder / "results.json").read_text())["results"]}


def test_flat_field_counts_saturated_pixels_and_finds_the_hot_ones(bright: tuple[Path, Any]) -> None:
    """Ground truth: the stack's own pixels at 4095 (read back independently) are the result's
    saturated_pixels, per channel; they are all simulated hot pixels here (hot + signal), so the data
    quality is pass; the hot pixels found in the dark frames include every simulated one."""
    folder, world = bright
    camera = world.cameras["Camera"]
    hot = set(zip(camera.hot_rows.tolist(), camera.hot_cols.tolist()))
    stacks, results = _channels(folder), _results(folder)
    counts = {}
    for name in ("405", "488", "561", "640"):
        at_max = np.asarray((stacks[name] >= 4095).any(axis=0) | (stacks["dark"] >= 4095).any(axis=0))
        r = results[f"{name} nm"]
        counts[name] = int(at_max.sum())
        assert r["metrics"]["saturated_pixels"]["value"] == counts[name] == r["data_quality"]["saturated_pixels"]
        assert _positions(at_max) <= hot
        assert r["data_quality"]["saturated_defect_pixels"] == counts[name] and r["data_quality"]["verdict"] == "pass"
        assert r["data_quality"]["saturation_adu"] == 4095 and "SignificantBits = 12" in r["data_quality"]["saturation_source"]
        assert r["data_quality"]["defect_pixels"]["hot"] >= len(hot)
    assert counts["488"] >= 4  # the test is not vacuous: hot pixels saturate (measured: 8 in 488, 5 in 640)
    dark = frame_stats(iter(stacks["dark"]), keep_variance=True)
    assert _positions(dark_defects(dark.mean, dark.count, dark.variance).masks["hot"]) >= hot


def test_flat_field_correction_image_has_no_dip_at_hot_pixels(bright: tuple[Path, Any]) -> None:
    """At each simulated hot pixel the correction image equals the simulator's illumination profile
    (normalised to mean 1) within 0.3 % (measured: 0.15 %); the plain smoothing of the same frames,
    as before defect pixels were excluded, dips by more than 0.5 % at a saturated one (measured up
    to 1.1 %): what the exclusion removes."""
    from simulators.camera import Exposure
    from simulators.sample import illumination_profile

    folder, world = bright
    camera = world.cameras["Camera"]
    p = camera.p
    truth = illumination_profile(world.params.uniform_slide, camera.field_of_view(0.0, Exposure(0.1, (0, 0, p.width_px - 1, p.height_px - 1))))
    truth = truth / truth.mean()
    rows, cols = camera.hot_rows, camera.hot_cols
    stacks, results = _channels(folder), _results(folder)
    dark = stacks["dark"].mean(axis=0)
    worst_before = 0.0
    for name in ("405", "488", "561", "640"):
        correction = tifffile.imread(folder / results[f"{name} nm"]["correction_image"])
        assert np.max(np.abs(correction[rows, cols] / truth[rows, cols] - 1)) < 0.003, name
        before = gaussian_blur(stacks[name].mean(axis=0) - dark)
        before /= before.mean()
        worst_before = max(worst_before, float(np.max(1 - before[rows, cols] / truth[rows, cols])))
    assert worst_before > 0.005


def test_fitted_centre_finds_the_simulated_illumination_centre(bright: tuple[Path, Any]) -> None:
    """Without vignetting the illumination peaks at the Gaussian's centre (W/2 + 0.2 W, H/2 - 0.1 H)
    = (1344, 432): the fitted centre is within 2 px of it (measured: 0.02 px) in every channel; the
    centroid is well short of it, and the names say which is which."""
    folder, world = bright
    params = world.params.uniform_slide
    w, h = world.cameras["Camera"].p.width_px, world.cameras["Camera"].p.height_px
    centre = (w / 2 + params.centre_offset_x_frac * w, h / 2 + params.centre_offset_y_frac * h)
    assert illumination_peak(params, w, h) == pytest.approx(centre, abs=0.01)
    for r in _results(folder).values():
        m = {k: v["value"] for k, v in r["metrics"].items()}
        assert math.hypot(m["fitted_centre_x_px"] - centre[0], m["fitted_centre_y_px"] - centre[1]) < 2.0, r["subject"]
        assert m["fitted_centre_offset_px"] == pytest.approx(math.hypot(centre[0] - w / 2, centre[1] - h / 2), abs=2.0)
        assert m["centroid_offset_px"] < 0.6 * m["fitted_centre_offset_px"]
        assert "centre_of_intensity_offset_px" not in m


def test_clipped_signal_makes_the_result_warn(tmp_path: Path) -> None:
    """Where the signal itself reaches 4095 (the illumination peak, 488 nm), the result is at least
    warn with the reason, and the report says it on the result's line."""
    folder, _ = _run(tmp_path, CLIPPED, ROOT / "protocols" / "flat-field.yaml")
    stacks, r = _channels(folder), _results(folder)["488 nm"]
    at_max = (stacks["488"] >= 4095).any(axis=0)
    dq = r["data_quality"]
    assert dq["saturated_pixels"] == int(at_max.sum()) > dq["saturated_defect_pixels"] + 100
    assert dq["verdict"] == "warn" and r["verdict"] in ("warn", "fail") and "of the signal saturated" in r["note"]
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "488 nm: data quality warn" in page and "of the signal saturated" in page


def test_old_results_with_old_metric_names_read_report_and_import(bright: tuple[Path, Any], tmp_path: Path) -> None:
    """A results.json written before the rename (centre_of_intensity_*, no data_quality) reads under
    the new names, reports and imports; its values are in the new metrics' trends."""
    from harness.analyses import registry
    from harness.records.run_record import RENAMED_METRICS, read_results, read_run
    from harness.report.report import render
    from harness.store.results_store import ResultsStore

    old = tmp_path / bright[0].name
    shutil.copytree(bright[0], old)
    data = json.loads((old / "results.json").read_text())
    new_to_old = {v: k for k, v in RENAMED_METRICS.items()}
    for r in data["results"]:
        r.pop("data_quality", None)
        r["metrics"] = {new_to_old.get(k, k): v for k, v in r["metrics"].items()
                        if not k.startswith("fitted_") and k not in ("saturated_pixels", "defect_pixels")}
    (old / "results.json").write_text(json.dumps(data))
    read = read_results(old).as_dict()
    assert all("centroid_offset_px" in r["metrics"] and "centre_of_intensity_offset_px" not in r["metrics"] for r in read["results"])
    page = render(old, read_run(old).as_dict(), read, registry.by_kind())
    assert "centroid_offset_px" in page and "data quality" not in page
    with ResultsStore(f"sqlite:///{tmp_path / 'qc.sqlite'}") as store:
        store.import_run(old)
        assert "centroid_offset_px" in store.names("metric") and "centre_of_intensity_offset_px" not in store.names("metric")
        [key] = [k for k in store.chart_keys("centroid_offset_px") if k.subject == "488 nm"]
        assert len(store.series(key.station, "centroid_offset_px", key.subject, key.protocol, key.kind)) == 1
