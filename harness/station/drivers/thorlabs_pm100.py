"""Driver kind ``thorlabs_pm100``: a Thorlabs PM100 power meter console over SCPI
(``devices.thorlabs_pm100``); simulated by a PM100 SCPI server on loopback (``simulators.pm100_scpi``).
Fills the ``power_meter`` role."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from harness.station.drivers.base import DeviceHost, DriverKind, FrontEnd, VisaEntry
from simulators.params import MeterParams

if TYPE_CHECKING:
    from simulators.world import World


class PowerMeterEntry(VisaEntry):
    driver: Literal["thorlabs_pm100"]
    simulation: MeterParams | None = None

    def simulation_truth(self) -> MeterParams | None:
        return (self.simulation or MeterParams()) if self.simulated else None


class ThorlabsPM100Kind(DriverKind[PowerMeterEntry]):
    name = "thorlabs_pm100"
    entry = PowerMeterEntry
    roles = ("power_meter",)
    world_table = "meters"

    def load(self, label: str, entry: PowerMeterEntry, host: DeviceHost) -> None:
        # deferred: validating a station file must not import pymmcore-plus (see drivers.base)
        from devices.thorlabs_pm100 import ThorlabsPM100

        resource, library = entry.visa_target(label, host)
        host.add_python_device(label, ThorlabsPM100(resource, visa_library=library, timeout_ms=entry.timeout_ms, label=label))

    def start_simulator(self, label: str, entry: PowerMeterEntry, world: World) -> FrontEnd:
        # deferred: the SCPI server and meter model import numpy (see drivers.base)
        from simulators.pm100_scpi import PM100Scpi
        from simulators.scpi_server import ScpiServer

        meter = world.meters[label]
        return ScpiServer(PM100Scpi(meter), meter.faults, label, world.clock, meter.p.command_latency_s).start()


KIND = ThorlabsPM100Kind()
