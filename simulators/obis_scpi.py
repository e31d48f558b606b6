"""The Coherent OBIS command set (with the ``OK`` handshake), served over the simulated laser.

Roots take the optional device index of a multi-laser remote (``SYST1:``, ``SOUR1:``, as
Micro-Manager's CoherentOBIS adapter sends). Modulation (``SOUR:AM:INT CWP|CWC``,
``SOUR:AM:EXT DIG|ANAL|MIX|DIGSO|MIXSO``, ``SOUR:AM:SOUR?``), the CDRH emission delay
(``SYST:CDRH``) and sleep (``SOUR:TEMP:APR OFF``) act on the laser model (``simulators.laser``).

``SYST:STAT?`` is the status word (hex) with the bits of the OBIS manual as drivers decode them
(e.g. a C++ OBIS driver's ``StatusBits``): 0x1 laser fault, 0x2 emission, 0x4 ready, 0x8 standby
(asleep), 0x10 CDRH delay running, 0x40 error queued, 0x80 within factory calibration, 0x100 warmed
up, 0x400 external modulation mode. A status or power query asked while the CDRH delay runs is a
poller waiting for the light: on a virtual clock time passes to the end of the delay
(``clock.poll``), on a real one the answer says "delay".

Errors: ``ERR-<n>`` with the OBIS numbers (100 unrecognized command, 102 syntax error, 109 missing
parameter, 200 execution error, 220 invalid parameter, 221 settings conflict, 350 queue full,
500 bus error).
"""

from __future__ import annotations

from .laser import LaserModel, LaserRefused
from .scpi import ILLEGAL_VALUE, ScpiError, ScpiInstrument, one_param, parse_number

_OBIS_CODES = {-113: 100, -114: 100, -102: 102, -104: 102, -108: 102, -109: 109, -200: 200,
               -222: 220, -224: 220, -221: 221, -350: 350}
STATUS_FAULT, STATUS_EMISSION, STATUS_READY, STATUS_STANDBY = 0x1, 0x2, 0x4, 0x8
STATUS_CDRH_DELAY, STATUS_ERROR, STATUS_CALIBRATED, STATUS_WARMED_UP = 0x10, 0x40, 0x80, 0x100
STATUS_EXTERNAL = 0x400
FAULT_NO_DIODE_POWER = 0x8  # interlock open: no electrical power to the laser diode
_EXTERNAL = {"DIG": "DIGITAL", "DIGITAL": "DIGITAL", "ANAL": "ANALOG", "ANALOG": "ANALOG", "MIX": "MIXED",
             "MIXED": "MIXED", "DIGSO": "DIGSO", "MIXSO": "MIXSO"}


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
        self.prompt = False
        self.autostart = False
        self.user_text: dict[int, str] = {}
        nm = int(round(p.wavelength_nm))
        nominal = int(round(p.nominal_power_mw))
        add = self.add
        add("*IDN", query=lambda a: f"Coherent, Inc - OBIS {nm}nm {nominal}mW LX - V{p.firmware}")
        add("*TST", query=lambda a: "PASS")
        add("*RST", set=lambda a: self.reset())
        add("SYSTem#:INFormation:MODel", query=lambda a: f"OBIS {nm}nm {nominal}mW LX")
        add("SYSTem#:INFormation:SNUMber", query=lambda a: p.serial)
        add("SYSTem#:INFormation:FVERsion", query=lambda a: p.firmware)
        add("SYSTem#:INFormation:PNUMber", query=lambda a: f"SIM-{nm}-{nominal}")
        add("SYSTem#:INFormation:MDATe", query=lambda a: p.manufacture_date)
        add("SYSTem#:INFormation:CDATe", query=lambda a: p.calibration_date)
        add("SYSTem#:INFormation:PVERsion", query=lambda a: "1.0")
        add("SYSTem#:INFormation:USER", set=self._set_user, query=self._get_user)
        add("SYSTem#:INFormation:WAVelength", query=lambda a: f"{p.wavelength_nm:.1f}")
        add("SYSTem#:INFormation:POWer", query=lambda a: _watts(p.nominal_power_mw))
        add("SYSTem#:INFormation:TYPe", query=lambda a: "DDL")
        add("SYSTem#:DIODe:HOURs", query=lambda a: f"{L.diode_hours():.2f}")
        add("SYSTem#:HOURs", query=lambda a: f"{L.diode_hours() + 50:.2f}")
        add("SYSTem#:CYCLes", query=lambda a: str(p.power_cycles))
        add("SYSTem#:LOCK", query=lambda a: "ON" if L.interlock_closed else "OFF")
        add("SYSTem#:STATus", query=lambda a: f"{self._status():08X}")
        add("SYSTem#:FAULt", query=lambda a: "00000000" if L.interlock_closed else f"{FAULT_NO_DIODE_POWER:08X}")
        add("SYSTem#:ERRor:CLEar", set=lambda a: self.errors.clear())
        add("SYSTem#:COMMunicate:HANDshaking", set=self._set_handshake, query=lambda a: "ON" if self.handshake else "OFF")
        add("SYSTem#:COMMunicate:PROMpt", set=lambda a: setattr(self, "prompt", self._onoff(a)), query=lambda a: "ON" if self.prompt else "OFF")
        add("SYSTem#:CDRH", set=lambda a: setattr(L, "cdrh", self._onoff(a)), query=lambda a: "ON" if L.cdrh else "OFF")
        add("SYSTem#:AUTostart", set=lambda a: setattr(self, "autostart", self._onoff(a)), query=lambda a: "ON" if self.autostart else "OFF")
        add("SOURce#:POWer:LEVel:IMMediate:AMPLitude", set=self._set_power, query=lambda a: _watts(L.setpoint_mw))
        add("SOURce#:POWer:LEVel", query=lambda a: self._monitor_power())
        add("SOURce#:POWer:CURRent", query=lambda a: self._diode_current())
        add("SOURce#:POWer:LIMit:HIGH", query=lambda a: _watts(p.high_limit_mw))
        add("SOURce#:POWer:LIMit:LOW", query=lambda a: _watts(p.min_power_mw))
        add("SOURce#:POWer:NOMinal", query=lambda a: _watts(p.nominal_power_mw))
        add("SOURce#:AM:STATe", set=self._set_emission, query=lambda a: "ON" if L.emission else "OFF")
        add("SOURce#:AM:INTernal", set=self._set_internal)
        add("SOURce#:AM:EXTernal", set=self._set_external)
        add("SOURce#:AM:SOURce", query=lambda a: L.modulation)
        add("SOURce#:TEMPerature:DIODe", query=lambda a: "25.02C" if not L.asleep else "23.80C")
        add("SOURce#:TEMPerature:DSETpoint", query=lambda a: "25.00C")
        add("SOURce#:TEMPerature:BASeplate", query=lambda a: "24.10C")
        add("SOURce#:TEMPerature:INTernal", query=lambda a: "27.30C")
        add("SOURce#:TEMPerature:APRobe", set=lambda a: L.set_asleep(not self._onoff(a)), query=lambda a: "OFF" if L.asleep else "ON")

    @staticmethod
    def _onoff(args: list[str]) -> bool:
        word = one_param(args).upper()
        if word not in ("ON", "OFF"):
            raise ScpiError(*ILLEGAL_VALUE)
        return word == "ON"

    def reset(self) -> None:
        """``*RST``: a warm boot of the head: emission off, internal constant-power mode, errors cleared."""
        L = self.laser
        L.set_emission(False)
        L.modulation = "CWP"
        L.cdrh = L.p.cdrh
        self.errors.clear()

    def _set_handshake(self, args: list[str]) -> None:
        self.handshake = self._onoff(args)

    def _user_index(self, args: list[str]) -> int:
        return int(parse_number(args[:1], 0, 15)) if args else 0

    def _set_user(self, args: list[str]) -> None:
        if not args:
            raise ScpiError(-109, "Missing parameter")
        index, text = (self._user_index(args[:1]), ",".join(args[1:])) if len(args) > 1 else (0, args[0])
        self.user_text[index] = text[:31]

    def _get_user(self, args: list[str]) -> str:
        return self.user_text.get(self._user_index(args), "")

    def _waiting_for_light(self) -> None:
        """A poller asking while the CDRH delay runs waits for the light (virtual clock: time passes)."""
        start = self.laser.emission_starts_at()
        if start is not None and self.laser.in_cdrh_delay():
            self.laser.clock.poll(start)

    def _diode_current(self) -> str:
        self._waiting_for_light()
        return f"{self.laser.diode_current_a():.4f}"

    def _monitor_power(self) -> str:
        self._waiting_for_light()
        return _watts(self.laser.monitor_power_mw())

    def _status(self) -> int:
        self._waiting_for_light()
        L = self.laser
        bits = STATUS_CALIBRATED
        if not L.interlock_closed:
            bits |= STATUS_FAULT
        elif L.asleep:
            bits |= STATUS_STANDBY
        else:
            bits |= STATUS_READY
        if L.in_cdrh_delay():
            bits |= STATUS_CDRH_DELAY
        elif L.emission and L.interlock_closed and not L.asleep:
            bits |= STATUS_EMISSION
        if L.warmed_up():
            bits |= STATUS_WARMED_UP
        if self.errors:
            bits |= STATUS_ERROR
        if L.modulation not in ("CWP", "CWC"):
            bits |= STATUS_EXTERNAL
        return bits

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
            raise ScpiError(-200, "Execution error: interlock open") from None

    def _set_internal(self, args: list[str]) -> None:
        mode = one_param(args).upper()
        if mode not in ("CWP", "CWC"):
            raise ScpiError(*ILLEGAL_VALUE)
        self.laser.modulation = mode

    def _set_external(self, args: list[str]) -> None:
        mode = _EXTERNAL.get(one_param(args).upper())
        if mode is None:
            raise ScpiError(*ILLEGAL_VALUE)
        self.laser.modulation = mode

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
