"""The specimen on the stage: a seeded bead field (stage tests) and an even fluorescent slide under
an off-centre illumination profile with vignetting (flat-field tests). Both give photon rates per
pixel for a camera field of view; both are deterministic for a given seed. The bead tiles are kept in a
bounded cache (they never change); the rates per field of view are cached by the world."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from .lru import Lru
from .params import BeadFieldParams, UniformSlideParams

_TILE_UM = 200.0


@dataclass(frozen=True)
class FieldOfView:
    """Pixel grid in sample coordinates: pixel (row i, column k) is centred at
    (x0_um + k * pixel_um, y0_um + i * pixel_um); ``sensor_*`` locate it on the full sensor."""

    x0_um: float
    y0_um: float
    pixel_um: float
    width: int
    height: int
    sensor_col0: float  # full-sensor column (unbinned px, centre-based) of column 0
    sensor_row0: float
    sensor_step: tuple[int, int]  # binning (x, y): unbinned px per output px
    sensor_width: int
    sensor_height: int


def sensor_grid(fov: FieldOfView) -> FieldOfView:
    """``fov`` without its place on the sample: all that the uniform slide's rate depends on."""
    return dataclasses.replace(fov, x0_um=0.0, y0_um=0.0, pixel_um=0.0)


def _tile(params: BeadFieldParams, seed: int, ix: int, iy: int) -> np.ndarray:
    """The beads (x_um, y_um, brightness) of one deterministic tile (read-only)."""
    rng = np.random.default_rng([seed, ix + 2**30, iy + 2**30])
    n = rng.poisson(params.density_per_mm2 * (_TILE_UM / 1000.0) ** 2)
    xy = rng.uniform(0.0, _TILE_UM, size=(n, 2)) + (ix * _TILE_UM, iy * _TILE_UM)
    b = np.clip(1.0 + params.brightness_spread * rng.standard_normal(n), 0.1, None)
    beads = np.column_stack([xy, b])
    beads.flags.writeable = False
    return beads


_TILES: Lru[np.ndarray] = Lru(64)


def beads_in(params: BeadFieldParams, seed: int, x_min: float, x_max: float, y_min: float, y_max: float) -> np.ndarray:
    """Beads (x_um, y_um, brightness) inside a rectangle, from deterministic tiles."""
    out = [
        _TILES.get((params, seed, ix, iy), functools.partial(_tile, params, seed, ix, iy))
        for ix in range(math.floor(x_min / _TILE_UM), math.floor(x_max / _TILE_UM) + 1)
        for iy in range(math.floor(y_min / _TILE_UM), math.floor(y_max / _TILE_UM) + 1)
    ]
    beads = np.concatenate(out) if out else np.zeros((0, 3))
    keep = (beads[:, 0] >= x_min) & (beads[:, 0] <= x_max) & (beads[:, 1] >= y_min) & (beads[:, 1] <= y_max)
    return beads[keep]


def bead_field_rate(params: BeadFieldParams, seed: int, fov: FieldOfView) -> np.ndarray:
    """Photon rate per pixel per mW of excitation for the bead field seen in ``fov``."""
    rate = np.full((fov.height, fov.width), params.background_photons_per_s_per_mw * (fov.sensor_step[0] * fov.sensor_step[1]))
    sigma_px = math.sqrt((params.psf_sigma_um / fov.pixel_um) ** 2 + 1.0 / 12.0)
    r = int(math.ceil(4 * sigma_px))
    margin = (r + 1) * fov.pixel_um
    beads = beads_in(
        params,
        seed,
        fov.x0_um - margin,
        fov.x0_um + fov.width * fov.pixel_um + margin,
        fov.y0_um - margin,
        fov.y0_um + fov.height * fov.pixel_um + margin,
    )
    if len(beads) == 0:
        return rate
    cx = (beads[:, 0] - fov.x0_um) / fov.pixel_um
    cy = (beads[:, 1] - fov.y0_um) / fov.pixel_um
    offsets = np.arange(-r, r + 1)
    cols = np.round(cx).astype(int)[:, None] + offsets[None, :]
    rows = np.round(cy).astype(int)[:, None] + offsets[None, :]
    gx = np.exp(-((cols - cx[:, None]) ** 2) / (2 * sigma_px**2))
    gy = np.exp(-((rows - cy[:, None]) ** 2) / (2 * sigma_px**2))
    amplitude = params.photons_per_s_per_mw * beads[:, 2] / (2 * math.pi * sigma_px**2)
    patches = amplitude[:, None, None] * gy[:, :, None] * gx[:, None, :]
    rr = np.broadcast_to(rows[:, :, None], patches.shape)
    cc = np.broadcast_to(cols[:, None, :], patches.shape)
    inside = (rr >= 0) & (rr < fov.height) & (cc >= 0) & (cc < fov.width)
    np.add.at(rate, (rr[inside], cc[inside]), patches[inside])
    return rate


def illumination_profile(params: UniformSlideParams, fov: FieldOfView) -> np.ndarray:
    """Relative illumination (peak of the Gaussian = 1) times vignetting, on the ``fov`` grid.

    Coordinates are full-sensor pixels with the sensor centre at (W/2, H/2) (pixel centres at
    k + 0.5); the Gaussian centre sits at (W/2 + cx W, H/2 + cy H)."""
    W, H = fov.sensor_width, fov.sensor_height
    bx, by = fov.sensor_step
    cols = fov.sensor_col0 + np.arange(fov.width) * bx
    rows = fov.sensor_row0 + np.arange(fov.height) * by
    half_diag = math.hypot(W, H) / 2
    sigma = params.sigma_frac * half_diag
    gx0, gy0 = W / 2 + params.centre_offset_x_frac * W, H / 2 + params.centre_offset_y_frac * H
    gauss = np.exp(-((rows[:, None] - gy0) ** 2 + (cols[None, :] - gx0) ** 2) / (2 * sigma**2))
    r2 = ((rows[:, None] - H / 2) ** 2 + (cols[None, :] - W / 2) ** 2) / half_diag**2
    return gauss * (1.0 - params.vignetting * r2)


def uniform_slide_rate(params: UniformSlideParams, fov: FieldOfView) -> np.ndarray:
    """Photon rate per pixel per mW of excitation for the even slide."""
    return params.photons_per_s_per_mw * (fov.sensor_step[0] * fov.sensor_step[1]) * illumination_profile(params, fov)
