"""The Coherent OBIS command set (with the ``OK`` handshake), served over the simulated laser."""

from __future__ import annotations

from .laser import LaserModel, LaserRefused
from .scpi import ILLEGAL_VALUE, ScpiError, ScpiInstrument, one_param, parse_number

# OBIS error replies. Codes follow the OBIS operator's manual as far as known; the simulator uses
# 100 for an unknown command, 102 for a bad parameter, 103 for a refused value, 500 for a device fault.
_OBIS_CODES = {-113: 100, -108: 102, -109: 102, -104: 102, -224: 102, -222: 103, -114: 100, -102: 100}


def _watts(mw: float) -> str:
    return f"{mw / 1e3:.5f}"


class ObisScpi(ScpiInstrument):
    terminator = "\r\n"
    replies_to_sets = True

    def __init__(self, laser: LaserModel) -> None:
        super().__init__()
        self.laser = laser
        L, p = laser, laser.p
        self.handshake = True
        self.cdrh = True
        self.autostart = False
        self.modulation = "CWP"
        nm = int(round(p.wavelength_nm))
        nominal = int(round(p.nominal_power_mw))
        self.add("*IDN", query=lambda a: f"Coherent, Inc - OBIS {nm}nm {nominal}mW LX - V{p.firmware}")
        self.add("*TST", query=lambda a: "PASS")
        self.add("SYSTem:INFormation:MODel", query=lambda a: f"OBIS {nm}nm {nominal}mW LX")
        self.add("SYSTem:INFormation:SNUMber", query=lambda a: p.serial)
        self.add("SYSTem:INFormation:FVERsion", query=lambda a: p.firmware)
        self.add("SYSTem:INFormation:PNUMber", query=lambda a: f"SIM-{nm}-{nominal}")
        self.add("SYSTem:INFormation:WAVelength", query=lambda a: f"{p.wavelength_nm:.1f}")
        self.add("SYSTem:INFormation:POWer", query=lambda a: _watts(p.nominal_power_mw))
        self.add("SYSTem:INFormation:TYPe", query=lambda a: "DDL")
        self.add("SYSTem:DIODe:HOURs", query=lambda a: f"{L.diode_hours():.2f}")
        self.add("SYSTem:HOURs", query=lambda a: f"{L.diode_hours() + 50:.2f}")
        self.add("SYSTem:LOCK", query=lambda a: "ON" if L.interlock_closed else "OFF")
        self.add("SYSTem:STATus", query=lambda a: self._status())
        self.add("SYSTem:FAULt", query=lambda a: "00000000" if L.interlock_closed else "00000010")
        self.add("SYSTem:COMMunicate:HANDshaking", set=self._set_handshake, query=lambda a: "ON" if self.handshake else "OFF")
        self.add("SYSTem:CDRH", set=lambda a: setattr(self, "cdrh", self._onoff(a)), query=lambda a: "ON" if self.cdrh else "OFF")
        self.add("SYSTem:AUTostart", set=lambda a: setattr(self, "autostart", self._onoff(a)), query=lambda a: "ON" if self.autostart else "OFF")
        self.add("SOURce:POWer:LEVel:IMMediate:AMPLitude", set=self._set_power, query=lambda a: _watts(L.setpoint_mw))
        self.add("SOURce:POWer:LEVel", query=lambda a: _watts(L.monitor_power_mw()))
        self.add("SOURce:POWer:LIMit:HIGH", query=lambda a: _watts(p.high_limit_mw))
        self.add("SOURce:POWer:LIMit:LOW", query=lambda a: _watts(p.min_power_mw))
        self.add("SOURce:POWer:NOMinal", query=lambda a: _watts(p.nominal_power_mw))
        self.add("SOURce:AM:STATe", set=self._set_emission, query=lambda a: "ON" if L.emission else "OFF")
        self.add("SOURce:AM:INTernal", set=self._set_internal)
        self.add("SOURce:AM:EXTernal", set=self._set_external)
        self.add("SOURce:AM:SOURce", query=lambda a: self.modulation)
        self.add("SOURce:TEMPerature:DIODe", query=lambda a: "25.02C")
        self.add("SOURce:TEMPerature:BASeplate", query=lambda a: "24.10C")
        self.add("SOURce:TEMPerature:APRobe", set=lambda a: None, query=lambda a: "ON")

    @staticmethod
    def _onoff(args: list[str]) -> bool:
        word = one_param(args).upper()
        if word not in ("ON", "OFF"):
            raise ScpiError(*ILLEGAL_VALUE)
        return word == "ON"

    def _set_handshake(self, args: list[str]) -> None:
        self.handshake = self._onoff(args)

    def _status(self) -> str:
        bits = 0
        if self.laser.emission:
            bits |= 0x1
        if not self.laser.interlock_closed:
            bits |= 0x10
        return f"{bits:08X}"

    def _set_power(self, args: list[str]) -> None:
        watts = parse_number(args)
        try:
            self.laser.set_setpoint_mw(watts * 1e3)
        except LaserRefused:
            raise ScpiError(-222, "Data out of range") from None

    def _set_emission(self, args: list[str]) -> None:
        try:
            self.laser.set_emission(self._onoff(args))
        except LaserRefused:
            raise ScpiError(-300, "Interlock open") from None

    def _set_internal(self, args: list[str]) -> None:
        mode = one_param(args).upper()
        if mode not in ("CWP", "CWC"):
            raise ScpiError(*ILLEGAL_VALUE)
        self.modulation = mode

    def _set_external(self, args: list[str]) -> None:
        mode = one_param(args).upper()
        if mode not in ("DIG", "DIGITAL", "ANAL", "ANALOG", "MIX", "MIXED", "DIGSO", "MIXSO"):
            raise ScpiError(*ILLEGAL_VALUE)
        self.modulation = mode

    def respond(self, line: str) -> list[str]:
        """Each command answers its reply (if a query) then ``OK``, or ``ERR-<code>``."""
        out = []
        for outcome in self.execute(line):
            if outcome.error is not None:
                self.push_error(outcome.error.code, outcome.error.message)
                out.append(f"ERR-{_OBIS_CODES.get(outcome.error.code, 500)}")
                continue
            if outcome.reply is not None:
                out.append(outcome.reply)
            if self.handshake:
                out.append("OK")
        return out

    def fault_error(self) -> list[str]:
        self.push_error(-300, "Device-specific error")
        return ["ERR-500"]
