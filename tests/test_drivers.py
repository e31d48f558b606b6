"""The driver seam: a driver must say who it is and how it is made safe; the registry of driver
kinds refuses a kind whose entry does not match its name, and a name registered twice."""

from __future__ import annotations

from typing import Literal

import pytest
from pymmcore_plus.experimental.unicore import ShutterDevice

from devices.base import QCDriver
from devices.identity import DeviceIdentity
from harness.station.drivers import KINDS, _checked, driver_kind, role_drivers
from harness.station.drivers.base import DeviceEntryBase, DeviceHost, DriverKind
from harness.station.station_file import ROLE_DRIVERS

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


class _Shutter(ShutterDevice):
    def get_open(self) -> bool:
        return False

    def set_open(self, open: bool) -> None:
        pass


def test_a_driver_without_safe_state_or_identity_cannot_be_made() -> None:
    class NoSafeState(QCDriver, _Shutter):
        def identity(self) -> DeviceIdentity:
            return DeviceIdentity("laser", "Acme", "L1", "1")

    class NoIdentity(QCDriver, _Shutter):
        def safe_state(self) -> None:
            pass

    with pytest.raises(TypeError, match="safe_state"):
        NoSafeState()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="identity"):
        NoIdentity()  # type: ignore[abstract]

    class Complete(NoSafeState):
        def safe_state(self) -> None:
            pass

    assert Complete().identity().model == "L1"


class _AcmeEntry(DeviceEntryBase):
    driver: Literal["acme_laser"]


class _AcmeKind(DriverKind[_AcmeEntry]):
    name = "acme_laser"
    entry = _AcmeEntry
    roles = ("lasers",)

    def load(self, label: str, entry: _AcmeEntry, host: DeviceHost) -> None:
        pass


class _Misnamed(_AcmeKind):
    name = "acme_laser_2"


def test_the_registry_refuses_a_kind_that_does_not_match_its_entry_or_is_registered_twice() -> None:
    assert set(_checked((*KINDS, _AcmeKind()))) == {k.name for k in KINDS} | {"acme_laser"}
    with pytest.raises(TypeError, match=r"driver: Literal\['acme_laser_2'\]"):
        _checked((*KINDS, _Misnamed()))
    with pytest.raises(TypeError, match="registered twice"):
        _checked((*KINDS, _AcmeKind(), _AcmeKind()))


def test_roles_come_from_the_registry() -> None:
    assert ROLE_DRIVERS == {"lasers": ("coherent_obis",), "power_meter": ("thorlabs_pm100",), "camera": ("thorlabs_tsi",),
                            "xy_stage": ("simulated_xy_stage",), "z_drive": ("simulated_z_drive",)}
    assert role_drivers("lasers") == ("coherent_obis",)
    assert driver_kind("micromanager").roles is None and driver_kind("micromanager").adapter_device
    with pytest.raises(KeyError):
        driver_kind("acme_laser")
