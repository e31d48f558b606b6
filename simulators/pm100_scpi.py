"""The Thorlabs PM100D command set, served over the simulated meter physics.

Besides power (``MEASure?``, ``CONFigure``/``INITiate``/``FETCh?``, ``READ?``) the console measures
photocurrent (``CURRent``: reading x responsivity at the set wavelength), power density (``PDENsity``:
W/cm^2 over a circular beam of ``SENSe:CORRection:BEAMdiameter`` mm) and the sensor head temperature
(``TEMPerature``: an error if the sensor has no thermistor); ``CONFigure?`` names what is configured
(``POW``, ``CURR``, ``POWDENS``, ``TEMP``).
It has the IEEE 488.2 status system (``simulators.scpi_status``) with Thorlabs' status byte layout
(AUX 0x01, MEAS 0x02, EAV 0x04, QUES 0x08, MAV 0x10, ESB 0x20, MSS 0x40, OPER 0x80) and the
register groups OPERation (zeroing 0x80, sensor connected 0x100, data ready to fetch 0x200),
QUEStionable (power 0x08 / current 0x02 over range), MEASurement and AUXiliary (nothing set).
``*PSC`` is not a PM100 command (Thorlabs' PM100/PM400/PM100D2 command lists do not have it): -113;
``RANGe:AUTO`` takes a boolean only (no SCPI ``ONCE``): ``ONCE`` is -224, as on the console.
``CORRection:POWer?`` takes MIN|MAX|DEF or a wavelength in nm (the responsivity curve stored in the
sensor's EEPROM); setting it is for adapters without an EEPROM only: -221 here.
"""

from __future__ import annotations

import math

from .meter import RANGES_W, PowerMeterModel, responsivity_a_per_w
from .scpi import ILLEGAL_VALUE, ScpiError, ScpiInstrument, one_param, parse_bool, parse_number
from .scpi_status import RegisterGroup, StatusSystem

HARDWARE_MISSING = (-241, "Hardware missing")
SETTINGS_CONFLICT = (-221, "Settings conflict")
BEAM_MIN_MM = 0.01
# status bits (Thorlabs TLPM: TLPM_STATBIT_OPER_*, TLPM_STATBIT_QUES_*)
OPER_ZEROING, OPER_SENSOR, OPER_DATA_READY = 0x0080, 0x0100, 0x0200
QUES_CURRENT, QUES_POWER = 0x0002, 0x0008


# what CONFigure? names each measurement (Thorlabs PM400 command reference: POW, CURR, POWDENS, TEMP, ...)
_CONF_NAMES = {"POW": "POW", "CURR": "CURR", "PDEN": "POWDENS", "TEMP": "TEMP"}


def _num(value: float) -> str:
    return f"{value:.9E}"


def _special(args: list[str], values: dict[str, float]) -> float | None:
    """``? MIN|MAX|DEF`` query parameters; None when there is none."""
    if not args:
        return None
    word = one_param(args).upper()
    for key, value in values.items():
        if word.startswith(key):
            return value
    raise ScpiError(*ILLEGAL_VALUE)


class PM100Scpi(ScpiInstrument):
    terminator = "\n"

    def __init__(self, meter: PowerMeterModel) -> None:
        super().__init__()
        self.meter = meter
        m, p = meter, meter.p
        self.unit = "W"
        self.configured = "POW"
        self.pending: float | None = None
        self.reference_w = 0.0
        self.delta_mode = False
        self.line_frequency_hz = p.line_frequency_hz
        self.over_range = 0
        self.status = StatusSystem(self, [
            RegisterGroup("AUXiliary", 0x01, lambda: 0),
            RegisterGroup("MEASurement", 0x02, lambda: 0),
            RegisterGroup("QUEStionable", 0x08, lambda: self.over_range),
            RegisterGroup("OPERation", 0x80, lambda: self._operation(m.zero_in_progress()),
                          poll_condition=lambda: self._operation(m.zeroing())),
        ]).install()
        self.add("*IDN", query=lambda a: f"Thorlabs,{p.model},{p.serial},{p.firmware}")
        self.add("*RST", set=lambda a: self.reset())
        self.add("*TST", query=lambda a: "0")
        self.add("SYSTem:VERSion", query=lambda a: "1999.0")
        self.add("SYSTem:LFRequency", set=self._set_line_frequency, query=lambda a: str(self.line_frequency_hz))
        self.add("SYSTem:SENSor:IDN", query=lambda a: self._sensor_idn())
        self.add("CALibration:STRing", query=lambda a: f'"{p.sensor_calibration_date}"')
        self.add("[SENSe#]:CORRection:WAVelength", set=self._set_wavelength, query=self._get_wavelength)
        self.add("[SENSe#]:CORRection:BEAMdiameter", set=self._set_beam, query=self._get_beam)
        self.add("[SENSe#]:CORRection:POWer[:PDIode][:RESPonse]", set=self._set_response, query=self._get_response)
        self.add("[SENSe#]:POWer[:DC]:UNIT", set=self._set_unit, query=lambda a: self.unit)
        self.add("[SENSe#]:POWer[:DC]:RANGe:AUTO", set=self._set_auto, query=lambda a: "1" if m.auto_range else "0")
        self.add("[SENSe#]:POWer[:DC]:RANGe[:UPPer]", set=self._set_range, query=self._get_range)
        self.add("[SENSe#]:POWer[:DC]:REFerence:STATe", set=self._set_delta, query=lambda a: "1" if self.delta_mode else "0")
        self.add("[SENSe#]:POWer[:DC]:REFerence", set=self._set_reference, query=self._get_reference)
        self.add("[SENSe#]:AVERage[:COUNt]", set=self._set_avg, query=lambda a: str(m.averaging))
        self.add("[SENSe#]:CORRection:COLLect:ZERO[:INITiate]", set=lambda a: m.start_zero())
        self.add("[SENSe#]:CORRection:COLLect:ZERO:STATe", query=lambda a: "1" if m.zeroing() else "0")
        self.add("[SENSe#]:CORRection:COLLect:ZERO:MAGNitude", query=lambda a: _num(m.zero_offset_w))
        self.add("MEASure[:SCALar][:POWer]", query=lambda a: self._measure("POW"))
        self.add("MEASure[:SCALar]:CURRent[:DC]", query=lambda a: self._measure("CURR"))
        self.add("MEASure[:SCALar]:PDENsity", query=lambda a: self._measure("PDEN"))
        self.add("MEASure[:SCALar]:TEMPerature", query=lambda a: self._measure("TEMP"))
        self.add("CONFigure[:SCALar][:POWer]", set=lambda a: self._configure("POW"))
        self.add("CONFigure[:SCALar]:CURRent[:DC]", set=lambda a: self._configure("CURR"))
        self.add("CONFigure[:SCALar]:PDENsity", set=lambda a: self._configure("PDEN"))
        self.add("CONFigure[:SCALar]:TEMPerature", set=lambda a: self._configure("TEMP"))
        self.add("CONFigure", query=lambda a: _CONF_NAMES[self.configured])
        self.add("INITiate[:IMMediate]", set=lambda a: self._initiate())
        self.add("ABORt", set=lambda a: setattr(self, "pending", None))
        self.add("FETCh[:SCALar][:POWer]", query=lambda a: self._fetch())
        self.add("READ", query=lambda a: self._read())

    # --- hooks of the engine ------------------------------------------------------------------------
    def on_error(self, code: int) -> None:
        self.status.on_error(code)

    def before_command(self) -> None:
        self.status.before_command()

    def clear_status(self) -> None:
        super().clear_status()
        self.status.clear()

    def _operation(self, zeroing: bool) -> int:
        bits = OPER_SENSOR
        if zeroing:
            bits |= OPER_ZEROING
        if self.pending is not None:
            bits |= OPER_DATA_READY
        return bits

    # --- settings -------------------------------------------------------------------------------------
    def reset(self) -> None:
        m = self.meter
        m.averaging = 1
        m.auto_range = True
        m.wavelength_nm = m.p.default_wavelength_nm
        m.beam_diameter_mm = m.p.sensor_aperture_mm
        self.unit = "W"
        self.configured = "POW"
        self.pending = None
        self.reference_w = 0.0
        self.delta_mode = False

    def _sensor_idn(self) -> str:
        p = self.meter.p
        # type 1 = photodiode; subtype 0x12 = single photodiode with temperature sensor, 0x02 without;
        # flags: power sensor 0x001, wavelength settable 0x020, temperature sensor 0x100
        subtype, flags = (0x12, 0x121) if p.sensor_thermistor else (0x02, 0x021)
        return f"{p.sensor_model},{p.sensor_serial},{p.sensor_calibration_date},1,{subtype},{flags}"

    def _set_line_frequency(self, args: list[str]) -> None:
        value = parse_number(args)
        if value not in (50.0, 60.0):
            raise ScpiError(*ILLEGAL_VALUE)
        self.line_frequency_hz = 50 if value == 50.0 else 60

    def _set_wavelength(self, args: list[str]) -> None:
        p = self.meter.p
        self.meter.wavelength_nm = parse_number(args, p.wavelength_min_nm, p.wavelength_max_nm)

    def _get_wavelength(self, args: list[str]) -> str:
        p = self.meter.p
        special = _special(args, {"MIN": p.wavelength_min_nm, "MAX": p.wavelength_max_nm})
        return _num(self.meter.wavelength_nm if special is None else special)

    def _set_beam(self, args: list[str]) -> None:
        aperture = self.meter.p.sensor_aperture_mm
        self.meter.beam_diameter_mm = parse_number(args, BEAM_MIN_MM, aperture, aperture)

    def _get_beam(self, args: list[str]) -> str:
        aperture = self.meter.p.sensor_aperture_mm
        special = _special(args, {"MIN": BEAM_MIN_MM, "MAX": aperture, "DEF": aperture})
        return _num(self.meter.beam_diameter_mm if special is None else special)

    def _get_response(self, args: list[str]) -> str:
        """Responsivity at the set wavelength, or at the wavelength given (nm)."""
        p = self.meter.p
        r = responsivity_a_per_w(self.meter.wavelength_nm)
        if args and one_param(args).upper()[:3] in ("MIN", "MAX", "DEF"):
            return _num(r)
        if args:
            return _num(responsivity_a_per_w(parse_number(args, p.wavelength_min_nm, p.wavelength_max_nm)))
        return _num(r)

    def _set_response(self, args: list[str]) -> None:
        """A calibrated sensor's responsivity comes from its EEPROM (flag 0x010 'responsivity
        settable' is not set): the console refuses."""
        raise ScpiError(*SETTINGS_CONFLICT)

    def _set_unit(self, args: list[str]) -> None:
        unit = one_param(args).upper()
        if unit not in ("W", "DBM"):
            raise ScpiError(*ILLEGAL_VALUE)
        self.unit = unit

    def _set_auto(self, args: list[str]) -> None:
        self.meter.auto_range = parse_bool(args)

    def _set_range(self, args: list[str]) -> None:
        self.meter.set_range_w(parse_number(args, 0.0, RANGES_W[-1] * 10, RANGES_W[-1]))

    def _get_range(self, args: list[str]) -> str:
        special = _special(args, {"MIN": RANGES_W[0], "MAX": RANGES_W[-1]})
        return _num(self.meter.range_w if special is None else special)

    def _set_reference(self, args: list[str]) -> None:
        self.reference_w = parse_number(args, -RANGES_W[-1], RANGES_W[-1], 0.0)

    def _get_reference(self, args: list[str]) -> str:
        special = _special(args, {"MIN": -RANGES_W[-1], "MAX": RANGES_W[-1], "DEF": 0.0})
        return _num(self.reference_w if special is None else special)

    def _set_delta(self, args: list[str]) -> None:
        self.delta_mode = parse_bool(args)

    def _set_avg(self, args: list[str]) -> None:
        self.meter.averaging = int(parse_number(args, 1, 1_000_000, 1))

    # --- measurement ----------------------------------------------------------------------------------
    def _configure(self, quantity: str) -> None:
        self.configured = quantity
        self.pending = None

    def _take(self) -> float:
        """One value of the configured quantity, in its SI unit (W, A, W/cm^2, degC)."""
        m = self.meter
        if self.configured == "TEMP":
            if not m.p.sensor_thermistor:
                raise ScpiError(*HARDWARE_MISSING)
            return m.p.sensor_temperature_c
        watts = m.measure_w()
        over = abs(watts) >= m.range_w * 1.2 * (1 - 1e-9)
        self.over_range = (QUES_POWER | QUES_CURRENT) if over else 0
        if self.configured == "CURR":
            return m.photocurrent_a(watts)
        if self.delta_mode:
            watts -= self.reference_w
        if self.configured == "PDEN":
            return m.power_density_w_per_cm2(watts)
        if self.unit == "DBM":
            return 10 * math.log10(max(watts, 1e-15) / 1e-3)
        return watts

    def _measure(self, quantity: str) -> str:
        self._configure(quantity)
        return _num(self._take())

    def _initiate(self) -> None:
        self.pending = self._take()

    def _fetch(self) -> str:
        if self.pending is None:
            raise ScpiError(-230, "Data corrupt or stale")
        return _num(self.pending)

    def _read(self) -> str:
        return _num(self._take())
