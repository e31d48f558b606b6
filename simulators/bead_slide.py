"""The bead slide: sub-resolution multi-colour beads (every bead emits under every line) in one plane,
at seeded positions, imaged through the widefield PSF of ``simulators.psf_model``.

Beads come from deterministic 200 um tiles (as ``simulators.sample``'s bead field, an independent
stream): Poisson count ``density_per_mm2``, uniform positions, brightness ``1 + spread * N(0, 1)``
(clipped at 0.1). A fraction ``aggregate_fraction`` of them are clumps of 2-4 touching beads (centres
one diameter apart, random in-plane directions): extra rows with the clump's id and size.

``line_rate`` gives the photon rate per pixel per mW of excitation for one line at one defocus:
background + sum over beads of brightness x ``photons_per_s_per_mw`` x (bead image integrated over the
pixel). Pixel integration: the bead image's radial profile is sampled at the centres of a sub-pixel
grid (step h <= pixel, h <= in-focus PSF FWHM / 12), summed into its integral image (cumulative sums,
i.e. the midpoint rule), and the integral over each pixel of each bead is the difference of the
integral image bilinearly interpolated at the pixel's corners relative to the bead's exact position (no
position rounding). Only beads within the field plus the image's patch radius are drawn; light beyond
the patch radius (the holding 99.5 % of the tabulated power, see ``psf_model``) is dropped. Wide
(defocused) images use a coarser sub-pixel grid (at most ``MAX_KERNEL`` steps a side); images wider than
``FFT_FROM_PX`` pixels in radius (far from focus, smooth on the pixel scale) are placed by splitting each
bead bilinearly over its 4 nearest pixel centres and one FFT convolution with the pixel-integrated image
(a blur of under a pixel); an image wider than ``MAX_PATCH_PX`` pixels in radius is replaced by the
slide's even haze (density x photons per um^2): the sum of many such beads.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .lru import Lru
from .params import BeadSlideParams
from .psf_model import BeadImageModel, RadialProfile
from .sample import FieldOfView

_TILE_UM = 200.0
_STREAM = 14  # keeps the slide's beads independent of the bead field's for the same seed

FFT_FROM_PX = 128  # a bead image wider than this radius (pixels) is placed by bilinear splitting and an FFT
MAX_PATCH_PX = 600  # a bead image wider than this radius (pixels) is rendered as the slide's even haze
MAX_KERNEL = 2048  # the kernel grid's side at most (coarser sub-sampling for wide, smooth, defocused images)

# columns of a bead table
X, Y, BRIGHTNESS, CLUMP_ID, CLUMP_SIZE = range(5)


def _tile(params: BeadSlideParams, seed: int, ix: int, iy: int) -> np.ndarray:
    """The beads (x_um, y_um, brightness, clump id, clump size) of one deterministic tile (read-only).
    A clump id is unique over the slide (tile-based); a single bead is a clump of size 1."""
    rng = np.random.default_rng([seed, _STREAM, ix + 2**30, iy + 2**30])
    n = rng.poisson(params.density_per_mm2 * (_TILE_UM / 1000.0) ** 2)
    xy = rng.uniform(0.0, _TILE_UM, size=(n, 2)) + (ix * _TILE_UM, iy * _TILE_UM)
    b = np.clip(1.0 + params.brightness_spread * rng.standard_normal(n), 0.1, None)
    ids = ((ix + 2**15) * 2**16 + (iy + 2**15)) * 2**20 + np.arange(n, dtype=np.float64)
    rows = [np.column_stack([xy, b, ids, np.ones(n)])]
    if params.aggregate_fraction > 0 and n:
        clumped = np.flatnonzero(rng.random(n) < params.aggregate_fraction)
        sizes = rng.integers(2, 5, clumped.size)
        d = params.bead_diameter_nm / 1000.0
        for k, size in zip(clumped, sizes):
            rows[0][k, CLUMP_SIZE] = size
            pos = [xy[k]]
            for _ in range(size - 1):  # each new bead touches a random earlier one
                angle = rng.uniform(0, 2 * math.pi)
                base = pos[int(rng.integers(0, len(pos)))]
                pos.append(base + d * np.array([math.cos(angle), math.sin(angle)]))
            extra = np.array(pos[1:])
            bright = np.clip(1.0 + params.brightness_spread * rng.standard_normal(size - 1), 0.1, None)
            rows.append(np.column_stack([extra, bright, np.full(size - 1, ids[k]), np.full(size - 1, size)]))
    beads = np.concatenate(rows)
    beads.flags.writeable = False
    return beads


_TILES: Lru[np.ndarray] = Lru(64)


def beads_in(params: BeadSlideParams, seed: int, x_min: float, x_max: float, y_min: float, y_max: float) -> np.ndarray:
    """Beads (x_um, y_um, brightness, clump id, clump size) with centres inside a rectangle."""
    what = (params.density_per_mm2, params.brightness_spread, params.aggregate_fraction, params.bead_diameter_nm, seed)
    out = [
        _TILES.get((what, ix, iy), functools.partial(_tile, params, seed, ix, iy))
        for ix in range(math.floor(x_min / _TILE_UM), math.floor(x_max / _TILE_UM) + 1)
        for iy in range(math.floor(y_min / _TILE_UM), math.floor(y_max / _TILE_UM) + 1)
    ]
    beads = np.concatenate(out) if out else np.zeros((0, 5))
    keep = (beads[:, X] >= x_min) & (beads[:, X] <= x_max) & (beads[:, Y] >= y_min) & (beads[:, Y] <= y_max)
    return beads[keep]


def haze_photons_per_s_per_mw_um2(params: BeadSlideParams) -> float:
    """The slide's light per um^2 when every bead is far out of focus: density x beads per object (a
    clump has 3 on average) x photons per bead (mean brightness taken as 1: the clip at 0.1 changes it
    by < 1e-3 for spreads up to 0.3)."""
    beads_per_object = 1.0 + 2.0 * params.aggregate_fraction
    return params.density_per_mm2 * 1e-6 * beads_per_object * params.photons_per_s_per_mw


def subsampling(pixel_um: float, in_focus_fwhm_um: float) -> int:
    """Sub-samples per pixel and axis of the kernel grid: step <= in-focus FWHM / 12."""
    return max(1, int(math.ceil(pixel_um / (in_focus_fwhm_um / 12.0))))


def integral_image(profile: RadialProfile, pixel_um: float, sub: int, radius_px: int) -> tuple[np.ndarray, float, float]:
    """(F, start, step): F[i, j] = integral of the bead image over [start, start + j step] x
    [start, start + i step] (relative to the bead), fraction of photons, midpoint rule."""
    h = pixel_um / sub
    half = (radius_px + 1) * sub
    n = 2 * half
    start = -(radius_px + 1) * pixel_um
    c = (np.arange(half) + 0.5) * h  # the positive half; the kernel is symmetric about both axes
    quadrant = profile.at(np.sqrt(c[:, None] ** 2 + c[None, :] ** 2)) * (h * h)
    k = np.empty((n, n))
    k[half:, half:] = quadrant
    k[half:, :half] = quadrant[:, ::-1]
    k[:half] = k[half:][::-1]
    f = np.zeros((n + 1, n + 1))
    np.cumsum(np.cumsum(k, axis=0), axis=1, out=f[1:, 1:])
    return f, start, h


def line_rate(model: BeadImageModel, params: BeadSlideParams, seed: int, fov: FieldOfView, defocus_um: float,
              shift_xy_um: tuple[float, float], sub: int, beads: np.ndarray | None = None) -> np.ndarray:
    """Photons per second per pixel per mW of excitation, float64 (fov.height, fov.width), for one
    line whose beads are seen at ``defocus_um`` and shifted laterally by ``shift_xy_um``; ``beads``
    (rows as ``beads_in``'s) replaces the slide's own beads (tests: a lone bead)."""
    rate = np.full((fov.height, fov.width), params.background_photons_per_s_per_mw * (fov.sensor_step[0] * fov.sensor_step[1]))
    profile = model.profile(defocus_um)
    px = fov.pixel_um
    radius_px = int(math.ceil(profile.patch_um / px)) + 1
    if radius_px > MAX_PATCH_PX:  # so far from focus that every bead's light is spread over the field
        rate += haze_photons_per_s_per_mw_um2(params) * px * px
        return rate
    sub = max(1, min(sub, MAX_KERNEL // (2 * (radius_px + 1))))
    margin = (radius_px + 1) * px
    sx, sy = shift_xy_um
    if beads is None:
        beads = beads_in(params, seed, fov.x0_um - sx - margin, fov.x0_um - sx + fov.width * px + margin,
                         fov.y0_um - sy - margin, fov.y0_um - sy + fov.height * px + margin)
    if len(beads) == 0:
        return rate
    f, start, h = integral_image(profile, px, sub, radius_px)
    f = np.pad(f, ((0, 1), (0, 1)), mode="edge")  # beyond the kernel's grid: its total
    n_px = 2 * radius_px + 1
    # a patch's pixel edges fall every `sub` grid steps: its corners are strided views of f
    grid = _Strided(f, sub, sub * n_px + 1, start, h)
    xs, ys = beads[:, X] + sx, beads[:, Y] + sy
    if radius_px > FFT_FROM_PX:
        rate += _convolved(grid, params, fov, radius_px, xs, ys, beads[:, BRIGHTNESS])
        return rate
    for bx, by, b in zip(xs, ys, beads[:, BRIGHTNESS]):
        kc, kr = int(round((bx - fov.x0_um) / px)), int(round((by - fov.y0_um) / px))
        c0, r0 = kc - radius_px, kr - radius_px  # the patch: n_px x n_px pixels around the bead
        lo_c, hi_c = max(c0, 0), min(c0 + n_px, fov.width)
        lo_r, hi_r = max(r0, 0), min(r0 + n_px, fov.height)
        if lo_c >= hi_c or lo_r >= hi_r:
            continue
        pixels = grid.pixels(fov.x0_um + (c0 - 0.5) * px - bx, fov.y0_um + (r0 - 0.5) * px - by)
        rate[lo_r:hi_r, lo_c:hi_c] += (b * params.photons_per_s_per_mw) * pixels[lo_r - r0:hi_r - r0, lo_c - c0:hi_c - c0]
    return rate


class _Strided:
    """Pixel integrals of the bead image over a square patch from its integral image ``f``."""

    def __init__(self, f: np.ndarray, sub: int, span: int, start: float, h: float) -> None:
        self.f, self.sub, self.span, self.start, self.h = f, sub, span, start, h

    def pixels(self, x_um: float, y_um: float) -> np.ndarray:
        """The patch's pixel integrals, its first pixel's corner at (x_um, y_um) from the bead."""
        f, sub, span = self.f, self.sub, self.span
        ax = min(max((x_um - self.start) / self.h, 0.0), float(sub))
        ay = min(max((y_um - self.start) / self.h, 0.0), float(sub))
        ix, iy = int(ax), int(ay)
        fx, fy = ax - ix, ay - iy
        lower = f[iy:iy + span:sub, ix:ix + span:sub] * (1 - fx) + f[iy:iy + span:sub, ix + 1:ix + 1 + span:sub] * fx
        upper = f[iy + 1:iy + 1 + span:sub, ix:ix + span:sub] * (1 - fx) + f[iy + 1:iy + 1 + span:sub, ix + 1:ix + 1 + span:sub] * fx
        corners = lower * (1 - fy) + upper * fy
        out: np.ndarray = np.diff(np.diff(corners, axis=0), axis=1)
        return out


def _convolved(grid: _Strided, params: BeadSlideParams, fov: FieldOfView, radius_px: int,
               xs: np.ndarray, ys: np.ndarray, brightness: np.ndarray) -> np.ndarray:
    """Wide images: the beads' brightness split bilinearly over the 4 nearest pixel centres (of a
    canvas reaching radius_px beyond the field), convolved (FFT) with the image centred on a pixel."""
    px = fov.pixel_um
    kernel = grid.pixels(-(radius_px + 0.5) * px, -(radius_px + 0.5) * px)
    h, w = fov.height + 2 * radius_px, fov.width + 2 * radius_px
    cx = (xs - fov.x0_um) / px + radius_px
    cy = (ys - fov.y0_um) / px + radius_px
    ix, iy = np.floor(cx).astype(np.intp), np.floor(cy).astype(np.intp)
    fx, fy = cx - ix, cy - iy
    canvas = np.zeros((h + 1, w + 1))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            r, c = iy + dy, ix + dx
            ok = (r >= 0) & (r <= h) & (c >= 0) & (c <= w)
            np.add.at(canvas, (r[ok], c[ok]), (brightness * wy * wx)[ok])
    from scipy import signal  # 0.7 s to import: paid only when a wide (far out of focus) bead image is rendered

    image: np.ndarray = signal.fftconvolve(canvas[:h, :w], kernel, mode="valid")
    return image * params.photons_per_s_per_mw
