"""The fixed (frame-to-frame constant) truth of a simulated sensor: its offset pattern (DSNU), its
photo-response pattern (PRNU), its defect pixels and its response near the full well.

Contract (what ``simulators.camera`` and tests rely on):
- ``SensorPatterns(params, name, seed)`` draws everything once, lazily, from its own random stream:
  ``SeedSequence(seed, spawn_key=(crc32("sensor-patterns"), crc32(name)))`` (``name``: the camera's
  device label). It never touches a frame's random stream, so the hot pixels and the frame noise of a
  seed do not depend on these parameters, and the same camera (label) in the same world (seed) always
  has the same patterns, whatever its serial, the other devices or the order of frames.
- Sensor pixel (row r, col c):
  - DSNU: an integer offset ``dsnu[r, c]`` in DN = ``rint(N(0, dsnu_adu))``, added to the pixel's
    rounded ADU value before the bit depth's clip (gain-independent, like a CMOS offset pattern). Its
    rms is about ``sqrt(dsnu_adu**2 + 1/12)`` for ``dsnu_adu`` above ~0.5 (the rounding);
  - PRNU: a multiplier ``1 + p[r, c]`` of the signal (photo-)electrons, ``p`` drawn from
    ``N(0, prnu_pct / 100)`` and quantised to ``PRNU_LEVELS`` evenly spaced levels between its
    smallest and largest value. The quantised pattern is the truth (nothing else is ever used); the
    levels let pixels of one level share one exact law (``simulators.camera``);
  - dead pixels: multiplier 0 (dark current and read noise remain); noisy pixels: extra temporal
    read noise ``noisy_pixel_read_noise_e`` (rms, e-, added in quadrature); hot pixels: extra dark
    current (their positions are drawn by the camera from its frame stream, as before these patterns).
    Dead and noisy pixels are distinct pixels (drawn without replacement; they may coincide with a hot one).
- Binning (an output pixel = a ``biny x binx`` block of sensor pixels, charge summed): the multiplier of
  an output pixel is the mean of its sensor pixels' multipliers (a dead pixel counts 0); its DSNU is
  the sum of theirs (independent offsets add, like the read noise variances); its read noise
  variance is ``bins * read_noise_e**2`` plus the extra variance of each noisy pixel in it.
- ``response_electrons(e, full_well_e, linear_fraction)``: the noise-free response applied to the
  collected electrons (before read noise): identity up to the knee ``k = linear_fraction * full_well``,
  above it ``k + (full - k) * tanh((e - k) / (full - k))`` (smooth, slope 1 at the knee, tending to
  the full well); ``linear_fraction = 1`` is the hard clip at the full well.
Raises nothing beyond numpy's errors for impossible shapes (parameters are validated by ``CameraParams``).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .lru import Lru
from .params import CameraParams

PRNU_LEVELS = 32  # levels of the quantised PRNU pattern (the truth itself, not an approximation of one)
PLAIN_NONE = -1  # code of an output pixel that holds a dead, noisy or hot sensor pixel


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def response_electrons(electrons: np.ndarray | float, full_well_e: float, linear_fraction: float) -> np.ndarray:
    """Electrons out for electrons collected (noise-free), float64; see the module docstring."""
    e = np.asarray(electrons, dtype=np.float64)
    knee = linear_fraction * full_well_e
    span = full_well_e - knee
    if span <= 0:
        out: np.ndarray = np.minimum(e, full_well_e)
        return out
    return np.where(e > knee, knee + span * np.tanh((e - knee) / span), e)


def compress_above_knee(electrons: np.ndarray, full_well_e: float, linear_fraction: float) -> None:
    """``response_electrons`` in place on a float32 array (only the pixels above the knee are touched)."""
    knee = linear_fraction * full_well_e
    span = full_well_e - knee
    if span <= 0:
        np.minimum(electrons, np.float32(full_well_e), out=electrons)
        return
    if not electrons.size or float(electrons.max()) <= knee:
        return
    above = electrons > knee
    x = (electrons[above].astype(np.float64) - knee) / span
    electrons[above] = (knee + span * np.tanh(x)).astype(np.float32)


@dataclass(frozen=True)
class Grid:
    """The patterns seen through one ROI and binning, per output pixel (arrays read-only).

    ``gain``: signal multiplier (float32) or None when it is 1 everywhere; ``dsnu``: offset in DN
    (float32, integers) or None when 0 everywhere; ``code``: for an output pixel without a defect, the
    sum of its sensor pixels' PRNU level indices (0 .. bins * (PRNU_LEVELS - 1)), else ``PLAIN_NONE``
    (int16, flat); ``code_gain``: the multiplier of each code (float32; ``gain`` holds exactly these
    values) and ``code_count`` the number of output pixels with each code; ``noisy``: flat indices
    of output pixels with noisy sensor pixels and ``noisy_var_e2`` their extra read noise variance
    (e-^2)."""

    gain: np.ndarray | None
    dsnu: np.ndarray | None
    code: np.ndarray
    code_gain: np.ndarray
    code_count: np.ndarray
    noisy: np.ndarray
    noisy_var_e2: np.ndarray


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class SensorPatterns:
    """The fixed patterns of one camera's sensor (see the module docstring)."""

    def __init__(self, params: CameraParams, name: str, seed: int, hot_rows: np.ndarray, hot_cols: np.ndarray) -> None:
        self.p = params
        self.seed_sequence = np.random.SeedSequence(
            seed, spawn_key=(_crc("sensor-patterns"), _crc(name))
        )
        self.hot_rows, self.hot_cols = hot_rows, hot_cols
        self._grids: Lru[Grid] = Lru(4)

    # --- the sensor's patterns (drawn once, on first use) -----------------------------------------
    @functools.cached_property
    def _drawn(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(dsnu int16 or None, PRNU level index uint8, level multipliers float64, dead flat indices,
        noisy flat indices); the order of the draws is fixed."""
        p = self.p
        rng = np.random.default_rng(self.seed_sequence)
        shape = (p.height_px, p.width_px)
        dsnu = None
        if p.dsnu_adu > 0:
            dsnu = np.rint(rng.normal(0.0, p.dsnu_adu, shape)).astype(np.int16)
        levels: np.ndarray = np.ones(1)
        index = np.zeros(shape, np.uint8)
        if p.prnu_pct > 0:
            raw = rng.normal(0.0, p.prnu_pct / 100.0, shape)
            low, high = float(raw.min()), float(raw.max())
            step = (high - low) / (PRNU_LEVELS - 1) if high > low else 1.0
            index = np.rint((raw - low) / step).astype(np.uint8)
            levels = 1.0 + low + step * np.arange(PRNU_LEVELS)
        chosen = rng.choice(p.width_px * p.height_px, p.dead_pixels + p.noisy_pixels, replace=False)
        dead, noisy = np.sort(chosen[: p.dead_pixels]), np.sort(chosen[p.dead_pixels :])
        return (
            None if dsnu is None else _frozen(dsnu),
            _frozen(index),
            _frozen(levels),
            _frozen(dead),
            _frozen(noisy),
        )

    def sensor_dsnu_dn(self) -> np.ndarray:
        """DSNU of every sensor pixel, DN (int16, read-only)."""
        dsnu = self._drawn[0]
        return dsnu if dsnu is not None else _frozen(np.zeros((self.p.height_px, self.p.width_px), np.int16))

    def sensor_prnu_multiplier(self) -> np.ndarray:
        """Signal multiplier of every sensor pixel (float64; 0 at dead pixels)."""
        _, index, levels, dead, _ = self._drawn
        gain: np.ndarray = levels[index]
        gain.reshape(-1)[dead] = 0.0
        return gain

    def defects(self) -> dict[str, np.ndarray]:
        """Sensor (row, col) of the defect pixels by kind ("hot", "dead", "noisy"): int arrays (n, 2);
        hot pixels as drawn (a position may repeat), dead and noisy ones sorted and distinct."""
        _, _, _, dead, noisy = self._drawn
        w = self.p.width_px
        return {
            "hot": np.column_stack([self.hot_rows, self.hot_cols]).astype(np.int64),
            "dead": np.column_stack([dead // w, dead % w]).astype(np.int64),
            "noisy": np.column_stack([noisy // w, noisy % w]).astype(np.int64),
        }

    # --- the patterns through an ROI and binning --------------------------------------------------
    def grid(self, roi: tuple[int, int, int, int], binx: int, biny: int, shape: tuple[int, int]) -> Grid:
        return self._grids.get((roi, binx, biny, shape), lambda: self._make_grid(roi, binx, biny, shape))

    def _blocks(self, a: np.ndarray, roi: tuple[int, int, int, int], binx: int, biny: int, shape: tuple[int, int]) -> np.ndarray:
        """Sum of ``a`` (a sensor-sized array) over each output pixel's block, float64."""
        x0, y0 = roi[0], roi[1]
        h, w = shape
        part = a[y0 : y0 + h * biny, x0 : x0 + w * binx].astype(np.float64)
        summed: np.ndarray = part.reshape(h, biny, w, binx).sum(axis=(1, 3))
        return summed

    def _output_index(self, flat: np.ndarray, roi: tuple[int, int, int, int], binx: int, biny: int,
                      shape: tuple[int, int]) -> np.ndarray:
        """Flat output indices of the sensor pixels (flat indices ``flat``) inside the ROI (repeats kept)."""
        rows, cols = flat // self.p.width_px, flat % self.p.width_px
        r, c = (rows - roi[1]) // biny, (cols - roi[0]) // binx
        ok = (rows >= roi[1]) & (cols >= roi[0]) & (r < shape[0]) & (c < shape[1])
        index: np.ndarray = r[ok] * shape[1] + c[ok]
        return index

    def _make_grid(self, roi: tuple[int, int, int, int], binx: int, biny: int, shape: tuple[int, int]) -> Grid:
        p = self.p
        dsnu_sensor, index, levels, dead, noisy = self._drawn
        bins = binx * biny
        n_out = shape[0] * shape[1]
        dsnu = None if dsnu_sensor is None else self._blocks(dsnu_sensor, roi, binx, biny, shape).astype(np.float32)
        code = self._blocks(index, roi, binx, biny, shape).astype(np.int16).reshape(-1)
        step = float(levels[1] - levels[0]) if len(levels) > 1 else 0.0
        code_gain = (float(levels[0]) + step * np.arange(bins * (len(levels) - 1) + 1) / bins).astype(np.float32)
        gain = None
        if len(levels) > 1 or dead.size:
            gain = code_gain[code].reshape(shape)
        dead_out = self._output_index(dead, roi, binx, biny, shape)
        if dead_out.size and gain is not None:
            sensor_gain = self.sensor_prnu_multiplier()
            block = self._blocks(sensor_gain, roi, binx, biny, shape).reshape(-1)
            gain.reshape(-1)[dead_out] = (block[dead_out] / bins).astype(np.float32)
        noisy_out = self._output_index(noisy, roi, binx, biny, shape)
        hot_flat = self.hot_rows * p.width_px + self.hot_cols
        hot_out = self._output_index(hot_flat, roi, binx, biny, shape)
        code[np.concatenate([dead_out, noisy_out, hot_out]).astype(np.intp)] = PLAIN_NONE
        extra = np.bincount(noisy_out, minlength=n_out)[np.unique(noisy_out)] * p.noisy_pixel_read_noise_e**2
        return Grid(
            gain=None if gain is None else _frozen(gain),
            dsnu=None if dsnu is None else _frozen(dsnu),
            code=_frozen(code),
            code_gain=_frozen(code_gain),
            code_count=_frozen(np.bincount(code[code >= 0], minlength=code_gain.size)),
            noisy=_frozen(np.unique(noisy_out).astype(np.intp)),
            noisy_var_e2=_frozen(extra.astype(np.float64)),
        )


def gauss_hermite_mean(f: Callable[[np.ndarray], np.ndarray], mean: float, sd: float, points: int = 40) -> float:
    """E[f(X)] for X ~ N(mean, sd^2) by Gauss-Hermite quadrature (``f`` vectorised over numpy arrays)."""
    x, w = np.polynomial.hermite_e.hermegauss(points)
    values = f(mean + sd * x)
    return float(np.dot(w, values) / math.sqrt(2 * math.pi))
