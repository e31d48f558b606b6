"""The virtual microscope: one seeded world shared by all simulated devices.

Lasers light the sample and the meter sensor; the stage carries the sample under the camera; the
camera renders the sample at the stage's *true* position. Every model reads one clock (``simulators.clock``): virtual
time by default, or a scaled real-time clock when ``time_scale`` is set.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .camera import CameraModel
from .clock import Clock, ScaledClock, VirtualClock
from .laser import LaserModel
from .lru import Lru
from .meter import PowerMeterModel
from .params import AxisParams, WorldParams
from .sample import FieldOfView, bead_field_rate, sensor_grid, uniform_slide_rate
from .stage import AxisModel, StageModel

_SAMPLES: tuple[Literal["bead_field", "uniform_slide"], ...] = ("bead_field", "uniform_slide")


class World:
    def __init__(self, params: WorldParams, clock: Clock | None = None) -> None:
        self.params = params
        self.clock: Clock = clock or (VirtualClock() if params.time_scale is None else ScaledClock(params.time_scale))
        self.seed = params.seed
        self.sample = params.sample
        # photon patterns of the sample per field of view: the uniform slide's depends on the sensor grid
        # only, the bead field's on the stage position too (a few entries: fields of view in use)
        self._patterns: Lru[np.ndarray] = Lru(4)
        seeds = np.random.SeedSequence(params.seed)
        # one independent stream per device, in a stable order, so adding a device elsewhere does
        # not change another device's noise
        names = (
            [f"laser:{n}" for n in params.lasers]
            + [f"meter:{n}" for n in params.meters]
            + [f"xy:{n}" for n in params.xy_stages]
            + [f"z:{n}" for n in params.z_drives]
            + [f"camera:{n}" for n in params.cameras]
        )
        rngs = {n: np.random.default_rng(s) for n, s in zip(names, seeds.spawn(len(names)))}
        optics = params.optics
        self.lasers = {n: LaserModel(n, p, self.clock, rngs[f"laser:{n}"]) for n, p in params.lasers.items()}
        self.meters = {
            n: PowerMeterModel(
                n, p, self.clock, rngs[f"meter:{n}"], self.lasers,
                lambda laser: optics.transmission_to_meter.get(laser, 1.0),
            )
            for n, p in params.meters.items()
        }
        self.xy_stages = {
            n: StageModel(
                n,
                {
                    "x": self._axis(f"{n}.x", p.x, rngs[f"xy:{n}"]),
                    "y": self._axis(f"{n}.y", p.y, rngs[f"xy:{n}"]),
                },
                self.clock,
                p.faults,
            )
            for n, p in params.xy_stages.items()
        }
        self.z_drives = {
            n: StageModel(n, {"z": self._axis(f"{n}.z", p.z, rngs[f"z:{n}"])}, self.clock, p.faults)
            for n, p in params.z_drives.items()
        }
        self.cameras = {
            n: CameraModel(
                n, p, self.clock, rngs[f"camera:{n}"], self._scene, self._stage_xy,
                p.pixel_size_um / optics.magnification,
            )
            for n, p in params.cameras.items()
        }

    def _axis(self, name: str, p: AxisParams, rng: np.random.Generator) -> AxisModel:
        return AxisModel(name, p, self.clock, rng)

    # --- coupling ---------------------------------------------------------------------------------
    def excitation_at_sample_mw(self, t: float | None = None) -> float:
        t = self.clock.now() if t is None else t
        tr = self.params.optics.transmission_to_sample
        return sum(laser.true_power_mw(t) * tr.get(n, 1.0) for n, laser in self.lasers.items())

    def _stage_xy(self, t: float) -> tuple[float, float]:
        if not self.xy_stages:
            return (0.0, 0.0)
        pos = next(iter(self.xy_stages.values())).true(t)
        return (pos["x"], pos["y"])

    def _scene(self, t: float, fov: FieldOfView) -> tuple[np.ndarray, float]:
        """(pattern, power): photons per second per pixel = power (mW at the sample) * pattern."""
        if self.sample == "uniform_slide":
            grid = sensor_grid(fov)
            pattern = self._patterns.get(("uniform_slide", grid), lambda: _frozen(uniform_slide_rate(self.params.uniform_slide, grid)))
        else:
            pattern = self._patterns.get(("bead_field", fov), lambda: _frozen(bead_field_rate(self.params.bead_field, self.seed, fov)))
        return pattern, self.excitation_at_sample_mw(t)

    def mount_sample(self, sample: str) -> None:
        """Swap the specimen (what an operator does between flat-field and stage tests)."""
        for known in _SAMPLES:
            if sample == known:
                self.sample = known
                return
        raise ValueError(f"unknown sample {sample!r}")


def _frozen(rate: np.ndarray) -> np.ndarray:
    pattern = rate.astype(np.float32)
    pattern.flags.writeable = False
    return pattern
