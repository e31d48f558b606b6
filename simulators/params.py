"""Ground-truth parameters of the simulated world, as validated models (units in every name).

A station file's ``simulation`` sections are parsed into these; tests read the same values back as
the truth that the harness's measurements are compared with.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FaultSpec(_Model):
    """One injected fault. It becomes active after ``after_commands`` commands (frames for a camera,
    moves for a stage) or at virtual time ``at_s``, and then fires ``times`` times (0: for ever)."""

    kind: Literal[
        "connection_lost",
        "no_reply",
        "garbage_reply",
        "scpi_error",
        "stuck_busy",
        "dropped_frame",
        "late_frame",
    ]
    after_commands: int | None = Field(default=None, ge=0)
    at_s: float | None = Field(default=None, ge=0)
    times: int = Field(default=1, ge=0)
    delay_s: float = Field(default=1.0, ge=0, description="late_frame: how late the frame is")

    @model_validator(mode="after")
    def _one_trigger(self) -> FaultSpec:
        if self.after_commands is None and self.at_s is None:
            raise ValueError("a fault needs a trigger: after_commands or at_s")
        return self


class ModeHop(_Model):
    """A step change of emitted power at virtual time ``at_s``."""

    at_s: float = Field(ge=0)
    step_pct: float


class PowerStep(_Model):
    """A lasting step change of a laser's output from a day on (a fibre coupling that degrades, a
    realignment that restores it): days count from the simulation's ``day_zero``."""

    day: float = Field(ge=-36500, le=36500, description="days after the simulation's day_zero")
    step_pct: float = Field(gt=-100, le=1000, description="change of the output, % of what it was")
    cause: str = Field(default="", description="for people: what happened")


class LaserParams(_Model):
    """A diode laser: transfer curve, warm-up, drift, noise, limits, and its change over the days
    (ageing, steps on dates, run-to-run variation)."""

    wavelength_nm: float = Field(gt=200, lt=2000)
    nominal_power_mw: float = Field(gt=0)
    min_power_mw: float = Field(default=0.0, ge=0)
    max_power_mw: float | None = Field(default=None, gt=0, description="default: nominal power")
    # steady-state transfer: P = calibration * max(s - threshold, 0) * (1 - deficit * exp(-s/knee))
    calibration: float = Field(default=1.0, gt=0)
    threshold_mw: float = Field(default=0.0, ge=0)
    low_power_deficit: float = Field(default=0.0, ge=0, lt=1)
    knee_mw: float = Field(default=5.0, gt=0)
    # warm-up after emission on: factor (1 - warmup_deficit * exp(-(t - t_on)/warmup_tau_s))
    warmup_deficit: float = Field(default=0.0, ge=0, lt=1)
    warmup_tau_s: float = Field(default=300.0, gt=0)
    drift_pct_per_h: float = 0.0
    rin_rms: float = Field(default=0.001, ge=0, description="relative noise of one ~1 ms sample")
    mode_hops: list[ModeHop] = Field(default_factory=list)
    # over days (``simulators.ageing``): the output declines linearly from ``ageing_from_day`` (days
    # after the simulation's day_zero), steps on given days, and varies from one power-up to the next
    ageing_pct_per_day: float = Field(default=0.0, ge=-50, le=50,
                                      description="change of the output per day from ageing_from_day, % of the new laser's (negative: decline)")
    ageing_from_day: float = Field(default=0.0, ge=-36500, le=36500, description="days after the simulation's day_zero")
    power_steps: list[PowerStep] = Field(default_factory=list, description="lasting steps of the output on given days")
    power_up_variation_pct: float = Field(default=0.0, ge=0, le=20,
                                          description="rms run-to-run variation of the output (coupling, temperature), drawn once when the "
                                                      "simulator starts (from the run's seed)")
    diode_hours: float = Field(default=1200.0, ge=0)
    model: str = "OBIS LX"
    serial: str = "SIM-OBIS-0001"
    firmware: str = "3.1.2"
    interlock_closed: bool = True
    cdrh: bool = Field(default=True, description="CDRH emission delay on at power-up (OBIS factory setting: on)")
    cdrh_delay_s: float = Field(default=5.0, ge=0, description="with CDRH on: emission starts this long after SOUR:AM:STAT ON")
    modulation_input: float | None = Field(default=None, ge=0, le=1,
                                           description="level at the external modulation input, a fraction of full scale (digital: high from 0.5); "
                                                       "None: nothing connected, so an external modulation mode emits nothing")
    manufacture_date: str = "2023-05-17"
    calibration_date: str = "2023-05-22"
    power_cycles: int = Field(default=412, ge=0)
    command_latency_s: float = Field(default=0.005, ge=0, le=10,
                                     description="station time one command takes on the serial line (115200 baud) and in the controller")
    faults: list[FaultSpec] = Field(default_factory=list)

    @property
    def high_limit_mw(self) -> float:
        return self.max_power_mw if self.max_power_mw is not None else self.nominal_power_mw

    def uses_days(self) -> bool:
        """Its truth changes with the date (needs the simulation's ``day_zero``)."""
        return self.ageing_pct_per_day != 0 or bool(self.power_steps)


class MeterParams(_Model):
    """A photodiode power meter console (PM100D) with its sensor."""

    model: str = "PM100D"
    serial: str = "P0000001"
    firmware: str = "2.8.0"
    sensor_model: str = "S120C"
    sensor_serial: str = "SIM-S120C-001"
    sensor_calibration_date: str = "01-Jan-2026"
    sensor_aperture_mm: float = Field(default=9.5, gt=0, description="sensor aperture; the default beam diameter for power density")
    sensor_thermistor: bool = Field(default=True, description="the sensor head has an NTC thermistor (S120C: yes)")
    sensor_temperature_c: float = Field(default=23.5, description="what the sensor head's thermistor reads")
    line_frequency_hz: Literal[50, 60] = 50
    wavelength_min_nm: float = 400.0
    wavelength_max_nm: float = 1100.0
    default_wavelength_nm: float = 633.0
    dark_offset_w: float = Field(default=2e-7, description="removed by zeroing with no light")
    noise_w: float = Field(default=5e-9, ge=0, description="rms noise of one sample")
    sample_time_s: float = Field(default=0.001, gt=0, description="time per averaged sample")
    zero_duration_s: float = Field(default=1.0, ge=0)
    command_latency_s: float = Field(default=0.001, ge=0, le=10, description="station time one command takes over USB (TMC) and in the console")
    faults: list[FaultSpec] = Field(default_factory=list)


class AxisParams(_Model):
    """One stage axis: what the true position does relative to the commanded one."""

    scale_error_ppm: float = 0.0
    pitch_error_um: float = Field(default=0.0, ge=0, description="amplitude of the periodic error")
    pitch_period_um: float = Field(default=1000.0, gt=0)
    backlash_um: float = Field(default=0.0, ge=0)
    repeatability_sigma_um: float = Field(default=0.0, ge=0)
    thermal_drift_um_per_h: float = 0.0
    speed_um_per_s: float = Field(default=5000.0, gt=0)
    settle_s: float = Field(default=0.05, ge=0)
    min_um: float = -50000.0
    max_um: float = 50000.0
    # wear over days (``simulators.ageing``): backlash and repeatability error grow from ``wear_from_day``
    wear_from_day: float = Field(default=0.0, ge=-36500, le=36500, description="days after the simulation's day_zero")
    backlash_growth_um_per_day: float = Field(default=0.0, ge=0, le=100, description="from wear_from_day (a worn lead screw or nut)")
    repeatability_growth_um_per_day: float = Field(default=0.0, ge=0, le=100, description="from wear_from_day (a failing bearing)")

    def uses_days(self) -> bool:
        """Its truth changes with the date (needs the simulation's ``day_zero``)."""
        return self.backlash_growth_um_per_day != 0 or self.repeatability_growth_um_per_day != 0


class XYStageParams(_Model):
    x: AxisParams = AxisParams()
    y: AxisParams = AxisParams()
    model: str = "Simulated XY stage"
    serial: str = "SIM-XY-0001"
    faults: list[FaultSpec] = Field(default_factory=list)


class ZDriveParams(_Model):
    z: AxisParams = AxisParams(min_um=0.0, max_um=10000.0, speed_um_per_s=1000.0)
    model: str = "Simulated Z drive"
    serial: str = "SIM-Z-0001"
    faults: list[FaultSpec] = Field(default_factory=list)


class CameraParams(_Model):
    """A scientific CMOS camera (Thorlabs Kiralux-like) with ground-truth sensor physics."""

    model: str = "CS2100M-USB"
    serial: str = "SIM00001"
    firmware: str = "1.0.6"
    width_px: int = Field(default=1920, gt=0)
    height_px: int = Field(default=1080, gt=0)
    pixel_size_um: float = Field(default=5.04, gt=0)
    bit_depth: int = Field(default=12, ge=8, le=16)
    quantum_efficiency: float = Field(default=0.6, gt=0, le=1)
    conversion_gain_e_per_adu: float = Field(default=2.7, gt=0, description="at gain index 0")
    gain_db_per_index: float = Field(default=0.1, gt=0)
    max_gain_index: int = Field(default=480, ge=0)
    offset_adu: float = Field(default=100.0, ge=0, description="black level at the default setting")
    read_noise_e: float = Field(default=4.0, ge=0)
    dark_current_e_per_s: float = Field(default=1.0, ge=0)
    full_well_e: float = Field(default=11000.0, gt=0)
    hot_pixels: int = Field(default=8, ge=0)
    hot_pixel_dark_e_per_s: float = Field(default=20000.0, ge=0)
    # fixed patterns and defects (simulators.sensor_patterns); all 0 (and linear_fraction_of_full_well 1):
    # the ideal sensor
    dsnu_adu: float = Field(default=1.2, ge=0, le=100,
                            description="rms of the fixed offset pattern (DSNU), DN, gain-independent; rounded to integer DN per pixel")
    prnu_pct: float = Field(default=0.7, ge=0, le=10,
                            description="rms of the fixed photo-response pattern (PRNU), % of the signal; quantised to 32 levels")
    linear_fraction_of_full_well: float = Field(default=0.9, gt=0, le=1,
                                                description="the response is linear up to this fraction of the full well, "
                                                            "then compressed smoothly (tanh) towards it; 1: a hard clip at the full well")
    dead_pixels: int = Field(default=3, ge=0, le=100000, description="pixels without photo-response (dark current and read noise remain)")
    noisy_pixels: int = Field(default=4, ge=0, le=100000, description="pixels with extra temporal read noise")
    noisy_pixel_read_noise_e: float = Field(default=25.0, ge=0, le=10000,
                                            description="extra read noise of a noisy pixel, rms e-, added in quadrature")
    readout_s: float = Field(default=0.02, ge=0)
    min_exposure_us: int = 40
    max_exposure_us: int = 26843000
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _defects_fit(self) -> CameraParams:
        if self.dead_pixels + self.noisy_pixels > self.width_px * self.height_px // 2:
            raise ValueError("dead_pixels + noisy_pixels must be at most half of the sensor's pixels")
        return self


class BeadFieldParams(_Model):
    """Fluorescent beads scattered at random (seeded) over the slide."""

    density_per_mm2: float = Field(default=400.0, gt=0)
    psf_sigma_um: float = Field(default=0.35, gt=0)
    photons_per_s_per_mw: float = Field(default=2.0e5, gt=0, description="per bead, all pixels together")
    brightness_spread: float = Field(default=0.2, ge=0, lt=1)
    background_photons_per_s_per_mw: float = Field(default=20.0, ge=0)


class UniformSlideParams(_Model):
    """An even fluorescent slide lit by an off-centre illumination profile with vignetting."""

    photons_per_s_per_mw: float = Field(default=2.0e4, gt=0, description="per pixel at the profile peak")
    centre_offset_x_frac: float = Field(default=0.08, description="of image width, + to the right")
    centre_offset_y_frac: float = Field(default=-0.05, description="of image height, + downwards")
    sigma_frac: float = Field(default=0.75, gt=0, description="Gaussian sigma, of the half diagonal")
    vignetting: float = Field(default=0.15, ge=0, lt=1, description="1 - v (r/r_corner)^2")


class BeadSlideParams(_Model):
    """Sub-resolution multi-colour beads in one plane (every bead emits under every line, like
    TetraSpeck), imaged through the widefield PSF (``simulators.psf_model``, ``simulators.bead_slide``)."""

    density_per_mm2: float = Field(default=5000.0, gt=0, le=1e6)
    bead_diameter_nm: float = Field(default=100.0, ge=0, le=5000)
    photons_per_s_per_mw: float = Field(default=2.0e5, gt=0, description="per bead and line, all pixels together, in focus")
    brightness_spread: float = Field(default=0.2, ge=0, lt=1)
    background_photons_per_s_per_mw: float = Field(default=20.0, ge=0, description="per unbinned pixel and line")
    focus_z_um: float = Field(default=2000.0, description="Z drive true position at which the beads are in focus (before chromatic shift and drift)")
    emission_nm: dict[str, float] = Field(default_factory=dict, description="per laser label; missing: the excitation + 30 nm")
    aggregate_fraction: float = Field(default=0.0, ge=0, le=0.5, description="fraction of beads that are clumps of 2-4 touching beads")
    operator_focus_error_um: float = Field(default=0.0, ge=-100, le=100,
                                           description="mounting: the operator leaves the Z drive this far from the bead plane")

    @model_validator(mode="after")
    def _emission_ok(self) -> BeadSlideParams:
        for label, nm in self.emission_nm.items():
            if not 200 < nm < 2000:
                raise ValueError(f"emission of {label!r}: {nm} nm is outside 200..2000 nm")
        return self


class OpticsParams(_Model):
    """The light path between sources, sample, meter and camera."""

    magnification: float = Field(default=20.0, gt=0)
    na: float | None = Field(default=None, gt=0, lt=1.7, description="objective NA; None: the station's objective, else 0.75")
    immersion_index: float | None = Field(default=None, ge=1.0, lt=2.0, description="None: the station's objective, else 1.0 (air)")
    spherical_aberration_waves: float = Field(default=0.0, ge=-2, le=2, description="primary spherical, rms waves (Noll Z(4,0))")
    chromatic_shift_um: dict[str, tuple[float, float, float]] = Field(
        default_factory=dict, description="per laser label: (x, y, z) shift of that line's bead image; missing: none"
    )
    focus_drift_um_per_h: float = Field(default=0.0, ge=-1000, le=1000, description="linear drift of the focal plane against the Z drive")
    focus_settle_um: float = Field(default=0.0, ge=-100, le=100, description="exponential settling of the focal plane: amplitude")
    focus_settle_tau_s: float = Field(default=1800.0, gt=0, description="exponential settling of the focal plane: time constant")

    @model_validator(mode="after")
    def _na_below_index(self) -> OpticsParams:
        if self.na is not None and self.immersion_index is not None and self.na >= self.immersion_index:
            raise ValueError(f"the NA ({self.na}) must be below the immersion index ({self.immersion_index})")
        return self
    transmission_to_meter: dict[str, float] = Field(
        default_factory=dict, description="per laser label; missing: 1.0"
    )
    transmission_to_sample: dict[str, float] = Field(
        default_factory=dict, description="per laser label; missing: 1.0"
    )


def utc_day_zero(value: Any) -> Any:
    """A date (midnight UTC) or a date-time (naive: UTC) as an aware UTC date-time; other values as given."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str) and len(value) == 10:
        try:
            d = date.fromisoformat(value)
        except ValueError:
            return value
        return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    return value


class WorldParams(_Model):
    """Everything a simulated station's physics needs, keyed by device label."""

    seed: int = 1
    day_zero: datetime | None = Field(default=None, description="UTC date-time the days of ageing and wear count from")
    time_scale: float | None = Field(default=None, gt=0, description="None: virtual (discrete-event) time; a number: real time that many times faster")
    optics: OpticsParams = OpticsParams()
    sample: Literal["bead_field", "uniform_slide", "bead_slide"] = "bead_field"
    bead_field: BeadFieldParams = BeadFieldParams()
    uniform_slide: UniformSlideParams = UniformSlideParams()
    bead_slide: BeadSlideParams = BeadSlideParams()
    lasers: dict[str, LaserParams] = Field(default_factory=dict)
    meters: dict[str, MeterParams] = Field(default_factory=dict)
    cameras: dict[str, CameraParams] = Field(default_factory=dict)
    xy_stages: dict[str, XYStageParams] = Field(default_factory=dict)
    z_drives: dict[str, ZDriveParams] = Field(default_factory=dict)

    @field_validator("day_zero", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return utc_day_zero(value)

    @model_validator(mode="after")
    def _days_need_a_day_zero(self) -> WorldParams:
        if self.day_zero is None:
            users = [n for n, p in self.lasers.items() if p.uses_days()]
            users += [f"{n}.{a}" for n, p in self.xy_stages.items() for a, ax in (("x", p.x), ("y", p.y)) if ax.uses_days()]
            users += [f"{n}.z" for n, p in self.z_drives.items() if p.z.uses_days()]
            if users:
                raise ValueError(f"{', '.join(users)} change with the date (ageing, steps, wear): give the simulation's day_zero")
        return self
