"""Coherent OBIS laser over SCPI/pyvisa (serial at 115200 8N1 on hardware), as a Micro-Manager
shutter device: the shutter state *is* laser emission.

Properties: ``PowerSetpoint-mW``, ``PowerSetpoint-%`` (of nominal power), ``Power-mW`` (the laser's
own monitor), ``Wavelength-nm``, ``NominalPower-mW``, ``MinPower-mW``, ``MaxPower-mW``,
``SafetyLimit-mW``, ``DiodeHours``, ``Interlock``, identity. A set point outside the laser's limits
or above the station's safety limit is refused before anything is sent (``SafetyLimitError``).
Every command is answered by ``OK`` (handshake on) or ``ERR-<code>``.

Light does not start when emission is switched on if the head's CDRH delay is on (about 5 s): the
device is *busy* from ``set_open(True)`` until the laser's status word (``SYSTem:STATus?``) no
longer shows the CDRH-delay bit (0x10), so whoever waits for the device (``core.deviceBusy``) waits
for the light.
"""

from __future__ import annotations

import math

from pymmcore_plus.experimental.unicore import ShutterDevice

from .base import QCDriver, constant
from .errors import DeviceError, DeviceTimeout, GarbledReply, InstrumentError, SafetyLimitError
from .identity import DeviceIdentity
from .scpi_link import ScpiLink, parse_float

STATUS_CDRH_DELAY = 0x10  # SYSTem:STATus? bit: emission switched on, CDRH delay still running


class CoherentOBIS(QCDriver, ShutterDevice):
    """Coherent OBIS laser (emission as shutter)."""

    def __init__(
        self,
        resource: str = "",
        *,
        visa_library: str = "@py",
        timeout_ms: int = 2000,
        safety_limit_mw: float = math.inf,
        label: str = "Laser",
    ) -> None:
        super().__init__()
        self._resource = resource
        self._visa_library = visa_library
        self._timeout_ms = timeout_ms
        self._name = label
        self.link: ScpiLink | None = None
        self._awaiting_light = False
        self.info: dict[str, str] = {}
        self.wavelength_nm = 0.0
        self.nominal_mw = self.min_mw = self.max_mw = 0.0
        self.add_property("Resource", str, default=resource, pre_init=True)
        self.add_property("VisaLibrary", str, default=visa_library, pre_init=True)
        self.add_property("Timeout-ms", int, default=timeout_ms, pre_init=True)
        self.add_property("SafetyLimit-mW", float, default=float(safety_limit_mw) if math.isfinite(safety_limit_mw) else 1e9, pre_init=True)

    # --- lifetime --------------------------------------------------------------------------------
    def initialize(self) -> None:
        self._resource = self.get_property_value("Resource") or self._resource
        self._visa_library = self.get_property_value("VisaLibrary")
        self._timeout_ms = int(self.get_property_value("Timeout-ms"))
        self._name = self.get_label() or self._name
        self.link = ScpiLink(
            self._resource, self._name, visa_library=self._visa_library, timeout_ms=self._timeout_ms,
            read_termination="\r\n", write_termination="\r\n", baud_rate=115200,
        )
        self.link.open()
        self.link.write("SYSTem:COMMunicate:HANDshaking ON")
        try:
            self.link.read()  # OK, unless handshaking was off before this command
        except DeviceTimeout:
            pass
        idn = self._query("*IDN?")
        if "OBIS" not in idn.upper():
            raise DeviceError(self._name, f"{self._resource} is not an OBIS laser (*IDN? said {idn!r})")
        self.info = {
            "Model": self._query("SYSTem:INFormation:MODel?"),
            "SerialNumber": self._query("SYSTem:INFormation:SNUMber?"),
            "Firmware": self._query("SYSTem:INFormation:FVERsion?"),
        }
        self.wavelength_nm = self._number("SYSTem:INFormation:WAVelength?", "wavelength")
        self.nominal_mw = self._number("SYSTem:INFormation:POWer?", "nominal power") * 1e3
        self.min_mw = self._number("SOURce:POWer:LIMit:LOW?", "low limit") * 1e3
        self.max_mw = self._number("SOURce:POWer:LIMit:HIGH?", "high limit") * 1e3
        self._command("SOURce:AM:INTernal CWP")  # constant-power mode
        self._command("SOURce:AM:STATe OFF")
        p = self.add_property
        p("PowerSetpoint-mW", float, self.get_setpoint_mw, self.set_setpoint_mw)
        p("PowerSetpoint-%", float, lambda: 100.0 * self.get_setpoint_mw() / self.nominal_mw,
          lambda v: self.set_setpoint_mw(float(v) * self.nominal_mw / 100.0))
        p("Power-mW", float, lambda: self._number("SOURce:POWer:LEVel?", "power") * 1e3)
        p("Wavelength-nm", float, lambda: self.wavelength_nm)
        p("NominalPower-mW", float, lambda: self.nominal_mw)
        p("MinPower-mW", float, lambda: self.min_mw)
        p("MaxPower-mW", float, lambda: self.max_mw)
        p("DiodeHours", float, lambda: self._number("SYSTem:DIODe:HOURs?", "diode hours"))
        p("Interlock", str, lambda: "Closed" if self._query("SYSTem:LOCK?").upper() == "ON" else "Open")
        for key, value in self.info.items():
            p(key, str, constant(value))

    def shutdown(self) -> None:
        if self.link is not None:
            try:
                self.safe_state()
            except DeviceError:
                pass
            self.link.close()

    # --- protocol --------------------------------------------------------------------------------
    def _link(self) -> ScpiLink:
        if self.link is None:
            raise DeviceError(self._name, "not initialized")
        return self.link

    def _expect_ok(self, line: str, command: str) -> None:
        if line.startswith("ERR"):
            code = line[4:].strip()
            raise InstrumentError(self._name, int(code) if code.isdigit() else -1, f"{command!r} refused ({line})")
        if line != "OK":
            self._link().flush_input()
            raise GarbledReply(self._name, f"{command!r}: expected OK, got {line[:40]!r}")

    def _command(self, command: str) -> None:
        link = self._link()
        with link._lock:
            link.write(command)
            self._expect_ok(link.read(), command)

    def _query(self, command: str) -> str:
        link = self._link()
        with link._lock:
            link.write(command)
            value = link.read()
            if value.startswith("ERR"):
                self._expect_ok(value, command)
            self._expect_ok(link.read(), command)
            if any(not (32 <= ord(ch) < 127) for ch in value):
                raise GarbledReply(self._name, f"{command!r}: unreadable reply {value[:40]!r}")
            return value

    def _number(self, command: str, what: str) -> float:
        return parse_float(self._name, self._query(command), what)

    # --- controls --------------------------------------------------------------------------------
    def get_open(self) -> bool:
        return self._query("SOURce:AM:STATe?").upper() == "ON"

    def set_open(self, open: bool) -> None:
        self._command(f"SOURce:AM:STATe {'ON' if open else 'OFF'}")
        self._awaiting_light = open

    def status_word(self) -> int:
        """``SYSTem:STATus?``: the laser's status bits (hex)."""
        text = self._query("SYSTem:STATus?")
        try:
            return int(text.lower().removeprefix("0x"), 16)
        except ValueError:
            raise GarbledReply(self._name, f"status: expected a hex number, got {text[:40]!r}") from None

    def busy(self) -> bool:
        """Busy while emission is on but the CDRH delay has not let the light out yet."""
        if self._awaiting_light:
            self._awaiting_light = bool(self.status_word() & STATUS_CDRH_DELAY)
        return self._awaiting_light

    def get_setpoint_mw(self) -> float:
        return self._number("SOURce:POWer:LEVel:IMMediate:AMPLitude?", "set point") * 1e3

    def set_setpoint_mw(self, value: float) -> None:
        value = float(value)
        safety = float(self.get_property_value("SafetyLimit-mW"))
        if not self.min_mw <= value <= self.max_mw:
            raise SafetyLimitError(self._name, f"set point {value:g} mW is outside the laser's range {self.min_mw:g}..{self.max_mw:g} mW; nothing was sent")
        if value > safety:
            raise SafetyLimitError(self._name, f"set point {value:g} mW exceeds the station's safety limit of {safety:g} mW; nothing was sent")
        self._command(f"SOURce:POWer:LEVel:IMMediate:AMPLitude {value / 1e3:.6f}")

    # --- contract --------------------------------------------------------------------------------
    def identity(self) -> DeviceIdentity:
        return DeviceIdentity(
            kind="laser",
            vendor="Coherent",
            model=self.info.get("Model", ""),
            serial=self.info.get("SerialNumber", ""),
            firmware=self.info.get("Firmware", ""),
            driver=f"{__name__}.{type(self).__name__}",
            details={"wavelength_nm": f"{self.wavelength_nm:g}", "nominal_power_mw": f"{self.nominal_mw:g}", "resource": self._resource},
        )

    def safe_state(self) -> None:
        """Emission off."""
        self._command("SOURce:AM:STATe OFF")
        self._awaiting_light = False
