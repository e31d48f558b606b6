"""Synthetic bead z-stacks for the PSF and co-registration tests, written with numpy only (no harness
code): Gaussian beads with known FWHMs and centres, each pixel the mean of the Gaussian over its
width (a camera pixel integrates the image), each plane a point sample in z, Poisson photon noise
and Gaussian read noise, rounded to uint16."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def render(shape: tuple[int, int, int], pixel_um: float, z_um: Sequence[float], beads: Sequence[tuple[float, float, float, float]],
           fwhm_xy_um: float, fwhm_z_um: float, peak: float = 2000.0, background: float = 100.0, read_noise: float = 2.0,
           seed: int | None = 0, clip: float = 65535.0) -> np.ndarray:
    """A ZYX uint16 stack; ``beads``: (x_um, y_um, z_um, brightness factor), x and y measured from the
    centre of the first pixel; ``peak`` is the continuous Gaussian's peak (ADU) of a bead of factor 1;
    ``seed`` None: no noise."""
    nz, ny, nx = shape
    s = fwhm_xy_um / FWHM_PER_SIGMA
    sz = fwhm_z_um / FWHM_PER_SIGMA
    z = np.asarray(z_um, dtype=np.float64)
    image = np.full(shape, float(background))
    ex = (np.arange(nx + 1) - 0.5) * pixel_um
    ey = (np.arange(ny + 1) - 0.5) * pixel_um
    norm = math.sqrt(math.pi / 2) * s / pixel_um
    for x, y, zc, b in beads:
        gx = np.diff(special.erf((ex - x) / (math.sqrt(2) * s))) * norm
        gy = np.diff(special.erf((ey - y) / (math.sqrt(2) * s))) * norm
        gz = np.exp(-((z - zc) ** 2) / (2 * sz**2))
        image += peak * b * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    if seed is not None:
        rng = np.random.default_rng(seed)
        image = rng.poisson(image).astype(np.float64) + rng.normal(0.0, read_noise, shape)
    return np.clip(np.round(image), 0, clip).astype(np.uint16)


def grid_beads(n_side: int, spacing_um: float, margin_um: float, z_um: float, rng: np.random.Generator,
               jitter_um: float = 0.5, z_jitter_um: float = 0.2) -> list[tuple[float, float, float, float]]:
    """Beads on a jittered square grid (well isolated), brightness factor 1."""
    out = []
    for i in range(n_side):
        for j in range(n_side):
            out.append((margin_um + j * spacing_um + rng.uniform(-jitter_um, jitter_um),
                        margin_um + i * spacing_um + rng.uniform(-jitter_um, jitter_um),
                        z_um + rng.uniform(-z_jitter_um, z_jitter_um), 1.0))
    return out
