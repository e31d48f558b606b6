"""Sub-pixel translation between two images: the peak of their cross-correlation (FFT), refined by
fitting a parabola to the logarithm of the peak and its neighbours (exact for a Gaussian peak, as
spots and beads give)."""

from __future__ import annotations

import numpy as np


def shift_px(reference: np.ndarray, moved: np.ndarray) -> tuple[float, float]:
    """(dx, dy) in pixels such that ``moved(x, y) ~ reference(x - dx, y - dy)``."""
    a = reference.astype(np.float64) - reference.mean()
    b = moved.astype(np.float64) - moved.mean()
    corr = np.fft.irfft2(np.fft.rfft2(b) * np.conj(np.fft.rfft2(a)), s=a.shape)
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    h, w = corr.shape

    def refine(c_m: float, c_0: float, c_p: float) -> float:
        if min(c_m, c_0, c_p) <= 0:
            return 0.0
        c_m, c_0, c_p = np.log(c_m), np.log(c_0), np.log(c_p)
        denom = c_m - 2 * c_0 + c_p
        return 0.5 * (c_m - c_p) / denom if denom != 0 else 0.0

    dy = iy + refine(corr[(iy - 1) % h, ix], corr[iy, ix], corr[(iy + 1) % h, ix])
    dx = ix + refine(corr[iy, (ix - 1) % w], corr[iy, ix], corr[iy, (ix + 1) % w])
    return (float(dx - w if dx > w / 2 else dx), float(dy - h if dy > h / 2 else dy))
