"""The simulated sensor's photon statistics, straight from ``CameraModel.render``: photon transfer (mean
against variance of frame pairs) gives back the conversion gain and read noise of ``CameraParams``; low
signals are exactly Poisson; the full well, bit depth, binning and hot pixels act as specified; the
caches never change a frame."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import stats

from simulators import poisson, sample
from simulators.camera import CameraModel, Exposure
from simulators.clock import VirtualClock
from simulators.lru import Lru
from simulators.params import CameraParams, WorldParams
from simulators.sample import FieldOfView
from simulators.world import World

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

SIZE = 256
# a sensor without fixed patterns, defects or non-linearity: the chain these tests check
# (tests/test_camera_truth.py checks the patterns)
IDEAL: dict[str, object] = dict(dsnu_adu=0.0, prnu_pct=0.0, dead_pixels=0, noisy_pixels=0, linear_fraction_of_full_well=1.0)


def flat_camera(electrons_per_s: list[float], seed: int = 3, right_half: float = 1.0, **params: object) -> CameraModel:
    """A camera looking at an even scene; ``electrons_per_s[0]`` photo-electrons per second per
    unbinned pixel (change it between frames), ``right_half`` times that in the right half. The
    sensor is ``IDEAL`` unless ``params`` say otherwise."""
    p = CameraParams(width_px=SIZE, height_px=SIZE, **{**IDEAL, **params})  # type: ignore[arg-type]

    def scene(t: float, fov: FieldOfView) -> tuple[np.ndarray, float]:
        bins = fov.sensor_step[0] * fov.sensor_step[1]
        pattern = np.full((fov.height, fov.width), bins, np.float32)
        pattern[:, fov.width // 2 :] *= np.float32(right_half)
        return pattern, electrons_per_s[0] / p.quantum_efficiency

    return CameraModel("cam", p, VirtualClock(), np.random.default_rng(seed), scene, lambda t: (0.0, 0.0), 0.25)


def full(binning: int = 1) -> Exposure:
    return Exposure(1.0, (0, 0, SIZE - 1, SIZE - 1), binning, binning)


def pair(cam: CameraModel, e: Exposure) -> tuple[np.ndarray, np.ndarray]:
    return cam.render(0.0, e).astype(np.float64), cam.render(2.0, e).astype(np.float64)


def test_photon_transfer_gives_back_gain_read_noise_and_offset() -> None:
    """Levels from the exact-Poisson regime (< 30 e-) to 60 % of the full well; variance of the
    difference of two frames / 2 against the mean: slope 1/K, intercept (read noise / K)^2 + 1/12
    (rounding to integer ADU), and read noise from the dark pair. Tolerances: gain 1.5 %, read noise
    3 %, offset 0.1 ADU."""
    truth = CameraParams()
    rate = [0.0]
    cam = flat_camera(rate, hot_pixels=0, dark_current_e_per_s=0.0)
    dark_a, dark_b = pair(cam, full())
    offset = (dark_a.mean() + dark_b.mean()) / 2
    read_noise_adu = np.sqrt(np.var(dark_a - dark_b) / 2 - 1 / 12)
    means, variances = [], []
    for level in (4.0, 12.0, 25.0, 60.0, 300.0, 1500.0, 4000.0, 6600.0):
        rate[0] = level
        a, b = pair(cam, full())
        means.append((a.mean() + b.mean()) / 2 - offset)
        variances.append(np.var(a - b) / 2)
    # weighted by 1 / standard error of each variance (proportional to the variance itself)
    slope, intercept = np.polyfit(means, variances, 1, w=1 / np.array(variances))
    assert 1 / slope == pytest.approx(truth.conversion_gain_e_per_adu, rel=0.015)
    assert np.sqrt(intercept - 1 / 12) * truth.conversion_gain_e_per_adu == pytest.approx(truth.read_noise_e, rel=0.03)
    assert read_noise_adu * truth.conversion_gain_e_per_adu == pytest.approx(truth.read_noise_e, rel=0.03)
    assert offset == pytest.approx(truth.offset_adu, abs=0.1)
    # the mean signal is linear in the light: K e- per ADU at every level
    levels = np.array([4.0, 12.0, 25.0, 60.0, 300.0, 1500.0, 4000.0, 6600.0])
    assert np.array(means) * truth.conversion_gain_e_per_adu == pytest.approx(levels, rel=0.01, abs=0.1)


@pytest.mark.parametrize("mean_e", [0.05, 3.0, 17.5])
def test_low_signals_are_exactly_poisson(mean_e: float) -> None:
    """No read noise and ~93 ADU per electron: every electron count is its own ADU level, so the
    histogram of counts must follow the Poisson law (chi-square), also in its tail."""
    cam = flat_camera([mean_e], read_noise_e=0.0, hot_pixels=0, dark_current_e_per_s=0.0, bit_depth=16)
    adu_per_e = cam.adu_per_electron(480)
    e = Exposure(1.0, (0, 0, SIZE - 1, SIZE - 1), gain_index=480, black_level=0)
    counts = np.concatenate([np.rint(cam.render(float(k), e).ravel() / adu_per_e) for k in range(6)]).astype(int)
    observed = np.bincount(counts)
    expected = stats.poisson.pmf(np.arange(observed.size), mean_e) * counts.size
    keep = expected > 10
    tail = counts.size - expected[keep].sum()
    chi2 = stats.chisquare(np.append(observed[keep], counts.size - observed[keep].sum()), np.append(expected[keep], tail))
    assert chi2.pvalue > 1e-3
    assert counts.mean() == pytest.approx(mean_e, rel=0.01, abs=0.002)
    assert counts.var() == pytest.approx(mean_e, rel=0.02, abs=0.002)


@pytest.mark.parametrize("mean_e", [0.0, 6.0, 24.0])
def test_pixels_sharing_the_background_follow_the_same_law_as_the_others(mean_e: float) -> None:
    """Pixels at the frame's smallest mean get their ADU from one exact table of the whole chain
    (Poisson, full well, read noise, gain, rounding); the others are drawn electron by electron. Left
    half at ``mean_e``, right half a hair above it: the two ADU histograms are the same law."""
    cam = flat_camera([mean_e or 1e-9], right_half=1.0001, hot_pixels=0, dark_current_e_per_s=0.0)
    frames = [cam.render(float(k), full()) for k in range(4)]
    left = np.concatenate([f[:, : SIZE // 2].ravel() for f in frames]).astype(int)
    right = np.concatenate([f[:, SIZE // 2 :].ravel() for f in frames]).astype(int)
    low = min(left.min(), right.min())
    size = max(left.max(), right.max()) - low + 1
    table = np.array([np.bincount(left - low, minlength=size), np.bincount(right - low, minlength=size)])
    table = table[:, table.min(axis=0) >= 20]
    assert stats.chi2_contingency(table).pvalue > 1e-3
    assert left.mean() == pytest.approx(right.mean(), abs=0.02)
    assert left.var() == pytest.approx(right.var(), rel=0.02)
    assert left.mean() == pytest.approx(100 + mean_e / 2.7, abs=0.02)


def test_full_well_clips_before_read_noise_and_bit_depth_clips_last() -> None:
    cam = flat_camera([20000.0], hot_pixels=0, dark_current_e_per_s=0.0, full_well_e=8000.0)
    a, b = pair(cam, full())
    # electrons stop at the full well; read noise is added after it
    assert a.mean() == pytest.approx(8000.0 / 2.7 + 100, abs=0.05)
    assert np.sqrt(np.var(a - b) / 2 - 1 / 12) * 2.7 == pytest.approx(4.0, rel=0.03)
    cam = flat_camera([20000.0], hot_pixels=0, dark_current_e_per_s=0.0)  # full well 11000 e- = 4174 ADU > 4095
    assert np.all(cam.render(0.0, full()) == 4095)


def test_binning_sums_signal_dark_current_and_read_noise_variance() -> None:
    rate = [0.0]
    cam = flat_camera(rate, hot_pixels=0, dark_current_e_per_s=50.0)
    a, b = pair(cam, full(2))
    assert a.shape == (SIZE // 2, SIZE // 2)
    assert (a.mean() - 100) * 2.7 == pytest.approx(4 * 50.0, rel=0.01)  # 4 pixels of dark current
    # variance: shot noise of 200 e- plus read noise 4 e- in each of 4 pixels, in ADU^2, plus rounding
    assert np.var(a - b) / 2 == pytest.approx((200 + 4 * 16) / 2.7**2 + 1 / 12, rel=0.04)
    rate[0] = 2000.0
    bright, _ = pair(cam, full(2))
    assert (bright.mean() - 100) * 2.7 == pytest.approx(4 * 2050.0, rel=0.005)


def test_hot_pixels_sit_where_the_sensor_has_them_in_every_roi_and_binning() -> None:
    cam = flat_camera([0.0], hot_pixels=5, hot_pixel_dark_e_per_s=2000.0, dark_current_e_per_s=0.0)
    frame = cam.render(0.0, full())
    hot = frame > 100 + 10 * 4.0 / 2.7
    expected = np.zeros_like(hot)
    expected[cam.hot_rows, cam.hot_cols] = True
    assert np.array_equal(hot, expected)
    assert frame[hot].mean() == pytest.approx(100 + 2000.0 / 2.7, rel=0.02)
    binned = cam.render(0.0, full(2))
    expected = np.zeros_like(binned, dtype=bool)
    expected[cam.hot_rows // 2, cam.hot_cols // 2] = True
    assert np.array_equal(binned > 100 + 10 * 8.0 / 2.7, expected)
    roi = Exposure(1.0, (10, 20, 137, 211))
    frame = cam.render(0.0, roi)
    inside = (cam.hot_cols >= 10) & (cam.hot_cols <= 137) & (cam.hot_rows >= 20) & (cam.hot_rows <= 211)
    expected = np.zeros_like(frame, dtype=bool)
    expected[cam.hot_rows[inside] - 20, cam.hot_cols[inside] - 10] = True
    assert np.array_equal(frame > 100 + 10 * 4.0 / 2.7, expected)


@pytest.mark.parametrize("specimen", ["bead_field", "uniform_slide"])
def test_caches_do_not_change_frames(specimen: str) -> None:
    """The same seed gives the same frames whether the patterns, hot-pixel maps and Poisson tables
    come from the caches or are computed afresh for every frame."""
    params = WorldParams(
        seed=11, sample=specimen, cameras={"Camera": CameraParams(width_px=320, height_px=240, dead_pixels=40, noisy_pixels=40)},
        lasers={"L": {"wavelength_nm": 488, "nominal_power_mw": 100, "rin_rms": 0.01}},
    )
    exposures = [Exposure(0.2, (0, 0, 319, 239)), Exposure(0.2, (40, 30, 199, 129), 2, 2), Exposure(0.05, (0, 0, 319, 239))]

    def frames(fresh: bool) -> list[np.ndarray]:
        world = World(params)
        world.lasers["L"].set_setpoint_mw(2.0)
        world.lasers["L"].set_emission(True)
        cam = world.cameras["Camera"]
        out = []
        for k in range(12):
            if fresh:
                world._patterns.clear()
                cam._hot.clear()
                cam._laws.clear()
                cam._transfer.clear()
                cam.patterns._grids.clear()
                poisson._TABLES.clear()
                sample._TILES.clear()
            out.append(cam.render(float(k), exposures[k % 3]))
        return out

    cached, fresh = frames(False), frames(True)
    assert all(np.array_equal(a, b) for a, b in zip(cached, fresh))
    assert not np.array_equal(cached[0], cached[6])  # fresh noise in every frame


def test_caches_are_bounded_and_drop_the_least_recently_used() -> None:
    cache: Lru[int] = Lru(2)
    made: list[str] = []

    def make(key: str) -> int:
        made.append(key)
        return len(made)

    for key in ("a", "b", "a", "c", "a", "b"):
        cache.get(key, functools.partial(make, key))
    assert made == ["a", "b", "c", "b"]  # "b" was dropped for "c", "a" (used just before) was kept
    assert len(cache) == 2
    world = World(WorldParams(cameras={"Camera": CameraParams(width_px=64, height_px=48)}))
    cam = world.cameras["Camera"]
    cam.stage_position = lambda t: (10.0 * t, 0.0)  # a new field of view every frame
    for k in range(10):
        cam.render(float(k), Exposure(0.01, (0, 0, 63, 47)))
    assert len(world._patterns) == world._patterns.size == 4


@pytest.mark.parametrize("rows", [1, 3, 32, 40])
def test_multi_law_draws_follow_each_law(rows: int) -> None:
    """``poisson.MultiLaw`` (one guide table per law; up to 32 laws in a 16-bit index, more with a wide
    one): the outcomes of each law follow its Poisson probabilities (chi-square), the offset is added."""
    rng = np.random.default_rng(7)
    means = np.linspace(0.5, 25.0, rows)
    pmf = poisson.poisson_pmf_rows(means)
    law = poisson.MultiLaw(pmf, offset=100.0)
    which = rng.integers(0, rows, 400_000).astype(np.int16)
    out = law.draw(rng, which, poisson.MultiLaw.base(which, rows) if rows % 2 else None)
    assert out.dtype == np.float32 and np.all(out == np.rint(out)) and out.min() >= 100
    for row in {0, rows // 2, rows - 1}:
        counts = np.bincount((out[which == row] - 100).astype(int), minlength=pmf.shape[1])
        expected = pmf[row] * counts.sum()
        keep = expected > 10
        observed = np.append(counts[keep], counts.sum() - counts[keep].sum())
        assert stats.chisquare(observed, np.append(expected[keep], counts.sum() - expected[keep].sum())).pvalue > 1e-3
