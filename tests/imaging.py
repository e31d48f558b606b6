"""Test helper: sub-pixel translation between two images by phase correlation (independent of the
harness's own analysis code)."""

from __future__ import annotations

import numpy as np


def shift_px(reference: np.ndarray, moved: np.ndarray) -> tuple[float, float]:
    """(dx, dy) such that ``moved(x, y) ~ reference(x - dx, y - dy)``."""
    a = reference.astype(np.float64) - reference.mean()
    b = moved.astype(np.float64) - moved.mean()
    cross = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
    cross /= np.abs(cross) + 1e-12
    corr = np.fft.ifft2(cross).real
    iy, ix = np.unravel_index(np.argmax(corr), corr.shape)
    h, w = corr.shape

    def refine(c_m: float, c_0: float, c_p: float) -> float:
        denom = c_m - 2 * c_0 + c_p
        return 0.5 * (c_m - c_p) / denom if denom != 0 else 0.0

    dy = iy + refine(corr[(iy - 1) % h, ix], corr[iy, ix], corr[(iy + 1) % h, ix])
    dx = ix + refine(corr[iy, (ix - 1) % w], corr[iy, ix], corr[iy, (ix + 1) % w])
    if dy > h / 2:
        dy -= h
    if dx > w / 2:
        dx -= w
    return float(dx), float(dy)


def illumination_peak(params: object, width: int, height: int) -> tuple[float, float]:
    """Where the simulator's illumination profile (``simulators.sample.illumination_profile``:
    Gaussian x vignetting) peaks, in sensor px (pixel centres at k + 0.5): found by maximising the
    simulator's own function at single points (Nelder-Mead), independent of the harness's fit."""
    import math

    from scipy import optimize

    from simulators.sample import FieldOfView, illumination_profile

    def value(p: np.ndarray) -> float:
        fov = FieldOfView(x0_um=0.0, y0_um=0.0, pixel_um=1.0, width=1, height=1, sensor_col0=float(p[0]), sensor_row0=float(p[1]),
                          sensor_step=(1, 1), sensor_width=width, sensor_height=height)
        return -float(illumination_profile(params, fov)[0, 0])  # type: ignore[arg-type]

    start = np.array([width / 2 + params.centre_offset_x_frac * width, height / 2 + params.centre_offset_y_frac * height])  # type: ignore[attr-defined]
    found = optimize.minimize(value, start, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-12})
    assert found.success and math.isfinite(found.fun)
    return float(found.x[0]), float(found.x[1])
