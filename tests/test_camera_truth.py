"""The simulated sensor's fixed patterns and defects, recovered from rendered frames and compared with
the ground-truth accessors of ``CameraModel`` (what an EMVA 1288 analysis is checked against):
- DSNU: the spatial SD of the mean of many dark frames, less the temporal noise left in that mean;
- PRNU: the dark-subtracted mean flat divided by its (known, smooth) illumination;
- dead pixels do not respond, noisy pixels have their extra temporal variance;
- the mean signal near saturation follows the response function (soft non-linearity);
- the exact per-code laws of the background still give every pixel the chain's law;
- the patterns come from their own stream (seed, camera name): the frame stream is untouched.
Tolerances are stated per test; each is several standard errors of the estimate it bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from simulators.camera import CameraModel, Exposure
from simulators.clock import VirtualClock
from simulators.params import CameraParams
from simulators.sample import FieldOfView

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

SIZE = 256
K = CameraParams().conversion_gain_e_per_adu  # e- per DN at gain index 0


def camera(rate: list[float], seed: int = 5, profile: bool = False, right_half: float = 1.0,
           rng_seed: int | None = None, **params: object) -> CameraModel:
    """A SIZE x SIZE camera (CameraParams defaults unless ``params``) looking at an even scene of
    ``rate[0]`` photo-electrons per second per unbinned pixel (``profile``: a smooth Gaussian falloff
    to 60 % in the corners; ``right_half``: that factor in the right half)."""
    p = CameraParams(width_px=SIZE, height_px=SIZE, **params)  # type: ignore[arg-type]

    def scene(t: float, fov: FieldOfView) -> tuple[np.ndarray, float]:
        bins = fov.sensor_step[0] * fov.sensor_step[1]
        pattern = np.full((fov.height, fov.width), bins, np.float32)
        if profile:
            y, x = np.mgrid[0 : fov.height, 0 : fov.width]
            r2 = ((x - fov.width / 2) ** 2 + (y - fov.height / 2) ** 2) / (fov.width / 2) ** 2
            pattern *= np.exp(-0.25 * r2).astype(np.float32)
        pattern[:, fov.width // 2 :] *= np.float32(right_half)
        return pattern, rate[0] / p.quantum_efficiency

    rng = np.random.default_rng(seed if rng_seed is None else rng_seed)
    return CameraModel("cam", p, VirtualClock(), rng, scene, lambda t: (0.0, 0.0), 0.25, seed=seed)


def full(exposure_s: float = 1.0, binning: int = 1, **kw: int) -> Exposure:
    return Exposure(exposure_s, (0, 0, SIZE - 1, SIZE - 1), binning, binning, **kw)


def stack(cam: CameraModel, e: Exposure, n: int, t0: float = 0.0) -> np.ndarray:
    return np.array([cam.render(t0 + k, e) for k in range(n)], dtype=np.float64)


def defect_mask(cam: CameraModel, e: Exposure) -> np.ndarray:
    mask = np.zeros(e.shape(), bool)
    for rc in cam.defect_pixels(e).values():
        mask[rc[:, 0], rc[:, 1]] = True
    return mask


def test_dsnu_is_the_spatial_sd_of_the_mean_dark_frame() -> None:
    """64 dark frames: the mean frame less the black level and dark signal is the DSNU pattern plus
    temporal noise / sqrt(64); the pattern's SD comes back within 2 % (its standard error here ~0.5 %),
    and the pixel-by-pixel residual is that temporal noise (within 5 %)."""
    cam = camera([0.0])
    e = full(0.05)
    frames = stack(cam, e, 64)
    clean = ~defect_mask(cam, e)
    mean = frames.mean(axis=0)
    temporal_var = frames.var(axis=0, ddof=1).mean()  # per frame, DN^2
    truth = cam.dsnu_dn(e)
    level = 100 + CameraParams().dark_current_e_per_s * 0.05 / K
    measured = math.sqrt(mean[clean].var() - temporal_var / 64)
    assert measured == pytest.approx(truth[clean].std(), rel=0.02)
    assert truth[clean].std() == pytest.approx(math.sqrt(1.2**2 + 1 / 12), rel=0.03)  # the parameter (plus rounding)
    residual = mean - level - truth
    assert residual[clean].std() == pytest.approx(math.sqrt(temporal_var / 64), rel=0.05)
    assert abs(residual[clean].mean()) < 0.01


def test_prnu_is_the_dark_subtracted_flat_over_its_illumination() -> None:
    """32 flats of ~5000 e- under a smooth profile and 32 darks: (flat - dark) * K / illumination is the
    PRNU multiplier plus noise; its SD less the noise gives back the pattern's SD within 3 %, the
    residual against the accessor is the noise (within 5 %), and the pattern's SD is the parameter's
    (0.7 %, within 3 %)."""
    rate = [5000.0]
    cam = camera(rate, profile=True)
    e = full(1.0)
    flats = stack(cam, e, 32)
    illumination = cam.expected_electrons(0.0, e)  # e- per pixel before PRNU: the smooth profile
    rate[0] = 0.0
    darks = stack(cam, e, 32, t0=100.0)
    clean = ~defect_mask(cam, e)
    ratio = (flats.mean(axis=0) - darks.mean(axis=0)) * K / illumination
    noise_var = (flats.var(axis=0, ddof=1) / 32 + darks.var(axis=0, ddof=1) / 32) * (K / illumination) ** 2
    truth = cam.prnu_multiplier(e)
    measured = math.sqrt(ratio[clean].var() - noise_var[clean].mean())
    assert measured == pytest.approx(truth[clean].std(), rel=0.03)
    assert truth[clean].std() == pytest.approx(0.007, rel=0.03)
    assert ratio[clean].mean() == pytest.approx(truth[clean].mean(), abs=2e-4)
    residual = ratio - truth
    assert residual[clean].std() == pytest.approx(math.sqrt(noise_var[clean].mean()), rel=0.05)


def test_dead_pixels_do_not_respond_and_noisy_pixels_have_their_extra_variance() -> None:
    """30 dead and 30 noisy pixels: a dead pixel's flat reads its dark level (within 4 temporal SDs of the
    mean of 16 frames); the mean temporal variance of the noisy pixels in 64 dark frames is
    (read noise^2 + extra^2) / K^2 + 1/12 within 10 % (standard error ~3 %), as ``read_noise_map_e``
    says."""
    rate = [4000.0]
    cam = camera(rate, dead_pixels=30, noisy_pixels=30, noisy_pixel_read_noise_e=20.0)
    e = full(0.5)
    defects = cam.defect_pixels(e)
    dead, noisy = defects["dead"], defects["noisy"]
    assert len(dead) == 30 and len(noisy) == 30
    assert cam.prnu_multiplier(e)[dead[:, 0], dead[:, 1]].max() == 0.0
    flats = stack(cam, e, 16)
    rate[0] = 0.0
    darks = stack(cam, e, 64, t0=50.0)
    response = flats.mean(axis=0) - darks.mean(axis=0)
    var = darks.var(axis=0, ddof=1)
    bound = 4 * np.sqrt(var / 16 + var / 64)  # 4 SDs of the difference of the two means
    assert np.all(np.abs(response[dead[:, 0], dead[:, 1]]) < bound[dead[:, 0], dead[:, 1]])
    assert np.median(response) * K == pytest.approx(4000.0 * 0.5, rel=0.01)  # the others respond
    expected = (4.0**2 + 20.0**2) / K**2 + 1 / 12
    assert var[noisy[:, 0], noisy[:, 1]].mean() == pytest.approx(expected, rel=0.10)
    read_map = cam.read_noise_map_e(e)
    assert read_map[noisy[:, 0], noisy[:, 1]] == pytest.approx(math.sqrt(4.0**2 + 20.0**2))
    plain = ~defect_mask(cam, e)
    assert var[plain].mean() == pytest.approx(4.0**2 / K**2 + 1 / 12 + 0.5 / K**2, rel=0.02)


@pytest.mark.parametrize("fraction", [0.9, 0.75])
def test_mean_signal_near_saturation_follows_the_response_function(fraction: float) -> None:
    """Levels from half the full well to 1.4 times it (16-bit: no clip at 4095): the mean of 4 frames,
    in electrons, is ``expected_response_electrons`` of the level within 2 e- (standard error ~0.3 e-);
    linear below the knee, compressed above it, never above the full well."""
    rate = [0.0]
    cam = camera(rate, prnu_pct=0.0, dark_current_e_per_s=0.0, hot_pixels=0, dead_pixels=0, noisy_pixels=0,
                 bit_depth=16, linear_fraction_of_full_well=fraction)
    e = full(1.0)
    dsnu = cam.dsnu_dn(e)
    full_well = CameraParams().full_well_e
    for level in (0.5, 0.8, 0.9, 0.95, 1.0, 1.1, 1.4):
        rate[0] = level * full_well
        frames = stack(cam, e, 4)
        measured = float((frames - 100 - dsnu).mean()) * K
        expected = cam.expected_response_electrons(rate[0])
        assert measured == pytest.approx(expected, abs=2.0), level
        if level <= fraction - 0.05:
            assert expected == pytest.approx(rate[0], rel=1e-6)
        assert expected < full_well
    assert cam.response_electrons(1.4 * full_well) < full_well
    knee = fraction * full_well
    assert float(cam.response_electrons(knee + 1.0)) == pytest.approx(knee + 1.0, abs=1e-3)  # slope 1 at the knee
    assert float(cam.response_electrons(1.1 * full_well)) < 1.1 * full_well - 0.02 * full_well


@pytest.mark.parametrize("mean_e", [6.0, 24.0])
def test_background_laws_with_patterns_are_the_chains_law(mean_e: float) -> None:
    """PRNU and DSNU on: the left half (the scene's background) is drawn from one exact law per PRNU
    code, the right half (a hair brighter) electron by electron through the chain. After the DSNU is
    taken off, pixels of one PRNU multiplier have the same ADU histogram in both halves (chi-square),
    and the mean the law gives."""
    cam = camera([mean_e], right_half=1.0001, prnu_pct=3.0, hot_pixels=0, dead_pixels=0, noisy_pixels=0,
                 dark_current_e_per_s=0.0)
    e = full(1.0)
    gain = cam.prnu_multiplier(e)
    dsnu = cam.dsnu_dn(e)
    frames = stack(cam, e, 6) - dsnu
    values, counts = np.unique(gain, return_counts=True)
    for g in values[np.argsort(counts)[-2:]]:  # the two most common multipliers
        pick = gain == g
        left = frames[:, pick & (np.arange(SIZE) < SIZE // 2)].ravel().astype(int)
        right = frames[:, pick & (np.arange(SIZE) >= SIZE // 2)].ravel().astype(int)
        low = min(left.min(), right.min())
        size = max(left.max(), right.max()) - low + 1
        table = np.array([np.bincount(left - low, minlength=size), np.bincount(right - low, minlength=size)])
        table = table[:, table.min(axis=0) >= 20]
        assert stats.chi2_contingency(table).pvalue > 1e-3
        assert left.mean() == pytest.approx(100 + mean_e * g / K, abs=0.08)  # standard error ~0.02
        assert left.mean() == pytest.approx(right.mean(), abs=0.1)  # standard error ~0.03


def test_patterns_come_from_their_own_stream_and_are_seeded() -> None:
    """The DSNU is added after rounding and draws nothing from the frame stream: a camera that differs
    only by it gives the same frames plus the pattern. Hot pixels (frame stream) do not move with
    the patterns; the patterns depend on the seed and the camera's name only (not on its serial)."""
    base = dict(prnu_pct=0.0, dead_pixels=0, noisy_pixels=0)
    a = camera([8.0], **base)  # type: ignore[arg-type]
    b = camera([8.0], **{**base, "dsnu_adu": 0.0})  # type: ignore[arg-type]
    e = full(0.5)
    for k in range(3):
        fa, fb = a.render(float(k), e).astype(int), b.render(float(k), e).astype(int)
        assert np.array_equal(fa - fb, a.dsnu_dn(e).astype(int))
    assert np.array_equal(a.hot_rows, camera([0.0]).hot_rows)
    c, d = camera([0.0]), camera([0.0], rng_seed=99)  # same world seed, another frame stream
    assert np.array_equal(c.dsnu_dn(e), d.dsnu_dn(e)) and np.array_equal(c.prnu_multiplier(e), d.prnu_multiplier(e))
    assert np.array_equal(c.defect_pixels()["dead"], d.defect_pixels()["dead"])
    implicit = CameraModel("cam", CameraParams(width_px=SIZE, height_px=SIZE), VirtualClock(), np.random.default_rng(5),
                           lambda t, fov: (np.zeros((fov.height, fov.width), np.float32), 0.0), lambda t: (0.0, 0.0), 0.25)
    assert np.array_equal(implicit.dsnu_dn(e), c.dsnu_dn(e))  # no seed given: the entropy of the frame stream's seed
    assert np.array_equal(c.dsnu_dn(e), camera([0.0], serial="SIM00002").dsnu_dn(e))
    other = CameraModel("cam2", CameraParams(width_px=SIZE, height_px=SIZE), VirtualClock(), np.random.default_rng(5),
                        lambda t, fov: (np.zeros((fov.height, fov.width), np.float32), 0.0), lambda t: (0.0, 0.0), 0.25)
    assert not np.array_equal(c.dsnu_dn(e), other.dsnu_dn(e))
    assert not np.array_equal(c.dsnu_dn(e), camera([0.0], seed=6).dsnu_dn(e))


def test_binning_and_roi_combine_the_sensor_patterns_as_documented() -> None:
    """Binned: DSNU summed over the bin, PRNU multiplier averaged (a dead pixel counts 0), read noise
    variances summed; an ROI: the sensor's patterns cut out. The mean of 32 binned dark frames gives
    back the binned DSNU (residual = temporal noise / sqrt(32), within 8 %)."""
    cam = camera([0.0], dead_pixels=20, noisy_pixels=20)
    e1, e2 = full(0.05), full(0.05, binning=2)

    def blocks(a: np.ndarray) -> np.ndarray:
        return a.reshape(SIZE // 2, 2, SIZE // 2, 2).sum(axis=(1, 3))

    assert np.array_equal(cam.dsnu_dn(e2), blocks(cam.dsnu_dn(e1)))
    assert cam.prnu_multiplier(e2) == pytest.approx(blocks(cam.prnu_multiplier(e1)) / 4, abs=1e-6)
    assert cam.read_noise_map_e(e2) ** 2 == pytest.approx(blocks(cam.read_noise_map_e(e1) ** 2))
    sensor = cam.defect_pixels()
    binned = cam.defect_pixels(e2)
    for kind in ("dead", "noisy", "hot"):
        assert np.array_equal(binned[kind], np.unique(sensor[kind] // 2, axis=0))
    roi = Exposure(0.05, (10, 20, 137, 211))
    assert np.array_equal(cam.dsnu_dn(roi), cam.dsnu_dn(e1)[20:212, 10:138])
    assert np.array_equal(cam.prnu_multiplier(roi), cam.prnu_multiplier(e1)[20:212, 10:138])
    frames = stack(cam, e2, 32)
    clean = ~defect_mask(cam, e2)
    residual = frames.mean(axis=0) - 100 - 4 * 0.05 / K - cam.dsnu_dn(e2)
    temporal = frames.var(axis=0, ddof=1)[clean].mean()
    assert residual[clean].std() == pytest.approx(math.sqrt(temporal / 32), rel=0.08)


def test_camera_parameters_are_validated() -> None:
    for bad in ({"dsnu_adu": -1.0}, {"prnu_pct": 20.0}, {"linear_fraction_of_full_well": 0.0},
                {"linear_fraction_of_full_well": 1.2}, {"dead_pixels": -1}, {"noisy_pixel_read_noise_e": -3.0}):
        with pytest.raises(ValueError):
            CameraParams(**bad)
    with pytest.raises(ValueError, match="half of the sensor"):
        CameraParams(width_px=10, height_px=10, dead_pixels=40, noisy_pixels=20)
