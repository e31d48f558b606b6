"""The station file format (YAML): which devices a microscope has, which roles they fill, what no
device reports about the instrument, safety limits, and for simulated stations the world's ground
truth. Validated with pydantic; every mistake is reported with file, line and field."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from harness.common.optics import IMMERSION_INDEX, Optics
from harness.common.units import KeyMw, KeyNm, KeyUm
from harness.station.drivers import driver_kind, entry_models, role_drivers
from harness.station.drivers.base import SIMULATED as SIMULATED
from harness.station.drivers.base import DeviceEntryBase
from harness.station.drivers.base import EntryModel as _Model
from harness.station.drivers.base import PropertyValue as PropertyValue
from simulators.params import BeadFieldParams, BeadSlideParams, LaserParams, OpticsParams, UniformSlideParams, utc_day_zero

# a device entry: one of the registered drivers' entries, told apart by ``driver`` (harness.station.drivers)
if TYPE_CHECKING:
    DeviceEntry = DeviceEntryBase
else:
    DeviceEntry = Annotated[Union[entry_models()], Field(discriminator="driver")]  # noqa: UP007 (a Union of a tuple made at run time)


class LaserRole(_Model):
    """A laser line. Python drivers need only ``device``; C++ devices name their properties."""

    device: str
    wavelength_nm: KeyNm | None = Field(default=None, gt=0, description="required for C++ devices")
    setpoint_property: str = "PowerSetpoint-mW"
    setpoint_unit: Literal["mW", "W", "%", "V"] = "mW"
    nominal_power_mw: KeyMw | None = Field(default=None, gt=0, description="needed when setpoint_unit is %")
    volts_per_mw: float | None = Field(default=None, gt=0, description="analog modulation: needed when setpoint_unit is V")
    emission: Literal["shutter", "property"] = "shutter"
    shutter_device: str = Field(default="", description="shutter that gates this line (default: the laser device)")
    emission_property: str = ""
    emission_on: str = "1"
    emission_off: str = "0"
    power_property: str = Field(default="", description="the laser's own power reading, if any")
    max_power_mw: KeyMw | None = Field(default=None, gt=0, description="station safety limit for this line")

    @model_validator(mode="after")
    def _units_complete(self) -> LaserRole:
        if self.setpoint_unit == "%" and self.nominal_power_mw is None:
            raise ValueError("setpoint_unit % needs nominal_power_mw")
        if self.setpoint_unit == "V" and self.volts_per_mw is None:
            raise ValueError("setpoint_unit V needs volts_per_mw")
        if self.emission == "property" and not self.emission_property:
            raise ValueError("emission: property needs emission_property")
        return self


class PowerMeterRole(_Model):
    device: str
    power_property: str = "Power-W"
    power_unit: Literal["W", "mW", "uW"] = "W"
    wavelength_property: str = "Wavelength-nm"
    averaging_property: str = "Averaging"
    zero_property: str = "Zero"
    location: Literal[
        "SOURCE_EXIT", "FIBER_EXIT", "OBJECTIVE_BACKFOCAL", "OBJECTIVE_EXIT", "OBJECTIVE_FOCAL", "OTHER"
    ] = "OBJECTIVE_FOCAL"


class Roles(_Model):
    lasers: list[LaserRole] = Field(default_factory=list)
    power_meter: PowerMeterRole | None = None
    camera: str | None = None
    xy_stage: str | None = None
    z_drive: str | None = None


class Microscope(_Model):
    manufacturer: str = ""
    model: str = ""
    type: Literal["Upright", "Inverted", "Dissection", "Electrophysiology", "Other"] = "Other"
    serial: str = ""


class Objective(_Model):
    id: str
    manufacturer: str = ""
    model: str = ""
    nominal_magnification: float = Field(gt=0)
    lens_na: float = Field(gt=0, le=1.7)
    immersion: Literal["Oil", "Water", "WaterDipping", "Air", "Multi", "Glycerol", "Other"] = "Air"
    correction: str = "Other"
    working_distance_um: KeyUm | None = Field(default=None, ge=0)
    refractive_index: float | None = Field(default=None, ge=1.0, le=2.0,
                                           description="of the immersion medium; default from immersion (Air 1.0, Water 1.333, "
                                                       "Glycerol 1.474, Oil 1.518); needed for Multi and Other")

    @model_validator(mode="after")
    def _na_below_index(self) -> Objective:
        n = self.immersion_index
        if n is not None and self.lens_na >= n:
            raise ValueError(f"lens_na {self.lens_na:g} must be below the immersion's refractive index {n:g}")
        return self

    @property
    def immersion_index(self) -> float | None:
        return self.refractive_index if self.refractive_index is not None else IMMERSION_INDEX.get(self.immersion)


class Filter(_Model):
    id: str
    manufacturer: str = ""
    model: str = ""
    type: Literal["Dichroic", "LongPass", "ShortPass", "BandPass", "MultiPass", "NeutralDensity", "Tuneable", "Other"] = "Other"
    cut_in_nm: KeyNm | None = Field(default=None, gt=0)
    cut_out_nm: KeyNm | None = Field(default=None, gt=0)


class Instrument(_Model):
    """What no device reports: it goes into the OME Instrument of every file."""

    microscope: Microscope = Microscope()
    objectives: list[Objective] = Field(default_factory=list)
    objective_in_use: str = ""
    filters: list[Filter] = Field(default_factory=list)
    camera_adapter_magnification: float = Field(default=1.0, gt=0)
    pixel_size_um: KeyUm | None = Field(default=None, gt=0, description="override; default: camera pixel / magnification")

    @model_validator(mode="after")
    def _objective_known(self) -> Instrument:
        ids = [o.id for o in self.objectives]
        if self.objective_in_use and self.objective_in_use not in ids:
            raise ValueError(f"objective_in_use {self.objective_in_use!r} is not among objectives {ids}")
        return self

    def optics_problem(self) -> str:
        """Why ``optics()`` is None ("" when it is not)."""
        if self.optics() is not None:
            return ""
        if not self.objectives:
            return "the station file names no objective (instrument: objectives [{id, nominal_magnification, lens_na, immersion}], objective_in_use)"
        objective = next((o for o in self.objectives if o.id == self.objective_in_use), None)
        if objective is None:
            return f"instrument.objective_in_use is not set (objectives: {', '.join(o.id for o in self.objectives)})"
        return f"objective {objective.id!r} has {objective.immersion} immersion: give its refractive_index"

    def optics(self) -> Optics | None:
        """The objective in use as ``Optics`` (the only objective when none is named in use); None
        when there is none or its immersion index is not known."""
        objective = next((o for o in self.objectives if o.id == self.objective_in_use), None)
        if objective is None and len(self.objectives) == 1 and not self.objective_in_use:
            objective = self.objectives[0]
        if objective is None or objective.immersion_index is None:
            return None
        return Optics(objective.lens_na, objective.immersion_index)


class Safety(_Model):
    max_laser_power_mw: KeyMw = Field(default=500.0, gt=0, description="no set point above this, on any line")


class MicroManagerSetup(_Model):
    config: str | None = Field(default=None, description="a Micro-Manager .cfg file (relative to the station file)")
    adapter_paths: list[str] = Field(
        default_factory=list, description="adapter folders; 'mm-test-adapters' names the PyPI package's folder"
    )


MAX_TIME_SCALE = 10000.0  # real time sped up more than this is not a measurement any more: use clock: virtual


class Simulation(_Model):
    seed: int = Field(default=1, description="seeds the world's noise and sample; `run --seed N` overrides it for one run, "
                                             "and a scheduled run gets its own (derived from this one, the schedule, job, due time and attempt)")
    day_zero: datetime | None = Field(
        default=None,
        description="UTC date (or date-time) the days of the devices' change over time count from (a laser's ageing_from_day and "
                    "power_steps, an axis's wear_from_day); needed when a device changes with the date")
    clock: Literal["virtual", "real"] | None = Field(
        default=None,
        description="virtual: discrete-event station time (data depend on the files and the seed only; the default for a "
                    "station of simulators); real: real time, sped up by time_scale (the default, at x1, for a station "
                    "with Micro-Manager adapter devices, which take real time)",
    )
    time_scale: float | None = Field(default=None, gt=0, le=MAX_TIME_SCALE,
                                     description=f"clock: real only: station seconds per real second (default 1, at most {MAX_TIME_SCALE:g}: "
                                                 "beyond that a busy computer makes samples late by minutes of station time)")
    sample: Literal["bead_field", "uniform_slide", "bead_slide"] = "bead_field"
    optics: OpticsParams = OpticsParams()
    bead_field: BeadFieldParams = BeadFieldParams()
    uniform_slide: UniformSlideParams = UniformSlideParams()
    bead_slide: BeadSlideParams = BeadSlideParams()

    @field_validator("day_zero", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return utc_day_zero(value)


def _display_name(v: str) -> str:
    """A station name is for people ("Widefield 2 (room B.204)"): spaces and punctuation are kept;
    where it becomes part of a file or folder name it is slugged (runner.slug, station_lock)."""
    if not v.strip():
        raise ValueError("a station name must not be blank")
    if len(v) > 100:
        raise ValueError(f"a station name is at most 100 characters (this one has {len(v)})")
    if any(not ch.isprintable() for ch in v):
        raise ValueError("a station name must be one line of printable text (no control characters or line breaks)")
    return v


StationName = Annotated[str, AfterValidator(_display_name), Field(max_length=100)]


# which drivers can fill which role; a C++ device (``micromanager``, or a label from the .cfg) can
# fill any role as far as the station file can tell (its kind is known only once it is loaded)
ROLE_DRIVERS = {role: role_drivers(role) for role in ("lasers", "power_meter", "camera", "xy_stage", "z_drive")}


def role_devices(roles: Roles) -> list[tuple[str, tuple[str | int, ...], str]]:
    """(role, location in the file, device label) of every role that names a device."""
    out: list[tuple[str, tuple[str | int, ...], str]] = [("lasers", ("roles", "lasers", i, "device"), r.device) for i, r in enumerate(roles.lasers)]
    if roles.power_meter is not None:
        out.append(("power_meter", ("roles", "power_meter", "device"), roles.power_meter.device))
    for role in ("camera", "xy_stage", "z_drive"):
        label = getattr(roles, role)
        if label is not None:
            out.append((role, ("roles", role), label))
    return out


class StationFile(_Model):
    name: StationName = Field(description="display name (one line, at most 100 characters); slugged where it becomes a file name")
    description: str = ""
    micromanager: MicroManagerSetup = MicroManagerSetup()
    devices: dict[str, DeviceEntry] = Field(default_factory=dict)
    roles: Roles = Roles()
    instrument: Instrument = Instrument()
    safety: Safety = Safety()
    simulation: Simulation | None = None

    @model_validator(mode="after")
    def _consistent(self) -> StationFile:
        simulated = [label for label, d in self.devices.items() if d.simulated]
        if simulated and self.simulation is None:
            raise ValueError(f"devices {simulated} are simulated: add a 'simulation' section (seed, clock, ...)")
        return self

    @model_validator(mode="after")
    def _clock_fits_devices(self) -> StationFile:
        sim = self.simulation
        if sim is None:
            return self
        errors: list[InitErrorDetails] = []
        if sim.clock == "virtual" and sim.time_scale is not None:
            text = "time_scale applies to clock: real only (virtual time runs as fast as the computer allows)"
            errors.append(InitErrorDetails(type=PydanticCustomError("station_clock", text), loc=("simulation", "time_scale"), input=sim.time_scale))
        adapters = self.micromanager_devices()
        if sim.clock == "virtual" and adapters:
            text = (f"a virtual clock cannot drive Micro-Manager adapter devices ({', '.join(adapters)}): they take real time; "
                    "use clock: real (with a time_scale)")
            errors.append(InitErrorDetails(type=PydanticCustomError("station_clock", text), loc=("simulation", "clock"), input=sim.clock))
        objective = self.instrument.optics()
        na = sim.optics.na if sim.optics.na is not None else (objective.na if objective else None)
        n = sim.optics.immersion_index if sim.optics.immersion_index is not None else (objective.immersion_index if objective else None)
        if na is not None and n is not None and na >= n:
            field = "immersion_index" if sim.optics.immersion_index is not None else "na"
            text = (f"the simulated objective's NA {na:g} must be below its immersion index {n:g} "
                    f"(what optics does not give comes from the objective in use, {self.instrument.objective_in_use or 'the only one'})")
            errors.append(InitErrorDetails(type=PydanticCustomError("station_optics", text), loc=("simulation", "optics", field),
                                           input=getattr(sim.optics, field)))
        if sim.day_zero is None:
            for label, entry in self.devices.items():
                truth = entry.simulation_truth()
                uses = getattr(truth, "uses_days", None)
                axes = [getattr(truth, a) for a in ("x", "y", "z") if hasattr(truth, a)]
                if (uses is not None and uses()) or any(ax.uses_days() for ax in axes):
                    text = "this device changes with the date (ageing, power steps or wear): give simulation.day_zero, the UTC date its days count from"
                    errors.append(InitErrorDetails(type=PydanticCustomError("station_days", text), loc=("devices", label, "simulation"), input={}))
        if errors:
            raise ValidationError.from_exception_data("StationFile", errors)
        return self

    def micromanager_devices(self) -> list[str]:
        """Devices driven by Micro-Manager adapters: the .cfg's (named ``micromanager.config``) and the file's own."""
        own = [label for label, d in self.devices.items() if driver_kind(d.driver).adapter_device]
        return (["the devices of micromanager.config"] if self.micromanager.config else []) + own

    def clock_mode(self) -> tuple[str, float | None]:
        """The station clock a simulated station runs on: ("virtual", None) or ("real", time_scale)."""
        sim = self.simulation
        assert sim is not None
        if sim.clock == "virtual" or (sim.clock is None and sim.time_scale is None and not self.micromanager_devices()):
            return ("virtual", None)
        return ("real", sim.time_scale or 1.0)

    @model_validator(mode="after")
    def _roles_fit_devices(self) -> StationFile:
        """What the file alone tells about roles (every problem at once, each at its own line): a
        device of the station file fills only a role its driver can; no device fills two roles; a
        laser line is listed once. A label the file does not define must come from the .cfg
        (checked with the .cfg, see ``harness.run.preflight.station_file_problems``)."""
        errors: list[InitErrorDetails] = []

        def problem(loc: tuple[str | int, ...], text: str, value: object) -> None:
            errors.append(InitErrorDetails(type=PydanticCustomError("station_roles", text), loc=loc, input=value))

        first: dict[str, str] = {}
        for role, loc, label in role_devices(self.roles):
            entry = self.devices.get(label)
            if entry is not None and driver_kind(entry.driver).roles is not None and entry.driver not in ROLE_DRIVERS[role]:
                problem(loc, f"device {label!r} ({entry.driver}) cannot be the {role.replace('_', ' ').removesuffix('s')}; "
                             f"that needs a {' or '.join(ROLE_DRIVERS[role])} or a Micro-Manager (C++) device", label)
            if label not in self.devices and not self.micromanager.config:
                problem(loc, f"no device {label!r}: the station file defines {', '.join(self.devices) or 'none'} and names no micromanager.config", label)
            if label in first and first[label] != role:
                problem(loc, f"device {label!r} is already the {first[label].replace('_', ' ')}; one device fills one role", label)
            first.setdefault(label, role)
        seen: dict[tuple[str, str], int] = {}
        wavelengths: dict[float, int] = {}
        for i, line in enumerate(self.roles.lasers):
            entry = self.devices.get(line.device)
            python_driver = entry is not None and "lasers" in (driver_kind(entry.driver).roles or ())
            # a C++ laser combiner may give several lines, each with its own set point property
            key = (line.device, "" if python_driver else line.setpoint_property)
            if key in seen:
                problem(("roles", "lasers", i, "device"), f"laser {line.device!r} is already listed as roles.lasers[{seen[key]}]"
                        + ("" if python_driver else f" with the same setpoint_property {line.setpoint_property!r}"), line.device)
                continue
            seen[key] = i
            nm = line.wavelength_nm
            truth = entry.simulation_truth() if entry is not None else None
            if nm is None and isinstance(truth, LaserParams):
                nm = truth.wavelength_nm
            if nm is not None:
                if nm in wavelengths:
                    problem(("roles", "lasers", i), f"a second {nm:g} nm line (roles.lasers[{wavelengths[nm]}] is one already)", line.device)
                wavelengths.setdefault(nm, i)
        if errors:
            raise ValidationError.from_exception_data("StationFile", errors)
        return self

    def line_limit_mw(self, label: str) -> float:
        """The station's limit for a laser device: ``safety.max_laser_power_mw``, lowered by the
        line's own ``max_power_mw``."""
        limit = self.safety.max_laser_power_mw
        for role in self.roles.lasers:
            if role.device == label and role.max_power_mw is not None:
                limit = min(limit, role.max_power_mw)
        return limit
