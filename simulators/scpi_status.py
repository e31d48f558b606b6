"""The IEEE 488.2 / SCPI status system of a simulated instrument.

``StatusSystem(instrument, registers).install()`` adds to a ``ScpiInstrument``:

- the Standard Event Status Register (ESR: OPC 0x01, QYE 0x04, DDE 0x08, EXE 0x10, CME 0x20,
  PON 0x80; set at power-on) with ``*ESR?`` (read clears it), ``*ESE``/``*ESE?``, ``*OPC``
  (sets OPC), ``*OPC?`` (``1``: every operation of these simulators completes before the next
  command is read), ``*WAI`` (nothing to wait for);
- every queued error sets its ESR bit by class: -1xx command error CME, -2xx execution error EXE,
  -3xx and positive device-specific codes DDE, -4xx query error QYE;
- the status byte ``*STB?`` (nothing cleared) and ``*SRE``/``*SRE?``: EAV (error queue not empty),
  MAV (a reply of this program message is waiting: ``*IDN?;*STB?``), ESB (ESR & ESE), MSS (any
  enabled summary), and one summary bit per SCPI register group;
- per register group (e.g. ``OPERation``): ``STATus:<group>:CONDition?``, ``STATus:<group>[:EVENt]?``
  (read clears), ``:ENABle``, ``:PTRansition``, ``:NTRansition`` (set and query), and
  ``STATus:PRESet`` (enables 0, PTR all ones, NTR 0). Events latch condition transitions, looked at
  before every command and when a register is read;
- ``*CLS`` clears the error queue, the ESR and every event register (not the enables).

A condition is a callable returning the bits that are true now; it must not move the clock (it is
asked before every command). ``poll_condition`` (optional) answers ``CONDition?`` itself, for a
poller that waits on a bit (zeroing): that one may move a virtual clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .scpi import ScpiInstrument, parse_number

OPC, QYE, DDE, EXE, CME, PON = 0x01, 0x04, 0x08, 0x10, 0x20, 0x80
EAV, MAV, ESB, MSS = 0x04, 0x10, 0x20, 0x40
_ALL = 0x7FFF


@dataclass
class RegisterGroup:
    """One SCPI status register group: condition -> transition filters -> event -> enable."""

    name: str  # SCPI mnemonic, e.g. "OPERation"
    stb_bit: int
    condition: Callable[[], int]
    poll_condition: Callable[[], int] | None = None
    enable: int = 0
    ptr: int = _ALL
    ntr: int = 0
    event: int = 0
    _last: int = 0

    def update(self, condition: int | None = None) -> int:
        now = self.condition() if condition is None else condition
        rising, falling = now & ~self._last, self._last & ~now
        self.event |= (rising & self.ptr) | (falling & self.ntr)
        self._last = now
        return now

    def read_event(self) -> int:
        self.update()
        value, self.event = self.event, 0
        return value

    def preset(self) -> None:
        self.enable, self.ptr, self.ntr = 0, _ALL, 0


def _register_value(args: list[str], maximum: int) -> int:
    return int(parse_number(args, 0, maximum))


class StatusSystem:
    def __init__(self, instrument: ScpiInstrument, groups: list[RegisterGroup]) -> None:
        self.inst = instrument
        self.groups = groups
        self.esr = PON
        self.ese = 0
        self.sre = 0

    # --- hooks the instrument forwards -----------------------------------------------------------
    def on_error(self, code: int) -> None:
        if -199 <= code <= -100:
            self.esr |= CME
        elif -299 <= code <= -200:
            self.esr |= EXE
        elif -499 <= code <= -400:
            self.esr |= QYE
        else:
            self.esr |= DDE

    def before_command(self) -> None:
        for g in self.groups:
            g.update()

    def clear(self) -> None:
        self.esr = 0
        for g in self.groups:
            g.update()
            g.event = 0

    # --- status byte ------------------------------------------------------------------------------
    def stb(self) -> int:
        value = 0
        for g in self.groups:
            g.update()
            if g.event & g.enable:
                value |= g.stb_bit
        if self.inst.errors:
            value |= EAV
        if self.inst.output_queued:
            value |= MAV
        if self.esr & self.ese:
            value |= ESB
        if value & self.sre & ~MSS:
            value |= MSS
        return value

    def _read_esr(self) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    def preset(self) -> None:
        for g in self.groups:
            g.preset()

    def _set_opc(self) -> None:
        self.esr |= OPC

    def install(self) -> StatusSystem:
        add = self.inst.add
        add("*ESE", set=lambda a: setattr(self, "ese", _register_value(a, 255)), query=lambda a: str(self.ese))
        add("*ESR", query=lambda a: self._read_esr())
        add("*SRE", set=lambda a: setattr(self, "sre", _register_value(a, 255) & ~MSS), query=lambda a: str(self.sre))
        add("*STB", query=lambda a: str(self.stb()))
        add("*OPC", set=lambda a: self._set_opc(), query=lambda a: "1")
        add("*WAI", set=lambda a: None)
        add("STATus:PRESet", set=lambda a: self.preset())
        for g in self.groups:
            self._install_group(g)
        return self

    def _install_group(self, g: RegisterGroup) -> None:
        add, root = self.inst.add, f"STATus:{g.name}"

        def condition(args: list[str]) -> str:
            return str(g.update(g.poll_condition() if g.poll_condition else None))

        add(f"{root}:CONDition", query=condition)
        add(f"{root}[:EVENt]", query=lambda a: str(g.read_event()))
        add(f"{root}:ENABle", set=lambda a: setattr(g, "enable", _register_value(a, 0xFFFF)), query=lambda a: str(g.enable))
        add(f"{root}:PTRansition", set=lambda a: setattr(g, "ptr", _register_value(a, 0xFFFF)), query=lambda a: str(g.ptr))
        add(f"{root}:NTRansition", set=lambda a: setattr(g, "ntr", _register_value(a, 0xFFFF)), query=lambda a: str(g.ntr))
