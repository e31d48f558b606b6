"""Ground-truth physics of motorized stage axes: where the carriage really goes when commanded.

true = c (1 + scale) + pitch sin(2 pi c / period) - d backlash / 2 + e + drift t
with c the commanded position, d the direction of the last move (+1/-1; +1 before any move),
e ~ N(0, sigma) drawn anew at every move, and drift the slow thermal drift since the clock started.
The stage reports the commanded position (open-loop, as a stepper controller does); only the
camera sees the true one.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime

import numpy as np

from .ageing import axis_backlash_um, axis_repeatability_um, days_since
from .clock import Clock
from .faults import FaultInjector
from .params import AxisParams, FaultSpec


class StageRefused(Exception):
    """A move outside the travel limits."""


class AxisModel:
    def __init__(self, name: str, params: AxisParams, clock: Clock, rng: np.random.Generator, day_zero: datetime | None = None) -> None:
        self.name = name
        self.p = params
        self.clock = clock
        self.rng = rng
        self.day_zero = day_zero
        self.commanded_um = 0.0
        self.direction = 1
        self._random_um = 0.0

    def systematic_um(self, commanded_um: float) -> float:
        """Position error that depends only on where the axis was sent (scale and pitch errors)."""
        p = self.p
        return commanded_um * p.scale_error_ppm * 1e-6 + p.pitch_error_um * math.sin(
            2 * math.pi * commanded_um / p.pitch_period_um
        )

    def backlash_um(self, t: float | None = None) -> float:
        """The backlash at station time ``t`` (grown by wear at that date, if the axis wears)."""
        if not self.p.uses_days():
            return self.p.backlash_um
        return axis_backlash_um(self.p, days_since(self.day_zero, self.clock, self.clock.now() if t is None else t))

    def repeatability_um(self, t: float | None = None) -> float:
        """The repeatability error (sigma of one move) at station time ``t``."""
        if not self.p.uses_days():
            return self.p.repeatability_sigma_um
        return axis_repeatability_um(self.p, days_since(self.day_zero, self.clock, self.clock.now() if t is None else t))

    def true_um(self, t: float | None = None) -> float:
        t = self.clock.now() if t is None else t
        c = self.commanded_um
        return (
            c
            + self.systematic_um(c)
            - self.direction * self.backlash_um(t) / 2
            + self._random_um
            + self.p.thermal_drift_um_per_h * t / 3600.0
        )

    def check(self, target_um: float) -> None:
        if not (self.p.min_um <= target_um <= self.p.max_um):
            raise StageRefused(
                f"axis {self.name}: {target_um} um is outside travel {self.p.min_um}..{self.p.max_um} um"
            )

    def move(self, target_um: float) -> float:
        """Start a move; return how long it takes (virtual s) including settling."""
        self.check(target_um)
        delta = target_um - self.commanded_um
        if delta > 0:
            self.direction = 1
        elif delta < 0:
            self.direction = -1
        self.commanded_um = target_um
        sigma = self.repeatability_um()
        self._random_um = float(self.rng.normal(0.0, sigma)) if sigma else 0.0
        return abs(delta) / self.p.speed_um_per_s + self.p.settle_s


class StageModel:
    """A set of axes moved together (XY stage, or a single Z drive) with a busy state and faults."""

    def __init__(self, name: str, axes: dict[str, AxisModel], clock: Clock, faults: list[FaultSpec]) -> None:
        self.name = name
        self.axes = axes
        self.clock = clock
        self.faults = FaultInjector(faults, clock.now)
        self._lock = threading.Lock()
        self._busy_until = 0.0
        self._stuck = False

    def move(self, targets: dict[str, float]) -> None:
        with self._lock:
            for axis, value in targets.items():
                self.axes[axis].check(value)
            if self.faults.next_command(["stuck_busy"]) is not None:
                self._stuck = True
            duration = max(self.axes[a].move(v) for a, v in targets.items())
            self._busy_until = self.clock.now() + duration

    def busy(self) -> bool:
        """Asked by a poller waiting for the move: on a virtual clock, time passes to its end."""
        if not self._stuck:
            self.clock.poll(self._busy_until)
        return self._stuck or self.clock.now() < self._busy_until

    def stop(self) -> None:
        with self._lock:
            self._busy_until = self.clock.now()

    def commanded(self) -> dict[str, float]:
        return {a: ax.commanded_um for a, ax in self.axes.items()}

    def true(self, t: float | None = None) -> dict[str, float]:
        return {a: ax.true_um(t) for a, ax in self.axes.items()}
