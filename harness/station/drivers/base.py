"""The contract of a driver kind: what a station file's ``devices.<label>`` entry with
``driver: <name>`` is, how the device is loaded from it, and how it is simulated.

A driver kind (``DriverKind``) states:

- ``name``: the value of ``driver:`` in the station file;
- ``entry``: the pydantic model of its entry (a ``DeviceEntryBase`` whose ``driver`` field is
  ``Literal[name]``); the station file's ``devices`` union is made of the registered entries;
- ``roles``: the roles its devices can fill (``None``: any role, known once loaded: C++ devices);
- ``adapter_device``: a C++ Micro-Manager adapter device (these take real time: no virtual clock);
- ``world_table``: the ``simulators.params.WorldParams`` table its simulated devices go into
  (``"lasers"``, ``"meters"``, ``"cameras"``, ``"xy_stages"``, ``"z_drives"``; ``None``: never simulated);
- ``load(label, entry, host)``: put the device into the station's Micro-Manager core
  (called once per device, in station-file order, after the simulation is started); may raise
  ``devices.errors.DeviceError`` or ``RuntimeError``/``ValueError``/``OSError``/``KeyError``,
  which the station reports with the entry's file and line;
- ``start_simulator(label, entry, world)``: start what stands in for the hardware of a simulated
  device (an SCPI server, a camera on the simulated SDK, ...), called before any device is loaded;
  returns a ``FrontEnd`` (stopped when the station closes) or ``None``;
- ``identity(label, entry, device_kind)``: the identity of a device that is not a
  ``devices.base.QCDriver`` (``None``: read it from the device's Micro-Manager properties).

An entry says whether it is ``simulated`` and gives its simulated ground truth
(``simulation_truth()``: a ``simulators.params`` model, or ``None``).

Driver modules are imported whenever a station file is validated (``microscope-qc validate``,
which must not import pymmcore-plus or numpy: tests/test_cli.py); so a driver module imports only
pydantic, ``simulators.params`` and this module at its top, and its device classes and simulator
front ends inside ``load``/``start_simulator`` (each such import says so).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from devices.identity import DeviceIdentity
from harness.common.units import KeyMsInt

if TYPE_CHECKING:
    from pymmcore_plus.experimental.unicore import UniMMCore

    from simulators.world import World

SIMULATED = "simulated"

WorldTable = Literal["lasers", "meters", "cameras", "xy_stages", "z_drives"]


class EntryModel(BaseModel):
    """Base of every station-file model: unknown keys and NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


PropertyValue = bool | int | float | str


class DeviceEntryBase(EntryModel):
    description: str = ""
    properties: dict[str, PropertyValue] = Field(
        default_factory=dict, description="Micro-Manager properties set after initialization"
    )

    if TYPE_CHECKING:  # each driver's entry declares ``driver: Literal[name]`` (a field here would move it in the schema)
        driver: str

    @property
    def simulated(self) -> bool:
        """Whether a simulator stands in for the hardware."""
        return False

    def simulation_truth(self) -> BaseModel | None:
        """The simulated device's ground truth (a ``simulators.params`` model); None when it is real."""
        return None


class VisaEntry(DeviceEntryBase):
    """An instrument on a VISA resource (SCPI over serial, USB-TMC or a socket)."""

    resource: str = Field(description="VISA resource string, or 'simulated'")
    visa_library: str = Field(default="@py", description="'@py' (pyvisa-py) or '' (NI-VISA / system VISA)")
    timeout_ms: KeyMsInt = Field(default=2000, ge=10, le=600000)

    @property
    def simulated(self) -> bool:
        return self.resource == SIMULATED

    def visa_target(self, label: str, host: DeviceHost) -> tuple[str, str]:
        """(VISA resource, VISA library) the driver opens: the simulator's loopback socket with
        pyvisa-py for a simulated instrument (its front end must expose ``resource``), else the
        entry's own."""
        if not self.simulated:
            return self.resource, self.visa_library
        resource = getattr(host.front_end(label), "resource", None)
        if not isinstance(resource, str):
            raise RuntimeError(f"{label}: no simulated SCPI server is running for it")
        return resource, "@py"


class FrontEnd(Protocol):
    """What stands in for a simulated device's hardware; ``stop`` ends it (idempotent)."""

    def stop(self) -> None: ...


class DeviceHost(Protocol):
    """What a station offers a driver kind while loading a device."""

    @property
    def core(self) -> UniMMCore: ...

    def add_python_device(self, label: str, device: Any) -> None:
        """Load and initialize a Micro-Manager Python device under ``label`` (raises its
        initialize() error); a ``QCDriver`` is kept for identity and safe state."""

    def front_end(self, label: str) -> FrontEnd:
        """The front end ``start_simulator`` returned for a simulated device (KeyError if none)."""
        ...

    def line_limit_mw(self, label: str) -> float:
        """The station's laser power limit for this device."""
        ...


E = TypeVar("E", bound=DeviceEntryBase)


class DriverKind(ABC, Generic[E]):
    """One kind of device the station file can name (see the module docstring for the contract)."""

    name: ClassVar[str]
    entry: type[E]
    roles: ClassVar[tuple[str, ...] | None] = ()
    adapter_device: ClassVar[bool] = False
    world_table: ClassVar[WorldTable | None] = None

    @abstractmethod
    def load(self, label: str, entry: E, host: DeviceHost) -> None:
        """Load the device into ``host.core`` (its ``properties`` are set by the station afterwards)."""

    def start_simulator(self, label: str, entry: E, world: World) -> FrontEnd | None:
        """Start the stand-in for a simulated device's hardware (called only if ``entry.simulated``)."""
        return None

    def identity(self, label: str, entry: E, device_kind: str) -> DeviceIdentity | None:
        """The identity of a device that is not a ``QCDriver``; None: read from its properties."""
        return None
