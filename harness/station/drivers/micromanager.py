"""Driver kind ``micromanager``: a C++ Micro-Manager device loaded by adapter and device name (as a
.cfg would load it). Its kind (camera, stage, ...) is known only once loaded, so it may fill any role
as far as the station file can tell; it takes real time (no virtual clock)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.station.drivers.base import DeviceEntryBase, DeviceHost, DriverKind, PropertyValue


class MicroManagerEntry(DeviceEntryBase):
    """A C++ Micro-Manager device loaded by adapter and device name (instead of from the .cfg)."""

    driver: Literal["micromanager"]
    adapter: str
    device: str
    pre_init: dict[str, PropertyValue] = Field(default_factory=dict)


class MicroManagerKind(DriverKind[MicroManagerEntry]):
    name = "micromanager"
    entry = MicroManagerEntry
    roles = None
    adapter_device = True

    def load(self, label: str, entry: MicroManagerEntry, host: DeviceHost) -> None:
        core = host.core
        core.loadDevice(label, entry.adapter, entry.device)
        for name, value in entry.pre_init.items():
            core.setProperty(label, name, value)
        core.initializeDevice(label)


KIND = MicroManagerKind()
