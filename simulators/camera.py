"""Ground-truth physics of a camera sensor: photons -> electrons -> ADU, with shot noise, read noise,
dark current, hot pixels, gain, offset, binning, ROI, bit depth and saturation.

Only the ROI is rendered, on the binned grid. What does not change between frames is cached (bounded
LRUs) by whoever owns it: the scene's photon pattern per field of view (the world), the hot pixels of an
ROI and binning (here), probability tables (here and ``simulators.poisson``). Noise, in float32:
- shot noise below ``_EXACT_BELOW`` e- is exactly Poisson, above it the Gaussian limit of the Poisson law
  (same mean and variance); electrons are clipped at the full well, then Gaussian read noise is added;
  gain, black level, rounding to integer ADU and the bit depth's range follow;
- when no pixel of a frame is within ``_CLIP_SIGMAS`` standard deviations of the full well (the clip
  cannot act), shot and read noise are one Gaussian draw of the summed variance: the same law;
- pixels at the frame's smallest mean, when that is below ``_EXACT_BELOW`` e- and at least half the
  frame has it (the background of a bead field, a dark frame), draw their ADU value directly from the
  exact law of that whole chain (``_adu_law``): 16 random bits per pixel instead of a Poisson and a
  Gaussian draw. The other pixels go through the chain above.
Frames are reproducible for a seed (the order of the draws is fixed). They are not bit-identical to those
of versions before the probability tables: the random numbers are used differently; the law of every
pixel is the same (tests/test_camera_statistics.py).
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
from .poisson import DiscreteLaw, poisson_frame, poisson_pmf
from .sample import FieldOfView

_EXACT_BELOW = 30.0
_CLIP_SIGMAS = 9.0  # P(z > 9) ~ 1e-19: a pixel whose mean lies further below the full well never clips
_LAW_CELLS = 250_000  # largest (counts x ADU levels) table worth computing for a frame's common law

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


class CameraModel:
    def __init__(
        self,
        name: str,
        params: CameraParams,
        clock: Clock,
        rng: np.random.Generator,
        scene: Scene,
        stage_position: StagePosition,
        sample_pixel_um: float,
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
        self._hot: Lru[np.ndarray] = Lru(4)
        self._laws: Lru[tuple[int, DiscreteLaw] | None] = Lru(8)

    # --- ground truth ----------------------------------------------------------------------------
    def adu_per_electron(self, gain_index: int) -> float:
        return 10 ** (gain_index * self.p.gain_db_per_index / 20.0) / self.p.conversion_gain_e_per_adu

    def field_of_view(self, t: float, e: Exposure) -> FieldOfView:
        x0, y0, x1, y1 = e.roi
        w = (x1 - x0 + 1) // e.binx
        h = (y1 - y0 + 1) // e.biny
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
        """Mean signal electrons per output pixel (no dark current, no noise), float64."""
        pattern, scale = self.scene(t, self.field_of_view(t, e))
        return pattern.astype(np.float64) * (scale * e.exposure_s * self.p.quantum_efficiency)

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
        """Mean electrons per output pixel, signal + dark, float32 (a new array)."""
        pattern, scale = self.scene(t, self.field_of_view(t, e))
        mean = np.multiply(pattern, np.float32(scale * e.exposure_s * self.p.quantum_efficiency), dtype=np.float32)
        mean += np.float32(self.p.dark_current_e_per_s * e.exposure_s * e.binx * e.biny)
        hot = self._hot_pixels(e, mean.shape)
        if hot.size:
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

    def electrons(self, mean: np.ndarray, bins: int) -> np.ndarray:
        """Electrons read out (float32): shot noise, full-well clip, read noise."""
        full = self.p.full_well_e * bins
        read = np.float32(self.p.read_noise_e * math.sqrt(bins))
        never_full = (math.sqrt(_CLIP_SIGMAS**2 + 4 * full) - _CLIP_SIGMAS) ** 2 / 4  # m + 9 sqrt(m) = full
        if mean.size and float(mean.min()) >= _EXACT_BELOW and float(mean.max()) < never_full:
            out = self.rng.standard_normal(mean.shape, dtype=np.float32)
            spread = np.add(mean, read * read)
            out *= np.sqrt(spread, out=spread)
            out += mean
            return out
        out = self.shot_noise(mean)
        np.minimum(out, np.float32(full), out=out)
        noise = self.rng.standard_normal(mean.shape, dtype=np.float32)
        noise *= read
        out += noise
        return out

    # --- acquisition -----------------------------------------------------------------------------
    def render(self, t_start: float, e: Exposure) -> np.ndarray:
        """One frame exposed from ``t_start`` for ``e.exposure_s`` (virtual time)."""
        mean = self.mean_electrons(t_start + e.exposure_s / 2, e)
        bins = e.binx * e.biny
        flat = mean.reshape(-1)
        smallest = flat.min() if flat.size else np.float32(np.inf)
        if smallest < _EXACT_BELOW:
            common = flat == smallest
            n_common = int(np.count_nonzero(common))
            law = self._adu_law(float(smallest), e) if 2 * n_common >= flat.size else None
            if law is not None:
                lowest, table = law  # outcome i of the law is lowest + i ADU
                if n_common == flat.size:
                    frame = np.add(table.draw(self.rng, flat.size), np.uint16(lowest), dtype=np.uint16)
                else:
                    frame = np.empty(flat.size, dtype=np.uint16)
                    frame[common] = np.add(table.draw(self.rng, n_common), np.uint16(lowest), dtype=np.uint16)
                    rest = ~common
                    frame[rest] = self._to_adu(self.electrons(flat[rest], bins), e)
                shaped: np.ndarray = frame.reshape(mean.shape)
                return shaped
        return self._to_adu(self.electrons(mean, bins), e)

    def _to_adu(self, electrons: np.ndarray, e: Exposure) -> np.ndarray:
        """Gain, black level, rounding and the bit depth (``electrons`` is overwritten)."""
        electrons *= np.float32(self.adu_per_electron(e.gain_index))
        electrons += np.float32(e.black_level)
        np.rint(electrons, out=electrons)
        np.clip(electrons, 0, 2**self.p.bit_depth - 1, out=electrons)
        return electrons.astype(np.uint16)

    def _adu_law(self, mean_e: float, e: Exposure) -> tuple[int, DiscreteLaw] | None:
        """(lowest ADU level, the law of ADU - lowest) of a pixel whose mean is ``mean_e`` electrons (below
        ``_EXACT_BELOW``): Poisson electrons, clipped at the full well, plus Gaussian read noise, times
        the gain, plus the black level, rounded and clipped to the bit depth: the exact law of what
        ``_to_adu(electrons(...))`` gives for such a pixel. None if its table would be too large."""
        bins = e.binx * e.biny
        gain = np.float32(self.adu_per_electron(e.gain_index))
        black = np.float32(e.black_level)
        read_adu = self.p.read_noise_e * math.sqrt(bins) * float(gain)
        top = 2**self.p.bit_depth - 1
        key = (mean_e, float(gain), float(black), read_adu, self.p.full_well_e * bins, top)

        def make() -> tuple[int, DiscreteLaw] | None:
            pmf = poisson_pmf(mean_e) if mean_e > 0 else np.ones(1)
            electrons = np.minimum(np.arange(len(pmf), dtype=np.float32), np.float32(self.p.full_well_e * bins))
            centre = electrons * gain + black  # float32, as in _to_adu
            if read_adu == 0:
                adu = np.clip(np.rint(centre), 0, top).astype(np.intp)
                low = int(adu.min())
                law = np.bincount(adu - low, weights=pmf)
            else:
                low = int(max(0, math.floor(float(centre[0]) - 12 * read_adu)))
                high = int(min(top, math.ceil(float(centre[-1]) + 12 * read_adu)))
                if len(pmf) * (high - low + 1) > _LAW_CELLS:
                    return None
                edges = np.arange(low, high + 2, dtype=np.float64) - 0.5  # rint(x) = a for x in [a-0.5, a+0.5)
                edges[0] = -np.inf if low == 0 else edges[0]
                edges[-1] = np.inf if high == top else edges[-1]
                below = special.ndtr((edges[None, :] - centre.astype(np.float64)[:, None]) / read_adu)
                law = pmf @ np.diff(below, axis=1)
            return low, DiscreteLaw(law)

        return self._laws.get(key, make)
