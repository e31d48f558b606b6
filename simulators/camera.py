"""Ground-truth physics of a camera sensor: photons -> electrons -> ADU, with shot noise, read noise,
dark current, hot pixels, gain, offset, binning, ROI, bit depth and saturation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .clock import Clock
from .faults import FaultInjector
from .params import CameraParams
from .sample import FieldOfView

_EXACT_BELOW = 30.0

# scene(t, fov) -> expected photons per second per pixel arriving at the sensor
Scene = Callable[[float, FieldOfView], np.ndarray]
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
        """Mean signal electrons per output pixel (no dark current, no noise)."""
        fov = self.field_of_view(t, e)
        return self.scene(t, fov) * e.exposure_s * self.p.quantum_efficiency

    def dark_electrons(self, e: Exposure, shape: tuple[int, int]) -> np.ndarray:
        dark = np.full(shape, self.p.dark_current_e_per_s * e.exposure_s * e.binx * e.biny)
        x0, y0, _, _ = e.roi
        r = (self.hot_rows - y0) // e.biny
        c = (self.hot_cols - x0) // e.binx
        ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
        dark[r[ok], c[ok]] += self.p.hot_pixel_dark_e_per_s * e.exposure_s
        return dark

    def shot_noise(self, mean: np.ndarray) -> np.ndarray:
        """Poisson-distributed electrons. Above ``_EXACT_BELOW`` e- the Gaussian limit of the
        Poisson law (same mean and variance) is drawn instead: ten times faster on a full frame."""
        z = self.rng.standard_normal(mean.shape, dtype=np.float32)
        electrons = mean + np.sqrt(mean) * z
        low = mean < _EXACT_BELOW
        if low.any():
            electrons[low] = self.rng.poisson(mean[low])
        return electrons

    # --- acquisition -----------------------------------------------------------------------------
    def render(self, t_start: float, e: Exposure) -> np.ndarray:
        """One frame exposed from ``t_start`` for ``e.exposure_s`` (virtual time)."""
        t_mid = t_start + e.exposure_s / 2
        signal = self.expected_electrons(t_mid, e)
        mean = signal + self.dark_electrons(e, signal.shape)
        electrons = self.shot_noise(np.maximum(mean, 0.0).astype(np.float32))
        bins = e.binx * e.biny
        np.minimum(electrons, self.p.full_well_e * bins, out=electrons)
        read = self.rng.standard_normal(electrons.shape, dtype=np.float32)
        electrons += read * np.float32(self.p.read_noise_e * math.sqrt(bins))
        adu = electrons * np.float32(self.adu_per_electron(e.gain_index)) + np.float32(e.black_level)
        top = 2**self.p.bit_depth - 1
        return np.clip(np.rint(adu), 0, top).astype(np.uint16)
