"""The Thorlabs PM100D command set, served over the simulated meter physics."""

from __future__ import annotations

import math

from .meter import RANGES_W, PowerMeterModel
from .scpi import ILLEGAL_VALUE, ScpiError, ScpiInstrument, one_param, parse_bool, parse_number


def _num(value: float) -> str:
    return f"{value:.9E}"


class PM100Scpi(ScpiInstrument):
    terminator = "\n"

    def __init__(self, meter: PowerMeterModel) -> None:
        super().__init__()
        self.meter = meter
        m, p = meter, meter.p
        self.unit = "W"
        self.configured = False
        self.pending: float | None = None
        self.add("*IDN", query=lambda a: f"Thorlabs,{p.model},{p.serial},{p.firmware}")
        self.add("*RST", set=lambda a: self.reset())
        self.add("*OPC", query=lambda a: "1")
        self.add("*TST", query=lambda a: "0")
        self.add("SYSTem:VERSion", query=lambda a: "1999.0")
        self.add(
            "SYSTem:SENSor:IDN",
            query=lambda a: f"{p.sensor_model},{p.sensor_serial},{p.sensor_calibration_date},1,18,289",
        )
        self.add("[SENSe#]:CORRection:WAVelength", set=self._set_wavelength, query=self._get_wavelength)
        self.add("[SENSe#]:POWer[:DC]:UNIT", set=self._set_unit, query=lambda a: self.unit)
        self.add("[SENSe#]:POWer[:DC]:RANGe:AUTO", set=self._set_auto, query=lambda a: "1" if m.auto_range else "0")
        self.add("[SENSe#]:POWer[:DC]:RANGe[:UPPer]", set=self._set_range, query=self._get_range)
        self.add("[SENSe#]:AVERage[:COUNt]", set=self._set_avg, query=lambda a: str(m.averaging))
        self.add("[SENSe#]:CORRection:COLLect:ZERO[:INITiate]", set=lambda a: m.start_zero())
        self.add("[SENSe#]:CORRection:COLLect:ZERO:STATe", query=lambda a: "1" if m.zeroing() else "0")
        self.add("[SENSe#]:CORRection:COLLect:ZERO:MAGNitude", query=lambda a: _num(m.zero_offset_w))
        self.add("MEASure[:SCALar][:POWer]", query=lambda a: self._read())
        self.add("CONFigure[:SCALar][:POWer]", set=lambda a: self._configure())
        self.add("CONFigure", query=lambda a: "POW" if self.configured else "POW")
        self.add("INITiate[:IMMediate]", set=lambda a: self._initiate())
        self.add("ABORt", set=lambda a: setattr(self, "pending", None))
        self.add("FETCh[:SCALar][:POWer]", query=lambda a: self._fetch())
        self.add("READ", query=lambda a: self._read())

    def reset(self) -> None:
        self.meter.averaging = 1
        self.meter.auto_range = True
        self.meter.wavelength_nm = self.meter.p.default_wavelength_nm
        self.unit = "W"

    def _set_wavelength(self, args: list[str]) -> None:
        p = self.meter.p
        self.meter.wavelength_nm = parse_number(args, p.wavelength_min_nm, p.wavelength_max_nm)

    def _get_wavelength(self, args: list[str]) -> str:
        p = self.meter.p
        if args:
            word = one_param(args).upper()
            if word.startswith("MIN"):
                return _num(p.wavelength_min_nm)
            if word.startswith("MAX"):
                return _num(p.wavelength_max_nm)
            raise ScpiError(*ILLEGAL_VALUE)
        return _num(self.meter.wavelength_nm)

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
        return _num(self.meter.range_w)

    def _set_avg(self, args: list[str]) -> None:
        self.meter.averaging = int(parse_number(args, 1, 1_000_000, 1))

    def _configure(self) -> None:
        self.configured = True

    def _initiate(self) -> None:
        self.pending = self.meter.measure_w()

    def _fetch(self) -> str:
        if self.pending is None:
            raise ScpiError(-230, "Data corrupt or stale")
        return self._format(self.pending)

    def _read(self) -> str:
        return self._format(self.meter.measure_w())

    def _format(self, watts: float) -> str:
        if self.unit == "DBM":
            return _num(10 * math.log10(max(watts, 1e-15) / 1e-3))
        return _num(watts)
