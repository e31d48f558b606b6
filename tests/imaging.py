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
