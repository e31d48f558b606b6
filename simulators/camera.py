"""(Over 400 lines: the chain of a pixel, its fast paths and the exact laws that stand in for it
must be read together; the fixed patterns live in ``simulators.sensor_patterns``.)

Ground-truth physics of a camera sensor: photons -> electrons -> ADU, with shot noise, read noise,
dark current, fixed patterns (DSNU, PRNU), defect pixels (hot, dead, noisy), gain, offset, a soft
non-linearity before the full well, binning, ROI, bit depth and saturation.

The chain of one output pixel (binned: ``bins = binx * biny`` sensor pixels, charge summed):
1. mean electrons ``m = signal * g + dark``: ``signal`` from the scene (photons x QE x exposure),
   ``g`` the PRNU multiplier (mean over the bin, 0 for a dead pixel: ``simulators.sensor_patterns``),
   ``dark = dark_current_e_per_s * exposure * bins`` (+ ``hot_pixel_dark_e_per_s * exposure`` once per
   output pixel holding a hot pixel);
2. shot noise: exactly Poisson below ``_EXACT_BELOW`` e-, above it the Gaussian limit of the Poisson
   law (same mean and variance);
3. the response ``R`` (``response_electrons``): linear up to ``linear_fraction_of_full_well`` of the
   full well (``full_well_e * bins``), then a tanh compression towards it (1: the hard clip);
4. Gaussian read noise, variance ``read_noise_e**2 * bins`` + ``noisy_pixel_read_noise_e**2`` per
   noisy sensor pixel in the bin;
5. ``rint(e * adu_per_electron + black_level)``, plus the DSNU (integer DN, summed over the bin), and
   the clip to the bit depth's range 0 .. 2**bit_depth - 1 last.
Fixed patterns come from their own random stream (seed, camera name), never from the frame
stream: with ``dsnu_adu = prnu_pct = dead_pixels = noisy_pixels = 0`` and
``linear_fraction_of_full_well = 1`` the camera is the one before these patterns existed.

Only the ROI is rendered, on the binned grid. What does not change between frames is cached (bounded
LRUs) by whoever owns it: the scene's photon pattern per field of view (the world), the hot pixels and
the patterns of an ROI and binning (here and ``simulators.sensor_patterns``), probability tables (here
and ``simulators.poisson``). Fast paths, each the same law as the chain:
- when no pixel of a frame is within ``_CLIP_SIGMAS`` standard deviations of the knee (the response is
  the identity), shot and read noise are one Gaussian draw of the summed variance;
- background pixels (those at the scene's smallest photon rate, or every pixel when there is no light)
  without a defect and below ``_EXACT_BELOW`` e- share a few means, one per PRNU code (the sum of the
  bin's PRNU level indices); when they are at least half the frame they draw their ADU value before
  the DSNU directly from the exact law of steps 2-5 for their mean (``_adu_laws``, one
  ``poisson.MultiLaw`` for all codes); the DSNU is added to the drawn value. The other pixels go through
  the chain.
Frames are reproducible for a seed (the order of the draws is fixed). The law of every pixel is the
chain's (tests/test_camera_statistics.py, tests/test_camera_truth.py).

Ground truth for tests (no randomness consumed): ``dsnu_dn``, ``prnu_multiplier``, ``defect_pixels``,
``read_noise_map_e``, ``response_electrons``, ``expected_response_electrons``,
``conversion_gain_e_per_dn``, ``dark_electrons``, ``expected_electrons``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from .clock import Clock
from .faults import FaultInjector
from .lru import Lru
from .params import CameraParams
from .poisson import MultiLaw, poisson_frame, poisson_pmf_rows
from .sample import FieldOfView
from .sensor_patterns import Grid, SensorPatterns, compress_above_knee, gauss_hermite_mean
from .sensor_patterns import response_electrons as _response

_EXACT_BELOW = 30.0
_CLIP_SIGMAS = 9.0  # P(z > 9) ~ 1e-19: a pixel whose mean lies further below the knee never reaches it
_LAW_CELLS = 250_000  # largest (counts x ADU levels) table worth computing for a frame's common laws
_LAW_MIN_PIXELS = 64  # a PRNU code with fewer background pixels than this goes through the chain

# scene(t, fov) -> (pattern, scale): expected photons per second per pixel arriving at the sensor are
# scale * pattern. The pattern (float32, read-only, shape (fov.height, fov.width)) may be shared between
# frames; the scale carries what changes with time (the light).
Scene = Callable[[float, FieldOfView], tuple[np.ndarray, float]]
# where the optical axis meets the sample at time t: (x_um, y_um)
StagePosition = Callable[[float], tuple[float, float]]


@dataclass
class Exposure:
    """Sensor settings for one frame. ROI corners are inclusive, in unbinned sensor pixels."""

    exposure_s: float
    roi: tuple[int, int, int, int]
    binx: int = 1
    biny: int = 1
    gain_index: int = 0
    black_level: int = 100

    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the output frame."""
        x0, y0, x1, y1 = self.roi
        return (y1 - y0 + 1) // self.biny, (x1 - x0 + 1) // self.binx


class CameraModel:
    """One simulated camera. ``seed`` (default: the entropy of ``rng``'s seed sequence, i.e. the world
    seed for a world's camera) and the camera's name (device label) fix its sensor patterns; ``rng`` is the
    frame stream (and the hot pixels' positions, drawn from it at construction as always)."""

    def __init__(
        self,
        name: str,
        params: CameraParams,
        clock: Clock,
        rng: np.random.Generator,
        scene: Scene,
        stage_position: StagePosition,
        sample_pixel_um: float,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.p = params
        self.clock = clock
        self.rng = rng
        self.scene = scene
        self.stage_position = stage_position
        self.sample_pixel_um = sample_pixel_um  # one unbinned pixel, in the sample plane
        self.faults = FaultInjector(params.faults, clock.now)
        n = params.hot_pixels
        self.hot_rows = rng.integers(0, params.height_px, n)
        self.hot_cols = rng.integers(0, params.width_px, n)
        if seed is None:
            entropy = rng.bit_generator.seed_seq.entropy  # type: ignore[attr-defined]
            seed = int(entropy) if isinstance(entropy, int) else int(np.asarray(entropy).ravel()[0])
        self.patterns = SensorPatterns(params, name, seed, self.hot_rows, self.hot_cols)
        self._hot: Lru[np.ndarray] = Lru(4)
        self._laws: Lru[MultiLaw | None] = Lru(4)
        self._transfer: Lru[tuple[int, np.ndarray] | None] = Lru(4)
        self._plans: Lru[tuple[np.ndarray, np.ndarray, np.ndarray]] = Lru(2)

    # --- ground truth ----------------------------------------------------------------------------
    def adu_per_electron(self, gain_index: int) -> float:
        return 10 ** (gain_index * self.p.gain_db_per_index / 20.0) / self.p.conversion_gain_e_per_adu

    def conversion_gain_e_per_dn(self, gain_index: int = 0) -> float:
        """System gain K in e- per DN (the same for every binning: charge is summed before conversion)."""
        return 1.0 / self.adu_per_electron(gain_index)

    def response_electrons(self, electrons: np.ndarray | float, bins: int = 1) -> np.ndarray:
        """Noise-free response (step 3): electrons collected -> electrons read out (float64)."""
        return _response(electrons, self.p.full_well_e * bins, self.p.linear_fraction_of_full_well)

    def expected_response_electrons(self, mean_e: float, bins: int = 1) -> float:
        """Mean electrons read out for a pixel of mean ``mean_e`` (shot noise through the response):
        E[R(X)], X Gaussian with mean and variance ``mean_e`` (the chain's law above ``_EXACT_BELOW``)."""
        if mean_e <= 0:
            return 0.0
        return gauss_hermite_mean(lambda x: self.response_electrons(x, bins), mean_e, math.sqrt(mean_e))

    def dsnu_dn(self, e: Exposure) -> np.ndarray:
        """DSNU per output pixel of ``e``'s ROI and binning, DN (float64, integers: the sum over the bin)."""
        dsnu = self._grid(e).dsnu
        return np.zeros(e.shape()) if dsnu is None else dsnu.astype(np.float64)

    def prnu_multiplier(self, e: Exposure) -> np.ndarray:
        """Signal multiplier per output pixel (float64: the mean over the bin; 0 for a dead pixel)."""
        gain = self._grid(e).gain
        return np.ones(e.shape()) if gain is None else gain.astype(np.float64)

    def read_noise_map_e(self, e: Exposure) -> np.ndarray:
        """Temporal read noise per output pixel, rms e- (noisy pixels included)."""
        g = self._grid(e)
        var = np.full(e.shape(), self.p.read_noise_e**2 * e.binx * e.biny)
        var.reshape(-1)[g.noisy] += g.noisy_var_e2
        rms: np.ndarray = np.sqrt(var)
        return rms

    def defect_pixels(self, e: Exposure | None = None) -> dict[str, np.ndarray]:
        """(row, col) of the defect pixels by kind ("hot", "dead", "noisy"), int arrays (n, 2): sensor
        pixels without ``e``; with it, the distinct output pixels of ``e``'s ROI and binning holding one."""
        sensor = self.patterns.defects()
        if e is None:
            return sensor
        x0, y0, _, _ = e.roi
        h, w = e.shape()
        out = {}
        for kind, rc in sensor.items():
            r, c = (rc[:, 0] - y0) // e.biny, (rc[:, 1] - x0) // e.binx
            ok = (rc[:, 0] >= y0) & (rc[:, 1] >= x0) & (r < h) & (c < w)
            out[kind] = np.unique(np.column_stack([r[ok], c[ok]]), axis=0).reshape(-1, 2)
        return out

    def field_of_view(self, t: float, e: Exposure) -> FieldOfView:
        x0, y0, _, _ = e.roi
        h, w = e.shape()
        sx, sy = self.stage_position(t)
        W, H = self.p.width_px, self.p.height_px
        col0 = x0 + e.binx / 2  # centre of the first binned pixel, in unbinned sensor pixels
        row0 = y0 + e.biny / 2
        px = self.sample_pixel_um
        return FieldOfView(
            x0_um=sx + (col0 - W / 2) * px,
            y0_um=sy + (row0 - H / 2) * px,
            pixel_um=px * e.binx,
            width=w,
            height=h,
            sensor_col0=col0,
            sensor_row0=row0,
            sensor_step=(e.binx, e.biny),
            sensor_width=W,
            sensor_height=H,
        )

    def expected_electrons(self, t: float, e: Exposure) -> np.ndarray:
        """Mean signal electrons per output pixel before PRNU (no dark current, no noise), float64."""
        pattern, scale = self.scene(t, self.field_of_view(t, e))
        return pattern.astype(np.float64) * (scale * e.exposure_s * self.p.quantum_efficiency)

    def _grid(self, e: Exposure) -> Grid:
        return self.patterns.grid(e.roi, e.binx, e.biny, e.shape())

    def _hot_pixels(self, e: Exposure, shape: tuple[int, int]) -> np.ndarray:
        """Flat indices (unique, read-only) of the output pixels that hold a hot sensor pixel."""

        def find() -> np.ndarray:
            x0, y0, _, _ = e.roi
            r = (self.hot_rows - y0) // e.biny
            c = (self.hot_cols - x0) // e.binx
            ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
            index = np.unique(r[ok] * shape[1] + c[ok])
            index.flags.writeable = False
            return index

        return self._hot.get((e.roi, e.binx, e.biny, shape), find)

    def dark_electrons(self, e: Exposure, shape: tuple[int, int]) -> np.ndarray:
        """Mean dark electrons per output pixel, float64 (a hot pixel counts once per output pixel)."""
        dark = np.full(shape, self.p.dark_current_e_per_s * e.exposure_s * e.binx * e.biny)
        dark.reshape(-1)[self._hot_pixels(e, shape)] += self.p.hot_pixel_dark_e_per_s * e.exposure_s
        return dark

    def mean_electrons(self, t: float, e: Exposure) -> np.ndarray:
        """Mean electrons per output pixel, signal x PRNU + dark, float32 (a new array)."""
        pattern, scale = self.scene(t, self.field_of_view(t, e))
        return self._mean(pattern, np.float32(scale * e.exposure_s * self.p.quantum_efficiency), e, self._grid(e))

    def _mean(self, pattern: np.ndarray, signal: np.float32, e: Exposure, grid: Grid,
              at: np.ndarray | None = None) -> np.ndarray:
        """Mean electrons (float32) of every pixel, or flat, of the pixels with the sorted flat indices
        ``at`` only (the same float32 steps either way)."""
        shape = pattern.shape
        if at is not None:
            pattern = pattern.reshape(-1)[at]
        mean = np.multiply(pattern, signal, dtype=np.float32)
        if grid.gain is not None:
            mean *= grid.gain if at is None else grid.gain.reshape(-1)[at]
        mean += np.float32(self.p.dark_current_e_per_s * e.exposure_s * e.binx * e.biny)
        hot = self._hot_pixels(e, shape)
        if hot.size and at is not None and at.size:
            pos = np.searchsorted(at, hot)
            hot = pos[(pos < at.size) & (at[np.minimum(pos, at.size - 1)] == hot)]
        if hot.size and mean.size:
            mean.reshape(-1)[hot] += np.float32(self.p.hot_pixel_dark_e_per_s * e.exposure_s)
        clipped: np.ndarray = np.maximum(mean, np.float32(0.0), out=mean)
        return clipped

    def shot_noise(self, mean: np.ndarray) -> np.ndarray:
        """Electrons collected (float32): exactly Poisson below ``_EXACT_BELOW`` e-, above it the
        Gaussian limit of the Poisson law (same mean and variance)."""
        low = mean < _EXACT_BELOW
        n_low = int(np.count_nonzero(low))
        if n_low == mean.size:
            return poisson_frame(self.rng, mean)
        if n_low == 0:
            out = self.rng.standard_normal(mean.shape, dtype=np.float32)
            out *= np.sqrt(mean)
            out += mean
            return out
        out = np.empty_like(mean)
        out[low] = poisson_frame(self.rng, mean[low])
        high = ~low
        m = mean[high]
        z = self.rng.standard_normal(m.shape, dtype=np.float32)
        z *= np.sqrt(m)
        z += m
        out[high] = z
        return out

    def electrons(self, mean: np.ndarray, bins: int, noisy: np.ndarray | None = None,
                  noisy_var_e2: np.ndarray | None = None) -> np.ndarray:
        """Electrons read out (float32): shot noise, the response, read noise (``noisy``: flat indices
        into ``mean`` with extra read noise variance ``noisy_var_e2``, e-^2)."""
        full = self.p.full_well_e * bins
        knee = full * self.p.linear_fraction_of_full_well
        read = np.float32(self.p.read_noise_e * math.sqrt(bins))
        extra = noisy is not None and noisy.size > 0
        never_knee = (math.sqrt(_CLIP_SIGMAS**2 + 4 * knee) - _CLIP_SIGMAS) ** 2 / 4  # m + 9 sqrt(m) = knee
        if mean.size:
            near = None  # pixels below _EXACT_BELOW or near the knee (dead, hot ones): the chain
            low, high = float(mean.min()) < _EXACT_BELOW, float(mean.max()) >= never_knee
            if low or high:
                flat = mean.reshape(-1)
                if low and high:  # one pass gives the sorted union (np.union1d hashes: 0.3 s a frame)
                    near = np.flatnonzero((flat < _EXACT_BELOW) | (flat >= never_knee))
                else:
                    near = np.flatnonzero(flat < _EXACT_BELOW) if low else np.flatnonzero(flat >= never_knee)
            if near is None or 4 * near.size < mean.size:
                out = self.rng.standard_normal(mean.shape, dtype=np.float32)
                spread = np.add(mean, read * read)
                if extra:
                    spread.reshape(-1)[noisy] += np.asarray(noisy_var_e2, dtype=np.float32)
                out *= np.sqrt(spread, out=spread)
                out += mean
                if near is not None and near.size:  # the same law as the Gaussian elsewhere
                    sub_noisy, sub_var = None, None
                    if extra:
                        assert noisy is not None and noisy_var_e2 is not None
                        pos = np.searchsorted(near, noisy)
                        hit = (pos < near.size) & (near[np.minimum(pos, near.size - 1)] == noisy)
                        sub_noisy, sub_var = pos[hit], np.asarray(noisy_var_e2)[hit]
                    out.reshape(-1)[near] = self._chain(mean.reshape(-1)[near], full, read, sub_noisy, sub_var)
                return out
        return self._chain(mean, full, read, noisy if extra else None, noisy_var_e2)

    def _chain(self, mean: np.ndarray, full: float, read: np.float32, noisy: np.ndarray | None,
               noisy_var_e2: np.ndarray | None) -> np.ndarray:
        """Steps 2-4 one by one: shot noise, the response, read noise (float32)."""
        extra = noisy is not None and noisy.size > 0
        out = self.shot_noise(mean)
        compress_above_knee(out, full, self.p.linear_fraction_of_full_well)
        noise = self.rng.standard_normal(mean.shape, dtype=np.float32)
        z = noise.reshape(-1)[noisy] if extra else None
        noise *= read
        if z is not None:
            z *= np.sqrt(read * read + np.asarray(noisy_var_e2, dtype=np.float32))
            noise.reshape(-1)[noisy] = z
        out += noise
        return out

    # --- acquisition -----------------------------------------------------------------------------
    def render(self, t_start: float, e: Exposure) -> np.ndarray:
        """One frame exposed from ``t_start`` for ``e.exposure_s`` (virtual time)."""
        t = t_start + e.exposure_s / 2
        pattern, scale = self.scene(t, self.field_of_view(t, e))
        grid = self._grid(e)
        signal = np.float32(scale * e.exposure_s * self.p.quantum_efficiency)
        bins = e.binx * e.biny
        adu = self._law_pixels(pattern, signal, e, grid)
        if adu is None:
            mean = self._mean(pattern, signal, e, grid).reshape(-1)
            frame = self._to_adu(self.electrons(mean, bins, grid.noisy, grid.noisy_var_e2), e)
        else:
            frame, rest = adu
            mean = self._mean(pattern, signal, e, grid, at=rest)
            noisy = np.searchsorted(rest, grid.noisy)  # noisy pixels are never drawn from a law
            frame[rest] = self._to_adu(self.electrons(mean, bins, noisy, grid.noisy_var_e2), e)
        if grid.dsnu is not None:
            frame += grid.dsnu.reshape(-1)
        np.clip(frame, 0, 2**self.p.bit_depth - 1, out=frame)
        shaped: np.ndarray = frame.astype(np.uint16).reshape(pattern.shape)
        return shaped

    def _to_adu(self, electrons: np.ndarray, e: Exposure) -> np.ndarray:
        """Gain, black level and rounding, float32, flat (``electrons`` is overwritten); the DSNU and
        the bit depth's clip follow in ``render``."""
        electrons *= np.float32(self.adu_per_electron(e.gain_index))
        electrons += np.float32(e.black_level)
        np.rint(electrons, out=electrons)
        return electrons.reshape(-1)

    def _law_pixels(self, pattern: np.ndarray, signal: np.float32, e: Exposure,
                    grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
        """(ADU values before the DSNU of every pixel (float32, flat), indices of the pixels whose
        value is not drawn from an exact law but left for the chain) or None (no law path)."""
        if pattern.size == 0:
            return None
        smallest = np.float32(0.0) if signal == 0 else pattern.min()
        # the means of the background pixels of every code, with the same float32 steps as _mean
        codes = np.flatnonzero(grid.code_count >= _LAW_MIN_PIXELS)
        means = np.multiply(np.full(codes.size, smallest, np.float32), signal, dtype=np.float32)
        if grid.gain is not None:
            means *= grid.code_gain[codes]
        means += np.float32(self.p.dark_current_e_per_s * e.exposure_s * e.binx * e.biny)
        np.maximum(means, np.float32(0.0), out=means)
        keep = means < _EXACT_BELOW
        if 2 * int(grid.code_count[codes[keep]].sum()) < pattern.size:
            return None
        codes, means = codes[keep], means[keep]
        law = self._adu_laws(means, e)
        if law is None:
            return None
        which, base, outside = self._plans.get((e.roi, e.binx, e.biny, pattern.shape, tuple(codes.tolist())),
                                               lambda: self._plan(grid, codes))
        if signal == 0:  # no light: every pixel without a defect has the dark mean of its code
            rest = outside
        else:
            away = pattern.reshape(-1) != smallest
            away[outside] = True
            rest = np.flatnonzero(away)
        if 2 * rest.size > pattern.size:
            return None
        return law.draw(self.rng, which, base), rest  # every pixel; the rest is replaced

    def _plan(self, grid: Grid, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(law row of every pixel (0 where none), MultiLaw.base of it, flat indices of the pixels
        without a law: defects and codes left out)."""
        row = np.full(grid.code_gain.size + 1, -1, np.int16)
        row[codes + 1] = np.arange(codes.size)
        which = row[grid.code + 1]
        outside = np.flatnonzero(which < 0)
        np.maximum(which, 0, out=which)
        which.flags.writeable = False
        outside.flags.writeable = False
        return which, MultiLaw.base(which, codes.size), outside

    def _adu_laws(self, means: np.ndarray, e: Exposure) -> MultiLaw | None:
        """The laws of the ADU value (before the DSNU; one row per mean) of pixels whose means are
        ``means`` electrons (below ``_EXACT_BELOW``): Poisson electrons, the response, Gaussian read
        noise, times the gain, plus the black level, rounded: the exact law of what ``_to_adu(
        electrons(...))`` gives for such a pixel. None if the tables would be too large."""
        bins = e.binx * e.biny
        gain = np.float32(self.adu_per_electron(e.gain_index))
        black = np.float32(e.black_level)
        read_adu = self.p.read_noise_e * math.sqrt(bins) * float(gain)
        chain = (float(gain), float(black), read_adu, self.p.full_well_e * bins, self.p.linear_fraction_of_full_well)

        def make() -> MultiLaw | None:
            pmf = poisson_pmf_rows(means)
            transfer = self._transfer.get((chain, pmf.shape[1]), lambda: self._transfer_table(pmf.shape[1], chain))
            if transfer is None:
                return None
            low, table = transfer
            return MultiLaw(pmf @ table, offset=low)  # rows: P(ADU = low + a) for each mean

        return self._laws.get((tuple(means.tolist()), chain), make)

    def _transfer_table(self, n: int, chain: tuple[float, float, float, float, float]) -> tuple[int, np.ndarray] | None:
        """(low, T): T[k, a] = P(rint(R(k) * gain + black + read noise) = low + a) for k < n electrons."""
        gain, black, read_adu, full, fraction = chain
        electrons = np.arange(n, dtype=np.float32)
        compress_above_knee(electrons, full, fraction)
        centre = electrons * np.float32(gain) + np.float32(black)  # float32, as in _to_adu
        if read_adu == 0:
            adu = np.rint(centre).astype(np.intp)
            low = int(adu.min())
            table = np.zeros((n, int(adu.max()) - low + 1))
            table[np.arange(n), adu - low] = 1.0
            return low, table
        low = int(math.floor(float(centre.min()) - 12 * read_adu))
        high = int(math.ceil(float(centre.max()) + 12 * read_adu))
        if n * (high - low + 1) > _LAW_CELLS:
            return None
        edges = np.arange(low, high + 2, dtype=np.float64) - 0.5  # rint(x) = a for x in [a-0.5, a+0.5)
        edges[0], edges[-1] = -np.inf, np.inf  # the far tails (beyond 12 sigma) go to the ends
        below = special.ndtr((edges[None, :] - centre.astype(np.float64)[:, None]) / read_adu)
        return low, np.diff(below, axis=1)
