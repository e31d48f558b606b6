"""Driver kind ``thorlabs_tsi``: a Thorlabs scientific camera over the TSI SDK
(``devices.thorlabs_tsi``); simulated by pointing the same driver at the SDK stand-in
``simulators.tsi_sdk``, with the world's camera attached under its serial. Fills the ``camera`` role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from harness.common.units import KeyMsInt
from harness.station.drivers.base import SIMULATED, DeviceEntryBase, DeviceHost, DriverKind, FrontEnd
from simulators.params import CameraParams

if TYPE_CHECKING:
    from simulators.world import World

SIM_SDK_PACKAGE = "simulators.tsi_sdk"


class TsiCameraEntry(DeviceEntryBase):
    driver: Literal["thorlabs_tsi"]
    sdk: str = Field(default="thorlabs_tsi_sdk", description="SDK package, or 'simulated'")
    serial: str = Field(default="", description="camera serial number; empty: the first camera found")
    frame_timeout_ms: KeyMsInt = Field(default=2000, ge=10)
    simulation: CameraParams | None = None

    @property
    def simulated(self) -> bool:
        return self.sdk == SIMULATED

    def simulation_truth(self) -> CameraParams | None:
        return (self.simulation or CameraParams()) if self.simulated else None


@dataclass
class _AttachedCamera:
    """A simulated camera plugged into the SDK stand-in; ``stop`` unplugs it."""

    serial: str

    def stop(self) -> None:
        # deferred with the rest of the simulator (see drivers.base)
        from simulators import tsi_sdk

        tsi_sdk.detach_cameras([self.serial])


class ThorlabsTsiKind(DriverKind[TsiCameraEntry]):
    name = "thorlabs_tsi"
    entry = TsiCameraEntry
    roles = ("camera",)
    world_table = "cameras"

    def load(self, label: str, entry: TsiCameraEntry, host: DeviceHost) -> None:
        # deferred: validating a station file must not import pymmcore-plus (see drivers.base)
        from devices.thorlabs_tsi import ThorlabsTSICamera

        sdk = SIM_SDK_PACKAGE if entry.simulated else entry.sdk
        serial = entry.serial or (entry.simulation.serial if entry.simulated and entry.simulation else "")
        host.add_python_device(label, ThorlabsTSICamera(serial, sdk=sdk, frame_timeout_ms=entry.frame_timeout_ms, label=label))

    def start_simulator(self, label: str, entry: TsiCameraEntry, world: World) -> FrontEnd:
        # deferred: the SDK stand-in imports numpy (see drivers.base)
        from simulators import tsi_sdk

        camera = world.cameras[label]
        tsi_sdk.attach_cameras({camera.p.serial: camera})
        return _AttachedCamera(camera.p.serial)


KIND = ThorlabsTsiKind()
