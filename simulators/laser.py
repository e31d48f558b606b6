"""Ground-truth physics of a diode laser: transfer curve, warm-up, drift, mode hops, noise, limits,
and the controller states that decide whether light leaves the head:

- emission (``set_emission``); with the CDRH delay on, light starts ``cdrh_delay_s`` after emission
  was switched on (``emission_starts_at``); warm-up runs from when light starts;
- modulation: internal ``CWP``/``CWC`` (constant power/current: the set point) or external
  ``DIGITAL``/``DIGSO`` (on while the input is high, >= 0.5) and ``ANALOG``/``MIXED``/``MIXSO`` (the
  set point times the analog input level); with nothing at the input (``modulation_input`` None) an
  external mode emits nothing;
- sleep (``set_asleep``, OBIS ``SOUR:TEMP:APR OFF``): the diode's temperature control is off and
  no light leaves the head; waking restarts the warm-up.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime

import numpy as np

from .ageing import days_since, laser_age_factor
from .clock import Clock
from .faults import FaultInjector
from .params import LaserParams


class LaserRefused(Exception):
    """The laser refuses a command (value out of its limits, interlock open)."""


class LaserModel:
    """One laser line. ``true_power_mw(t)`` is the ground truth of what leaves the laser."""

    def __init__(self, name: str, params: LaserParams, clock: Clock, rng: np.random.Generator, day_zero: datetime | None = None) -> None:
        self.name = name
        self.p = params
        self.clock = clock
        self.rng = rng
        self.day_zero = day_zero
        # run-to-run variation, drawn once (and only when asked for: no other draw moves)
        self.power_up_factor = 1.0 + float(rng.normal(0.0, params.power_up_variation_pct / 100.0)) if params.power_up_variation_pct else 1.0
        self.faults = FaultInjector(params.faults, clock.now)
        self._lock = threading.Lock()
        self.setpoint_mw = params.min_power_mw
        self.emission = False
        self.interlock_closed = params.interlock_closed
        self._t_on: float | None = None
        self._on_seconds_before = 0.0
        self.cdrh = params.cdrh
        self.modulation = "CWP"
        self.modulation_input = params.modulation_input
        self.asleep = False
        self._woke_at = 0.0

    # --- ground truth -------------------------------------------------------------------------
    def steady_power_mw(self, setpoint_mw: float) -> float:
        """Emitted power after warm-up, without drift or hops, for a set point."""
        p = self.p
        s = max(setpoint_mw - p.threshold_mw, 0.0)
        return p.calibration * s * (1.0 - p.low_power_deficit * math.exp(-setpoint_mw / p.knee_mw))

    def output_factor(self, t: float | None = None) -> float:
        """The truth of the laser's change over days at station time ``t``: ageing and steps at that
        date, times this power-up's variation (1.0 for a laser without them)."""
        t = self.clock.now() if t is None else t
        age = laser_age_factor(self.p, days_since(self.day_zero, self.clock, t)) if self.p.uses_days() else 1.0
        return age * self.power_up_factor

    def true_power_mw(self, t: float | None = None) -> float:
        """Emitted power at virtual time ``t`` (noise-free)."""
        t = self.clock.now() if t is None else t
        with self._lock:
            if not self.emission or self._t_on is None or not self.interlock_closed or self.asleep or t < self._t_on:
                return 0.0
            p = self.p
            power = self.steady_power_mw(self.setpoint_mw) * self.modulation_factor()
            power *= 1.0 - p.warmup_deficit * math.exp(-(t - max(self._t_on, self._woke_at)) / p.warmup_tau_s)
            power *= 1.0 + p.drift_pct_per_h / 100.0 * t / 3600.0
            for hop in p.mode_hops:
                if t >= hop.at_s:
                    power *= 1.0 + hop.step_pct / 100.0
            power *= self.output_factor(t)
            return max(power, 0.0)

    def sampled_power_mw(self, t: float, n_samples: int) -> float:
        """Power averaged over ``n_samples`` ~1 ms samples: relative intensity noise shrinks as 1/sqrt(n)."""
        power = self.true_power_mw(t)
        if power == 0.0 or self.p.rin_rms == 0.0:
            return power
        return power * (1.0 + self.rng.normal(0.0, self.p.rin_rms / math.sqrt(max(n_samples, 1))))

    def modulation_factor(self) -> float:
        """Fraction of the set point the modulation lets out (see the module docstring)."""
        mode, level = self.modulation, self.modulation_input
        if mode in ("CWP", "CWC"):
            return 1.0
        if level is None:
            return 0.0
        if mode in ("DIGITAL", "DIGSO"):
            return 1.0 if level >= 0.5 else 0.0
        return float(level)

    def emission_starts_at(self) -> float | None:
        """Station time at which light starts (or started) for the emission now on; None when off."""
        return self._t_on if self.emission else None

    def in_cdrh_delay(self, t: float | None = None) -> bool:
        """Emission is on but the CDRH delay has not run out yet."""
        t = self.clock.now() if t is None else t
        start = self.emission_starts_at()
        return start is not None and t < start

    def warmed_up(self, t: float | None = None) -> bool:
        """Light is out and within 0.1 % of its steady level."""
        t = self.clock.now() if t is None else t
        start = self.emission_starts_at()
        if start is None or t < start or self.asleep:
            return False
        return self.p.warmup_deficit * math.exp(-(t - max(start, self._woke_at)) / self.p.warmup_tau_s) < 1e-3

    def diode_current_a(self, t: float | None = None) -> float:
        """Drive current behind the emitted power (threshold current plus ~1 mA per mW)."""
        power = self.true_power_mw(t)
        return 0.0 if power == 0.0 else (30.0 + power) / 1e3

    # --- controls -----------------------------------------------------------------------------
    def set_setpoint_mw(self, value: float) -> None:
        if not (self.p.min_power_mw <= value <= self.p.high_limit_mw):
            raise LaserRefused(
                f"set point {value} mW outside {self.p.min_power_mw}..{self.p.high_limit_mw} mW"
            )
        with self._lock:
            self.setpoint_mw = value

    def set_emission(self, on: bool) -> None:
        with self._lock:
            if on and not self.interlock_closed:
                raise LaserRefused("interlock open")
            now = self.clock.now()
            if on and not self.emission:
                self._t_on = now + (self.p.cdrh_delay_s if self.cdrh else 0.0)
            elif not on and self.emission and self._t_on is not None:
                self._on_seconds_before += max(now - self._t_on, 0.0)
                self._t_on = None
            self.emission = on

    def set_asleep(self, asleep: bool) -> None:
        """Sleep (temperature control off, no light) or wake up (warm-up starts again)."""
        with self._lock:
            if self.asleep and not asleep:
                self._woke_at = self.clock.now()
            self.asleep = asleep

    def set_interlock(self, closed: bool) -> None:
        """Open or close the interlock; opening it stops emission at once."""
        if not closed:
            self.set_emission(False)
        self.interlock_closed = closed

    def diode_hours(self) -> float:
        on = self._on_seconds_before
        if self.emission and self._t_on is not None:
            on += max(self.clock.now() - self._t_on, 0.0)
        return self.p.diode_hours + on / 3600.0

    def monitor_power_mw(self) -> float:
        """The laser's own power monitor (what ``SOUR:POW:LEV?`` reports)."""
        return self.sampled_power_mw(self.clock.now(), 1)
