"""Thorlabs PM100-family power meter (PM100D, PM100USB, PM400) over SCPI/pyvisa, as a Micro-Manager
generic device.

Properties: ``Power-W`` (a fresh reading each time it is read), ``Wavelength-nm``, ``Averaging``,
``AutoRange`` (``On``/``Off``), ``Range-W``, ``Zero`` (write ``Start``; reads ``Zeroing`` until done;
the device is busy meanwhile), identity properties. The error queue is read after every setting.
"""

from __future__ import annotations

from pymmcore_plus.experimental.unicore import GenericDevice

from .base import QCDriver, constant
from .errors import DeviceError, InstrumentError
from .identity import DeviceIdentity
from .scpi_link import ScpiLink, parse_float


class ThorlabsPM100(QCDriver, GenericDevice):
    """Thorlabs PM100-family optical power meter (SCPI)."""

    def __init__(self, resource: str = "", *, visa_library: str = "@py", timeout_ms: int = 2000, label: str = "PowerMeter") -> None:
        super().__init__()
        self._resource = resource
        self._visa_library = visa_library
        self._timeout_ms = timeout_ms
        self._name = label
        self.link: ScpiLink | None = None
        self._idn: list[str] = ["", "", "", ""]
        self._sensor: list[str] = []
        self._wl_limits = (0.0, 0.0)
        self.add_property("Resource", str, default=resource, pre_init=True)
        self.add_property("VisaLibrary", str, default=visa_library, pre_init=True)
        self.add_property("Timeout-ms", int, default=timeout_ms, pre_init=True)

    # --- lifetime --------------------------------------------------------------------------------
    def initialize(self) -> None:
        self._resource = self.get_property_value("Resource") or self._resource
        self._visa_library = self.get_property_value("VisaLibrary")
        self._timeout_ms = int(self.get_property_value("Timeout-ms"))
        self._name = self.get_label() or self._name
        self.link = ScpiLink(self._resource, self._name, visa_library=self._visa_library, timeout_ms=self._timeout_ms)
        self.link.open()
        self._write_checked("*CLS")
        self._idn = [s.strip() for s in self._query("*IDN?").split(",")] + ["", "", "", ""]
        if not self._idn[0].lower().startswith("thorlabs"):
            raise DeviceError(self._name, f"{self._resource} is not a Thorlabs meter (*IDN? said {','.join(self._idn[:4])!r})")
        self._sensor = [s.strip() for s in self._query("SYSTem:SENSor:IDN?").split(",")]
        lo = parse_float(self._name, self._query("SENSe:CORRection:WAVelength? MIN"), "wavelength min")
        hi = parse_float(self._name, self._query("SENSe:CORRection:WAVelength? MAX"), "wavelength max")
        self._wl_limits = (lo, hi)
        self._write_checked("SENSe:POWer:DC:UNIT W")
        self._write_checked("CONFigure:SCALar:POWer")
        self.add_property("Power-W", float, self.read_power_w)
        self.add_property("Wavelength-nm", float, self._get_wavelength, self.set_wavelength_nm)
        self.add_property("Averaging", int, lambda: int(parse_float(self._name, self._query("SENSe:AVERage:COUNt?"), "averaging")), self.set_averaging)
        self.add_property("AutoRange", str, self._get_auto, self._set_auto, allowed=["On", "Off"])
        self.add_property("Range-W", float, lambda: parse_float(self._name, self._query("SENSe:POWer:DC:RANGe:UPPer?"), "range"), self._set_range)
        self.add_property("Zero", str, self._zero_state, self._zero, allowed=["Idle", "Start", "Zeroing"])
        for key, value in self._identity_fields().items():
            self.add_property(key, str, constant(value))

    def shutdown(self) -> None:
        if self.link is not None:
            self.link.close()

    def busy(self) -> bool:
        return self._zero_state() == "Zeroing"

    # --- SCPI ------------------------------------------------------------------------------------
    def _require_link(self) -> ScpiLink:
        if self.link is None:
            raise DeviceError(self._name, "not initialized")
        return self.link

    def _query(self, command: str) -> str:
        return self._require_link().query(command)

    def check_errors(self) -> None:
        """Read the error queue; raise the first error found (the queue is emptied)."""
        first: InstrumentError | None = None
        for _ in range(32):
            reply = self._query("SYSTem:ERRor:NEXT?")
            code_text, _, message = reply.partition(",")
            code = int(parse_float(self._name, code_text, "error code"))
            if code == 0:
                break
            first = first or InstrumentError(self._name, code, message.strip().strip('"'))
        if first is not None:
            raise first

    def _write_checked(self, command: str) -> None:
        self._require_link().write(command)
        self.check_errors()

    # --- measurements and settings ----------------------------------------------------------------
    def read_power_w(self) -> float:
        return parse_float(self._name, self._query("MEASure:SCALar:POWer?"), "power")

    def _get_wavelength(self) -> float:
        return parse_float(self._name, self._query("SENSe:CORRection:WAVelength?"), "wavelength")

    def set_wavelength_nm(self, value: float) -> None:
        lo, hi = self._wl_limits
        if not lo <= float(value) <= hi:
            raise DeviceError(self._name, f"wavelength {value} nm outside the sensor's {lo:g}..{hi:g} nm")
        self._write_checked(f"SENSe:CORRection:WAVelength {float(value):g}")

    def set_averaging(self, count: int) -> None:
        if int(count) < 1:
            raise DeviceError(self._name, f"averaging must be >= 1, got {count}")
        self._write_checked(f"SENSe:AVERage:COUNt {int(count)}")

    def _get_auto(self) -> str:
        return "On" if self._query("SENSe:POWer:DC:RANGe:AUTO?").strip() in ("1", "ON") else "Off"

    def _set_auto(self, value: str) -> None:
        self._write_checked(f"SENSe:POWer:DC:RANGe:AUTO {1 if value == 'On' else 0}")

    def _set_range(self, watts: float) -> None:
        self._write_checked(f"SENSe:POWer:DC:RANGe:UPPer {float(watts):g}")

    def _zero_state(self) -> str:
        return "Zeroing" if self._query("SENSe:CORRection:COLLect:ZERO:STATe?").strip() == "1" else "Idle"

    def _zero(self, value: str) -> None:
        if value == "Start":
            self._write_checked("SENSe:CORRection:COLLect:ZERO:INITiate")

    # --- contract --------------------------------------------------------------------------------
    def _identity_fields(self) -> dict[str, str]:
        s = self._sensor + ["", "", ""]
        return {
            "Model": self._idn[1],
            "SerialNumber": self._idn[2],
            "Firmware": self._idn[3],
            "Sensor": s[0],
            "SensorSerial": s[1],
            "SensorCalibrationDate": s[2],
        }

    def identity(self) -> DeviceIdentity:
        f = self._identity_fields()
        return DeviceIdentity(
            kind="power_meter",
            vendor="Thorlabs",
            model=f["Model"],
            serial=f["SerialNumber"],
            firmware=f["Firmware"],
            driver=f"{__name__}.{type(self).__name__}",
            details={"sensor": f["Sensor"], "sensor_serial": f["SensorSerial"], "sensor_calibration": f["SensorCalibrationDate"], "resource": self._resource},
        )

    def safe_state(self) -> None:
        """A meter emits nothing: stop any pending measurement."""
        if self.link is not None and not self.link.lost:
            self.link.write("ABORt")
