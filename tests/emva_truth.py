"""Ground truth of a camera-characterization run on a simulated station: what each EMVA 1288 metric
is for the simulated camera, computed from the simulator's parameters and patterns (never from the
frames).

- K, dark noise, dark current (over the pixels that are not hot), DSNU, PRNU and the defect pixels come straight from the camera model's
  ground-truth accessors over the analysed region (``simulators.camera.CameraModel``).
- Saturation capacity and linearity error depend on how the light, the non-linear response, the read
  noise and the ADC clip combine at each level of the protocol; their truth is the EMVA 1288 formulas
  applied to the model's *expected* mean and temporal variance at each level (Gauss-Hermite over the
  shot noise, the exact moments of a normal clipped at the ADC's top for the read noise and the
  clip), over a fixed sample of the region's pixels. The formulas themselves are checked against the
  reference implementation elsewhere; this truth checks the measurement.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from harness.analysis import emva1288_metrics as em
from harness.records.series_writer import read_series
from simulators.camera import CameraModel, Exposure
from simulators.sample import sensor_grid, uniform_slide_rate

SAMPLE_PIXELS = 4000
WARM_UP_WAIT_S = 900.0  # the protocol's wait after emission on (the warm-up left then is 0.1 % on 488 nm)
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)  # probabilists' Hermite: weight exp(-x^2/2)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def region(camera: CameraModel, folder: Path) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive sensor corners of the frames (the protocol's centre ROI)."""
    import tifffile

    with tifffile.TiffFile(folder / "camera.ome.tif") as tif:
        h, w = tif.pages[0].shape  # type: ignore[union-attr]
    x0, y0 = (camera.p.width_px - w) // 2, (camera.p.height_px - h) // 2
    return x0, y0, x0 + w - 1, y0 + h - 1


def direct_truth(camera: CameraModel, roi: tuple[int, int, int, int], spatial_exposure_s: float) -> dict[str, Any]:
    """The metrics the model states directly, over the region (EMVA 1288: every pixel counts)."""
    e = Exposure(spatial_exposure_s, roi, black_level=int(camera.p.offset_adu))
    k = 1 / camera.conversion_gain_e_per_dn(0)
    shape = e.shape()
    dark_e = camera.dark_electrons(e, shape)
    dark_dn = camera.dsnu_dn(e) + k * dark_e  # the dark image's fixed part (offset aside), DN
    gain = camera.prnu_multiplier(e)
    return {
        "system_gain_adu_per_e": k,
        "temporal_dark_noise_e": float(np.sqrt(np.mean(camera.read_noise_map_e(e) ** 2))),
        "dark_current_e_per_s": float(np.delete(dark_e.reshape(-1), _flat(camera.defect_pixels(e)["hot"], shape)).mean() / spatial_exposure_s),
        "dsnu_adu": float(dark_dn.std(ddof=1)),
        "dsnu_e": float(dark_dn.std(ddof=1) / k),
        "prnu_pct": 100 * float(gain.std(ddof=1) / gain.mean()),
        "defects": {kind: {tuple(p) for p in rc.tolist()} for kind, rc in camera.defect_pixels(e).items()},
    }


def _flat(rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.unique(rc[:, 0] * shape[1] + rc[:, 1]) if len(rc) else np.zeros(0, dtype=int)


def _clipped_moments(mu: np.ndarray, sigma: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """E[min(X, top)] and E[min(X, top)^2] for X ~ N(mu, sigma^2)."""
    sigma = np.maximum(sigma, 1e-9)
    b = (top - mu) / sigma
    cdf, pdf = special.ndtr(b), np.exp(-b * b / 2) / math.sqrt(2 * math.pi)
    m1 = mu * cdf - sigma * pdf + top * (1 - cdf)
    m2 = (mu * mu + sigma * sigma) * cdf - sigma * (mu + top) * pdf + top * top * (1 - cdf)
    return m1, m2


def _level(camera: CameraModel, signal_e: np.ndarray, dark_e: np.ndarray, dsnu: np.ndarray, read: np.ndarray) -> tuple[float, float]:
    """Expected frame mean (ADU) and mean per-pixel temporal variance (ADU^2) of one level."""
    k = 1 / camera.conversion_gain_e_per_dn(0)
    top = float(2**camera.p.bit_depth - 1)
    mean_e = signal_e + dark_e
    x = mean_e[:, None] + np.sqrt(np.maximum(mean_e, 0))[:, None] * _NODES[None, :]  # shot noise (its Gaussian limit)
    collected = camera.response_electrons(np.maximum(x, 0))
    mu = collected * k + camera.p.offset_adu + dsnu[:, None]
    m1, m2 = _clipped_moments(mu, np.broadcast_to((read * k)[:, None], mu.shape), top)
    e1 = m1 @ _WEIGHTS
    e2 = m2 @ _WEIGHTS
    return float(e1.mean()), float((e2 - e1 * e1).mean() + 1 / 12)


def model_series(camera: CameraModel, world: Any, t0: float, folder: Path, laser: str) -> tuple[list[em.PairStats], list[em.PairStats]]:
    """The expected lit and dark pair statistics at the run's levels (its frame log's times and set
    points), from the light the laser's model emits then (noise-free), the slide's pattern, QE, PRNU,
    dark current, the response, read noise, DSNU and the ADC range."""
    roi = region(camera, folder)
    e = Exposure(1.0, roi, black_level=int(camera.p.offset_adu))
    rng = np.random.default_rng(0)
    pick = rng.choice(e.shape()[0] * e.shape()[1], size=SAMPLE_PIXELS, replace=False)
    fov = camera.field_of_view(0.0, e)
    rate = (uniform_slide_rate(world.params.uniform_slide, sensor_grid(fov)) * camera.p.quantum_efficiency).reshape(-1)[pick]
    rate = rate * camera.prnu_multiplier(e).reshape(-1)[pick]
    dsnu = camera.dsnu_dn(e).reshape(-1)[pick]
    read = camera.read_noise_map_e(e).reshape(-1)[pick]
    dark_rate = camera.dark_electrons(e, e.shape()).reshape(-1)[pick]  # per second (exposure 1 s)
    transmission = world.params.optics.transmission_to_sample.get(laser, 1.0)
    lp = world.lasers[laser].p
    rows = read_series(folder / "camera_frames.csv")
    first_lit = min(float(r["time_s"]) for r in rows if r["channel"] != "dark")
    t_on = t0 + first_lit - WARM_UP_WAIT_S  # emission on about the protocol's wait before the first lit frame

    def power_mw(t: float, setpoint_mw: float) -> float:
        """The laser's noise-free power at station time t (its model: steady state, warm-up, drift)."""
        warm = 1 - lp.warmup_deficit * math.exp(-(t - t_on) / lp.warmup_tau_s)
        return world.lasers[laser].steady_power_mw(setpoint_mw) * warm * (1 + lp.drift_pct_per_h / 100 * t / 3600)

    bright, dark = [], []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row["channel"], row["exposure_s"])
        if row["tag"] != "ptc" or key in seen:
            continue
        seen.add(key)
        t = float(row["exposure_s"])
        if row["channel"] == "dark":
            dark.append(em.PairStats(t, *_level(camera, 0 * rate, dark_rate * t, dsnu, read)))
        else:
            power = power_mw(t0 + float(row["time_s"]) + t / 2, float(row["setpoint_mW"])) * transmission
            bright.append(em.PairStats(t, *_level(camera, rate * power * t, dark_rate * t, dsnu, read)))
    return bright, dark
