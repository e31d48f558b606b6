"""Ground-truth physics of a photodiode power meter: incident light, spectral responsivity, dark
offset and zeroing, averaging noise, ranges."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from .clock import Clock
from .faults import FaultInjector
from .laser import LaserModel
from .params import MeterParams

# Typical responsivity of a silicon photodiode (A/W) against wavelength (nm).
_SI_NM = np.array([400, 450, 500, 550, 600, 650, 700, 750, 800, 850, 900, 950, 980, 1000, 1050, 1100.0])
_SI_AW = np.array(
    [0.12, 0.18, 0.24, 0.29, 0.34, 0.38, 0.42, 0.46, 0.50, 0.54, 0.57, 0.60, 0.61, 0.58, 0.45, 0.22]
)
RANGES_W = (5e-6, 5e-5, 5e-4, 5e-3, 5e-2)


def responsivity_a_per_w(wavelength_nm: float) -> float:
    """Silicon photodiode responsivity at ``wavelength_nm``."""
    return float(np.interp(wavelength_nm, _SI_NM, _SI_AW))


class PowerMeterModel:
    """What the meter console reads. Light reaching the sensor = sum over emitting lasers of their
    power x transmission to the measuring location."""

    def __init__(
        self,
        name: str,
        params: MeterParams,
        clock: Clock,
        rng: np.random.Generator,
        lasers: dict[str, LaserModel],
        transmission: Callable[[str], float],
    ) -> None:
        self.name = name
        self.p = params
        self.clock = clock
        self.rng = rng
        self.lasers = lasers
        self.transmission = transmission
        self.faults = FaultInjector(params.faults, clock.now)
        self._lock = threading.Lock()
        self.wavelength_nm = params.default_wavelength_nm
        self.averaging = 1
        self.auto_range = True
        self.range_w = RANGES_W[-1]
        self.zero_offset_w = 0.0
        self._zero_done_at = -1.0
        self.beam_diameter_mm = params.sensor_aperture_mm

    # --- ground truth ---------------------------------------------------------------------------
    def expected_reading_w(self, t: float | None = None) -> float:
        """What an ideal, zeroed meter set to ``wavelength_nm`` shows (responsivity mismatch included)."""
        t = self.clock.now() if t is None else t
        r_set = responsivity_a_per_w(self.wavelength_nm)
        total = 0.0
        for name, laser in self.lasers.items():
            r_true = responsivity_a_per_w(laser.p.wavelength_nm)
            total += laser.true_power_mw(t) * self.transmission(name) / 1e3 * r_true / r_set
        return total

    # --- measurement ------------------------------------------------------------------------------
    def measurement_duration_s(self) -> float:
        return self.averaging * self.p.sample_time_s

    def measure_w(self) -> float:
        """One reading, taken over the averaging time that starts now (sleeps that long)."""
        duration = self.measurement_duration_s()
        t_mid = self.clock.now() + duration / 2
        self.clock.sleep(duration)
        n = self.averaging
        r_set = responsivity_a_per_w(self.wavelength_nm)
        signal = 0.0
        for name, laser in self.lasers.items():
            r_true = responsivity_a_per_w(laser.p.wavelength_nm)
            signal += laser.sampled_power_mw(t_mid, n) * self.transmission(name) / 1e3 * r_true / r_set
        reading = signal + self.p.dark_offset_w - self.zero_offset_w
        reading += self.rng.normal(0.0, self.p.noise_w / math.sqrt(n))
        with self._lock:
            if self.auto_range:
                self.range_w = next((r for r in RANGES_W if abs(reading) <= r), RANGES_W[-1])
            limit = self.range_w * 1.2
        reading = max(min(reading, limit), -limit)
        resolution = self.range_w * 1e-6
        return round(reading / resolution) * resolution

    def start_zero(self) -> None:
        """Zeroing: whatever the sensor sees now (dark offset plus any light) becomes zero."""
        seen = self.p.dark_offset_w + self.expected_reading_w()
        with self._lock:
            self.zero_offset_w = seen
            self._zero_done_at = self.clock.now() + self.p.zero_duration_s

    def zeroing(self) -> bool:
        """Asked by a poller waiting for zeroing to end: on a virtual clock, time passes to its end."""
        self.clock.poll(self._zero_done_at)
        return self.zero_in_progress()

    def zero_in_progress(self) -> bool:
        """Whether zeroing runs now, without waiting for it (status registers looked at in passing)."""
        return self.clock.now() < self._zero_done_at

    def photocurrent_a(self, reading_w: float) -> float:
        """The photodiode current behind a power reading: the console divides the current by the
        responsivity at the set wavelength, so current = reading x responsivity(set)."""
        return reading_w * responsivity_a_per_w(self.wavelength_nm)

    def power_density_w_per_cm2(self, reading_w: float) -> float:
        """Power over the area of a circular beam of ``beam_diameter_mm``."""
        radius_cm = self.beam_diameter_mm / 20.0
        return reading_w / (math.pi * radius_cm**2)

    def set_range_w(self, value: float) -> None:
        with self._lock:
            self.auto_range = False
            self.range_w = next((r for r in RANGES_W if value <= r), RANGES_W[-1])
