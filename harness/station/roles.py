"""Roles a protocol talks to (laser line, power meter, camera, XY stage, Z drive), bound to a
station's devices. Everything goes through Micro-Manager core, so a role works the same whether a
Python driver or a C++ adapter fills it; C++ devices name their properties in the station file.
Device failures surface as ``devices.errors`` types, whatever layer raised them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from pymmcore_plus.experimental.unicore import UniMMCore

from devices.errors import DeviceError, DeviceTimeout, SafetyLimitError
from harness.station.station_file import LaserRole, PowerMeterRole

T = TypeVar("T")
_UNIT_TO_MW = {"mW": 1.0, "W": 1e3}
_UNIT_TO_W = {"W": 1.0, "mW": 1e-3, "uW": 1e-6}


def device_call(label: str, fn: Callable[[], T]) -> T:
    """Run a core call; any failure becomes a ``DeviceError`` naming the device."""
    try:
        return fn()
    except DeviceError:
        raise
    except TimeoutError as exc:
        raise DeviceTimeout(label, str(exc)) from None
    except (RuntimeError, ValueError, OSError, KeyError) as exc:
        raise DeviceError(label, str(exc).strip() or type(exc).__name__) from None


class LaserLine:
    def __init__(self, core: UniMMCore, role: LaserRole, wavelength_nm: float, max_power_mw: float,
                 emission_timeout_s: float = 30.0) -> None:
        self.core = core
        self.emission_timeout_s = emission_timeout_s
        self.role = role
        self.label = role.device
        self.wavelength_nm = wavelength_nm
        self.max_power_mw = max_power_mw
        self.name = f"{wavelength_nm:g}"
        self.shutter = role.shutter_device or role.device

    def _to_device_units(self, mw: float) -> float:
        r = self.role
        if r.setpoint_unit == "%":
            return 100.0 * mw / r.nominal_power_mw  # type: ignore[operator]
        if r.setpoint_unit == "V":
            return mw * r.volts_per_mw  # type: ignore[operator]
        return mw / _UNIT_TO_MW[r.setpoint_unit]

    def _from_device_units(self, value: float) -> float:
        r = self.role
        if r.setpoint_unit == "%":
            return value * r.nominal_power_mw / 100.0  # type: ignore[operator]
        if r.setpoint_unit == "V":
            return value / r.volts_per_mw  # type: ignore[operator]
        return value * _UNIT_TO_MW[r.setpoint_unit]

    def set_setpoint_mw(self, mw: float) -> None:
        if mw > self.max_power_mw:
            raise SafetyLimitError(self.label, f"set point {mw:g} mW exceeds the station's safety limit of {self.max_power_mw:g} mW "
                                               "for this line; nothing was sent")
        value = self._to_device_units(mw)
        device_call(self.label, lambda: self.core.setProperty(self.label, self.role.setpoint_property, value))

    def setpoint_mw(self) -> float:
        value = device_call(self.label, lambda: self.core.getProperty(self.label, self.role.setpoint_property))
        return self._from_device_units(float(value))

    def set_emission(self, on: bool) -> None:
        """Switch emission and return when the device is idle: a laser whose light starts late (OBIS
        CDRH delay, an adapter's shutter delay) reports itself busy until the light is there."""
        r = self.role
        if r.emission == "shutter":
            device_call(self.shutter, lambda: self.core.setShutterOpen(self.shutter, on))
            wait_until_idle(self.core, self.shutter, self.emission_timeout_s)
        else:
            device_call(self.label, lambda: self.core.setProperty(self.label, r.emission_property, r.emission_on if on else r.emission_off))
            wait_until_idle(self.core, self.label, self.emission_timeout_s)

    def emission(self) -> bool:
        r = self.role
        if r.emission == "shutter":
            return bool(device_call(self.shutter, lambda: self.core.getShutterOpen(self.shutter)))
        return str(device_call(self.label, lambda: self.core.getProperty(self.label, r.emission_property))) == r.emission_on

    def nominal_mw(self) -> float | None:
        """Nominal power: from the station file, else from the driver (``NominalPower-mW``)."""
        if self.role.nominal_power_mw is not None:
            return self.role.nominal_power_mw
        if self.core.hasProperty(self.label, "NominalPower-mW"):
            return float(device_call(self.label, lambda: self.core.getProperty(self.label, "NominalPower-mW")))
        return None

    def monitor_power_mw(self) -> float | None:
        prop = self.role.power_property or ("Power-mW" if self.core.hasProperty(self.label, "Power-mW") else "")
        if not prop:
            return None
        return float(device_call(self.label, lambda: self.core.getProperty(self.label, prop)))


class PowerMeter:
    def __init__(self, core: UniMMCore, role: PowerMeterRole) -> None:
        self.core = core
        self.role = role
        self.label = role.device
        self.location = role.location

    def read_w(self) -> float:
        r = self.role
        value = device_call(self.label, lambda: self.core.getProperty(self.label, r.power_property))
        return float(value) * _UNIT_TO_W[r.power_unit]

    def set_wavelength_nm(self, nm: float) -> None:
        device_call(self.label, lambda: self.core.setProperty(self.label, self.role.wavelength_property, nm))

    def wavelength_nm(self) -> float:
        return float(device_call(self.label, lambda: self.core.getProperty(self.label, self.role.wavelength_property)))

    def set_averaging(self, count: int) -> None:
        device_call(self.label, lambda: self.core.setProperty(self.label, self.role.averaging_property, int(count)))

    def zero(self, timeout_s: float = 60.0) -> None:
        """Zero the meter (no light on the sensor!) and wait until it is done."""
        device_call(self.label, lambda: self.core.setProperty(self.label, self.role.zero_property, "Start"))
        wait_until_idle(self.core, self.label, timeout_s)


def wait_until_idle(core: UniMMCore, label: str, timeout_s: float) -> None:
    """Wait for a device to stop being busy; ``DeviceTimeout`` after ``timeout_s`` real seconds."""
    deadline = time.monotonic() + timeout_s
    while device_call(label, lambda: core.deviceBusy(label)):
        if time.monotonic() > deadline:
            raise DeviceTimeout(label, f"still busy after {timeout_s:g} s")
        time.sleep(0.002)


class Camera:
    def __init__(self, core: UniMMCore, label: str, pixel_size_um: float) -> None:
        self.core = core
        self.label = label
        self.pixel_size_um = pixel_size_um

    def _select(self) -> None:
        # UniMMCore keeps a Python camera current unless cleared first (REFERENCE.md section 1)
        if self.core.getCameraDevice() != self.label:
            self.core.setCameraDevice("")
            self.core.setCameraDevice(self.label)

    def set_exposure_ms(self, ms: float) -> None:
        device_call(self.label, lambda: self.core.setExposure(self.label, ms))

    def exposure_ms(self) -> float:
        return float(device_call(self.label, lambda: self.core.getExposure(self.label)))

    def snap(self) -> np.ndarray:
        def go() -> np.ndarray:
            self._select()
            self.core.snapImage()
            return np.array(self.core.getImage(), copy=True)

        return device_call(self.label, go)

    def bit_depth(self) -> int:
        return int(device_call(self.label, lambda: self.core.getImageBitDepth()))


class XYStage:
    def __init__(self, core: UniMMCore, label: str, timeout_s: float) -> None:
        self.core = core
        self.label = label
        self.timeout_s = timeout_s

    def move_to(self, x_um: float, y_um: float) -> None:
        device_call(self.label, lambda: self.core.setXYPosition(self.label, x_um, y_um))
        wait_until_idle(self.core, self.label, self.timeout_s)

    def position_um(self) -> tuple[float, float]:
        x, y = device_call(self.label, lambda: self.core.getXYPosition(self.label))
        return (float(x) + 0.0, float(y) + 0.0)  # no '-0.000'


class ZDrive:
    def __init__(self, core: UniMMCore, label: str, timeout_s: float, travel_um: tuple[float, float] | None = None) -> None:
        self.core = core
        self.label = label
        self.timeout_s = timeout_s
        self.travel_um = travel_um  # (lowest, highest) position the drive accepts, where the station knows it

    def move_to(self, z_um: float) -> None:
        device_call(self.label, lambda: self.core.setPosition(self.label, z_um))
        wait_until_idle(self.core, self.label, self.timeout_s)

    def position_um(self) -> float:
        return float(device_call(self.label, lambda: self.core.getPosition(self.label))) + 0.0


def property_or(core: UniMMCore, label: str, names: tuple[str, ...], default: str = "") -> str:
    """First of ``names`` the device has, as text (for identities of C++ devices)."""
    for name in names:
        try:
            if core.hasProperty(label, name):
                return str(core.getProperty(label, name))
        except Exception:  # an unreadable property must not stop the listing
            continue
    return default


