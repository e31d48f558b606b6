"""Driver kinds ``simulated_xy_stage`` and ``simulated_z_drive``: Micro-Manager Python stage devices
(``simulators.mm_stage``) on the world's stage models; always simulated. Fill the ``xy_stage`` and
``z_drive`` roles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from devices.identity import DeviceIdentity
from harness.station.drivers.base import DeviceEntryBase, DeviceHost, DriverKind, FrontEnd
from simulators.params import XYStageParams, ZDriveParams

if TYPE_CHECKING:
    from simulators.stage import StageModel
    from simulators.world import World


class SimulatedXYEntry(DeviceEntryBase):
    driver: Literal["simulated_xy_stage"]
    simulation: XYStageParams = XYStageParams()

    @property
    def simulated(self) -> bool:
        return True

    def simulation_truth(self) -> XYStageParams:
        return self.simulation


class SimulatedZEntry(DeviceEntryBase):
    driver: Literal["simulated_z_drive"]
    simulation: ZDriveParams = ZDriveParams()

    @property
    def simulated(self) -> bool:
        return True

    def simulation_truth(self) -> ZDriveParams:
        return self.simulation


@dataclass
class _StageFrontEnd:
    """The world's stage model that the Micro-Manager device drives (nothing to stop)."""

    model: StageModel

    def stop(self) -> None:
        pass


def _stage_model(host: DeviceHost, label: str) -> StageModel:
    front = host.front_end(label)
    assert isinstance(front, _StageFrontEnd)
    return front.model


def _identity(entry: SimulatedXYEntry | SimulatedZEntry, device_kind: str) -> DeviceIdentity:
    p = entry.simulation
    return DeviceIdentity(kind=device_kind, vendor="Simulated", model=p.model, serial=p.serial, firmware="",
                          driver=f"simulators.mm_stage ({entry.driver})")


class SimulatedXYStageKind(DriverKind[SimulatedXYEntry]):
    name = "simulated_xy_stage"
    entry = SimulatedXYEntry
    roles = ("xy_stage",)
    world_table = "xy_stages"

    def load(self, label: str, entry: SimulatedXYEntry, host: DeviceHost) -> None:
        # deferred: validating a station file must not import pymmcore-plus (see drivers.base)
        from simulators.mm_stage import SimulatedXYStage

        host.add_python_device(label, SimulatedXYStage(_stage_model(host, label)))

    def start_simulator(self, label: str, entry: SimulatedXYEntry, world: World) -> FrontEnd:
        return _StageFrontEnd(world.xy_stages[label])

    def identity(self, label: str, entry: SimulatedXYEntry, device_kind: str) -> DeviceIdentity:
        return _identity(entry, device_kind)


class SimulatedZDriveKind(DriverKind[SimulatedZEntry]):
    name = "simulated_z_drive"
    entry = SimulatedZEntry
    roles = ("z_drive",)
    world_table = "z_drives"

    def load(self, label: str, entry: SimulatedZEntry, host: DeviceHost) -> None:
        # deferred: validating a station file must not import pymmcore-plus (see drivers.base)
        from simulators.mm_stage import SimulatedZDrive

        host.add_python_device(label, SimulatedZDrive(_stage_model(host, label)))

    def start_simulator(self, label: str, entry: SimulatedZEntry, world: World) -> FrontEnd:
        return _StageFrontEnd(world.z_drives[label])

    def identity(self, label: str, entry: SimulatedZEntry, device_kind: str) -> DeviceIdentity:
        return _identity(entry, device_kind)


XY_KIND = SimulatedXYStageKind()
Z_KIND = SimulatedZDriveKind()
