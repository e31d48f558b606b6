"""The virtual microscope: one seeded world shared by all simulated devices.

Lasers light the sample and the meter sensor; the stage carries the sample under the camera; the
camera renders the sample at the stage's *true* position. Every model reads one clock (``simulators.clock``): virtual
time by default, or a scaled real-time clock when ``time_scale`` is set.

The bead slide (``mount_sample("bead_slide")``) is rendered at the first Z drive's true position (its
backlash, repeatability and thermal drift included) through each emitting line's widefield PSF, with that
line's chromatic shift and the focal plane's drift (``OpticsParams.focus_drift_um_per_h``, settling).
Ground truth for tests (no randomness consumed): ``psf_truth``, ``chromatic_shift_um``,
``focal_plane_z_um``, ``bead_positions_um``, ``emission_nm``, ``objective``; the truth that changes
over days (``simulators.ageing``, from ``WorldParams.day_zero``): ``lasers[label].output_factor(t)``,
an axis's ``backlash_um(t)`` and ``repeatability_um(t)``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from . import bead_slide
from .camera import CameraModel
from .clock import Clock, ScaledClock, VirtualClock
from .laser import LaserModel
from .lru import Lru
from .meter import PowerMeterModel
from .params import AxisParams, WorldParams
from .psf_model import BeadImageModel, PsfOptics, PsfTruth
from .sample import FieldOfView, bead_field_rate, sensor_grid, uniform_slide_rate
from .stage import AxisModel, StageModel, StageRefused

_SAMPLES: tuple[Literal["bead_field", "uniform_slide", "bead_slide"], ...] = ("bead_field", "uniform_slide", "bead_slide")
FALLBACK_NA = 0.75  # objective NA when neither the station nor the simulation section gives one
FALLBACK_DRY_INDEX = 1.0  # immersion index when none is given: air below NA 1 ...
FALLBACK_OIL_INDEX = 1.518  # ... oil from NA 1
STOKES_SHIFT_NM = 30.0  # emission of a line without one in BeadSlideParams.emission_nm: excitation + this


class World:
    def __init__(self, params: WorldParams, clock: Clock | None = None) -> None:
        self.params = params
        self.clock: Clock = clock or (VirtualClock() if params.time_scale is None else ScaledClock(params.time_scale))
        self.seed = params.seed
        self.sample = params.sample
        # photon patterns of the sample per field of view: the uniform slide's depends on the sensor grid
        # only, the bead field's on the stage position too (a few entries: fields of view in use)
        self._patterns: Lru[np.ndarray] = Lru(4)
        self._line_rates: Lru[np.ndarray] = Lru(8)  # bead slide: per (line, field of view, defocus)
        self._psf_models: dict[str, BeadImageModel] = {}
        self._psf_truths: dict[str, PsfTruth] = {}
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
        self.lasers = {n: LaserModel(n, p, self.clock, rngs[f"laser:{n}"], params.day_zero) for n, p in params.lasers.items()}
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
        return AxisModel(name, p, self.clock, rng, self.params.day_zero)

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
        if self.sample == "bead_slide":
            return self._bead_slide_scene(t, fov)
        if self.sample == "uniform_slide":
            grid = sensor_grid(fov)
            pattern = self._patterns.get(("uniform_slide", grid), lambda: _frozen(uniform_slide_rate(self.params.uniform_slide, grid)))
        else:
            pattern = self._patterns.get(("bead_field", fov), lambda: _frozen(bead_field_rate(self.params.bead_field, self.seed, fov)))
        return pattern, self.excitation_at_sample_mw(t)

    def mount_sample(self, sample: str) -> None:
        """Swap the specimen (what an operator does between flat-field and stage tests). Mounting the
        bead slide includes the operator's focusing: the first Z drive is sent to ``focus_z_um`` +
        ``operator_focus_error_um`` (a real move: backlash and a repeatability draw). Raises ValueError
        for an unknown sample or a focus outside the Z drive's travel."""
        for known in _SAMPLES:
            if sample == known:
                if known == "bead_slide" and self.z_drives:
                    p = self.params.bead_slide
                    try:
                        next(iter(self.z_drives.values())).move({"z": p.focus_z_um + p.operator_focus_error_um})
                    except StageRefused as exc:
                        raise ValueError(f"the bead slide cannot be focused: {exc}") from None
                self.sample = known
                return
        raise ValueError(f"unknown sample {sample!r}")

    # --- bead slide -------------------------------------------------------------------------------
    def objective(self) -> tuple[float, float]:
        """(NA, immersion index) the PSF uses: the optics section's, else the fallbacks."""
        o = self.params.optics
        na = FALLBACK_NA if o.na is None else o.na
        n = o.immersion_index if o.immersion_index is not None else (FALLBACK_DRY_INDEX if na < 1.0 else FALLBACK_OIL_INDEX)
        return na, n

    def emission_nm(self, laser: str) -> float:
        """Emission wavelength of the beads under ``laser``: the slide's table, else excitation + 30 nm."""
        table = self.params.bead_slide.emission_nm
        if laser in table:
            return table[laser]
        if laser not in self.lasers:
            raise KeyError(f"no laser {laser!r} in the simulated world (lasers: {', '.join(self.lasers) or 'none'})")
        return self.lasers[laser].p.wavelength_nm + STOKES_SHIFT_NM

    def bead_image_model(self, laser: str) -> BeadImageModel:
        """The PSF / bead image model of one line (built once)."""
        if laser not in self._psf_models:
            na, n = self.objective()
            optics = PsfOptics(self.emission_nm(laser), na, n, self.params.optics.spherical_aberration_waves,
                               self.params.bead_slide.bead_diameter_nm / 1000.0)
            self._psf_models[laser] = BeadImageModel(optics)
        return self._psf_models[laser]

    def psf_truth(self, laser: str) -> PsfTruth:
        """Lateral and axial FWHM of the bead image and of the bare PSF for ``laser``'s emission."""
        if laser not in self._psf_truths:
            self._psf_truths[laser] = self.bead_image_model(laser).truth()
        return self._psf_truths[laser]

    def chromatic_shift_um(self, laser: str) -> tuple[float, float, float]:
        """(x, y, z) shift of ``laser``'s bead image (the optics section's; none: zeros)."""
        return self.params.optics.chromatic_shift_um.get(laser, (0.0, 0.0, 0.0))

    def focus_drift_um(self, t: float) -> float:
        """How far the focal plane has moved against the Z drive since the clock started."""
        o = self.params.optics
        return o.focus_drift_um_per_h * t / 3600.0 + o.focus_settle_um * (1.0 - math.exp(-t / o.focus_settle_tau_s))

    def _bead_plane_true_z(self, t: float, laser: str) -> float:
        """The Z drive true position at which ``laser``'s beads are at defocus 0 at time t."""
        return self.params.bead_slide.focus_z_um + self.chromatic_shift_um(laser)[2] + self.focus_drift_um(t)

    def focal_plane_z_um(self, t: float, laser: str, approach: int = 1) -> float:
        """The Z drive *reported* position at which ``laser``'s beads are in focus (largest on-axis
        intensity of the bead image) at time t, the drive approaching from below (+1) or above (-1),
        without the random per-move error. Without a Z drive: the true focal plane."""
        target = self._bead_plane_true_z(t, laser) + self.psf_truth(laser).best_focus_um
        if not self.z_drives:
            return target
        axis = next(iter(self.z_drives.values())).axes["z"]
        p = axis.p
        # true = c + systematic(c) - approach * backlash / 2 + drift(t): solve for c (fixed point;
        # |systematic'| << 1)
        rhs = target + approach * axis.backlash_um(t) / 2 - p.thermal_drift_um_per_h * t / 3600.0
        c = rhs
        for _ in range(100):
            nxt = rhs - axis.systematic_um(c)
            if abs(nxt - c) < 1e-12:
                break
            c = nxt
        return c

    def bead_positions_um(self, x_min: float, x_max: float, y_min: float, y_max: float) -> np.ndarray:
        """Beads in a rectangle of the slide (no chromatic shift): rows (x_um, y_um, brightness,
        clump id, clump size); a clump's beads share its id, single beads have size 1."""
        return bead_slide.beads_in(self.params.bead_slide, self.seed, x_min, x_max, y_min, y_max)

    def _z_true(self, t: float) -> float:
        if not self.z_drives:
            return self.params.bead_slide.focus_z_um
        return next(iter(self.z_drives.values())).axes["z"].true_um(t)

    def _line_rate(self, laser: str, fov: FieldOfView, defocus: float) -> np.ndarray:
        model = self.bead_image_model(laser)
        p = self.params.bead_slide
        shift = self.chromatic_shift_um(laser)

        def make() -> np.ndarray:
            sub = bead_slide.subsampling(fov.pixel_um, self.psf_truth(laser).psf_lateral_fwhm_um)
            return _frozen(bead_slide.line_rate(model, p, self.seed, fov, defocus, (shift[0], shift[1]), sub))

        return self._line_rates.get((laser, fov, defocus), make)

    def _bead_slide_scene(self, t: float, fov: FieldOfView) -> tuple[np.ndarray, float]:
        """Sum over emitting lines of power x that line's pattern at its defocus."""
        tr = self.params.optics.transmission_to_sample
        z = self._z_true(t)
        powers = {n: laser.true_power_mw(t) * tr.get(n, 1.0) for n, laser in self.lasers.items()}
        lit = {n: p for n, p in powers.items() if p > 0}
        if not lit:
            return self._patterns.get(("dark", fov), lambda: _frozen(np.zeros((fov.height, fov.width)))), 0.0
        rates = {n: self._line_rate(n, fov, z - self._bead_plane_true_z(t, n)) for n in lit}
        total = sum(lit.values())
        if len(lit) == 1:
            ((name, power),) = lit.items()
            return rates[name], power
        mix = sum((rates[n].astype(np.float64) * (p / total) for n, p in lit.items()), np.zeros((fov.height, fov.width)))
        return _frozen(mix), total


def _frozen(rate: np.ndarray) -> np.ndarray:
    pattern = rate.astype(np.float32)
    pattern.flags.writeable = False
    return pattern
