"""Driver kind ``coherent_obis``: a Coherent OBIS laser over SCPI (``devices.coherent_obis``); simulated
by an OBIS SCPI server on loopback (``simulators.obis_scpi``). Fills the ``lasers`` role."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import model_validator

from harness.station.drivers.base import DeviceHost, DriverKind, FrontEnd, VisaEntry
from simulators.params import LaserParams

if TYPE_CHECKING:
    from simulators.world import World


class LaserEntry(VisaEntry):
    driver: Literal["coherent_obis"]
    simulation: LaserParams | None = None

    @model_validator(mode="after")
    def _needs_truth(self) -> LaserEntry:
        if self.simulated and self.simulation is None:
            raise ValueError("a simulated laser needs a 'simulation' block (wavelength_nm, nominal_power_mw, ...)")
        return self

    def simulation_truth(self) -> LaserParams | None:
        return self.simulation if self.simulated else None


class CoherentObisKind(DriverKind[LaserEntry]):
    name = "coherent_obis"
    entry = LaserEntry
    roles = ("lasers",)
    world_table = "lasers"

    def load(self, label: str, entry: LaserEntry, host: DeviceHost) -> None:
        # deferred: validating a station file must not import pymmcore-plus (see drivers.base)
        from devices.coherent_obis import CoherentOBIS

        resource, library = entry.visa_target(label, host)
        host.add_python_device(label, CoherentOBIS(resource, visa_library=library, timeout_ms=entry.timeout_ms,
                                                   safety_limit_mw=host.line_limit_mw(label), label=label))

    def start_simulator(self, label: str, entry: LaserEntry, world: World) -> FrontEnd:
        # deferred: the SCPI server and laser model import numpy (see drivers.base)
        from simulators.obis_scpi import ObisScpi
        from simulators.scpi_server import ScpiServer

        laser = world.lasers[label]
        return ScpiServer(ObisScpi(laser), laser.faults, label, world.clock, laser.p.command_latency_s).start()


KIND = CoherentObisKind()
