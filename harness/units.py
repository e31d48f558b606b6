"""Quantities with units in protocol files: ``1 s``, ``5 min``, ``300 um``, ``80 %``, ``2 mW``.

A bare number is refused: a file must say what it means. Each quantity type parses to one base
unit (seconds, micrometres, nanometres, milliwatts), except set points, which keep % apart
because a percentage is of the laser's nominal power.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ%]+)\s*$")

TIME_S = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "d": 86400.0, "us": 1e-6, "µs": 1e-6}
LENGTH_UM = {"um": 1.0, "µm": 1.0, "nm": 1e-3, "mm": 1e3}
WAVELENGTH_NM = {"nm": 1.0}
POWER_MW = {"mW": 1.0, "W": 1e3, "uW": 1e-3, "µW": 1e-3}
SIZE_B = {"GB": 1e9, "MB": 1e6, "TB": 1e12, "GiB": 2.0**30, "MiB": 2.0**20}


def parse_quantity(value: Any, units: dict[str, float], what: str) -> float:
    """``"5 min"`` -> 300.0 with TIME_S; errors say which units are accepted."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        raise ValueError(f"{what} needs a unit (one of {', '.join(units)}), e.g. '{value} {next(iter(units))}'")
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a quantity such as '5 {next(iter(units))}'")
    m = _PATTERN.match(value)
    if not m:
        raise ValueError(f"{what}: cannot read {value!r}; write a number and a unit, e.g. '5 {next(iter(units))}'")
    number, unit = float(m.group(1)), m.group(2)
    if unit not in units:
        raise ValueError(f"{what}: wrong unit {unit!r} in {value!r}; use one of {', '.join(units)}")
    return number * units[unit]


def _quantity(units: dict[str, float], what: str, base: str) -> Any:
    return Annotated[
        float,
        BeforeValidator(lambda v: parse_quantity(v, units, what)),
        PlainSerializer(lambda v: f"{v:g} {base}", return_type=str),
        WithJsonSchema({"type": "string", "pattern": rf"^\s*{_NUMBER}\s*({'|'.join(units)})\s*$", "description": f"{what} with unit ({', '.join(units)})"}),
    ]


Seconds = _quantity(TIME_S, "duration", "s")
Micrometres = _quantity(LENGTH_UM, "length", "um")
Bytes = _quantity(SIZE_B, "size", "B")


@dataclass(frozen=True)
class Setpoint:
    """A laser set point: absolute (mW) or relative (% of the line's nominal power)."""

    value: float
    unit: str  # "mW" or "%"

    def to_mw(self, nominal_mw: float | None) -> float:
        if self.unit == "%":
            if nominal_mw is None:
                raise ValueError("a set point in % needs the line's nominal power")
            return self.value * nominal_mw / 100.0
        return self.value

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


def parse_setpoint(value: Any) -> Setpoint:
    if isinstance(value, Setpoint):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        number = parse_quantity(value, {"%": 1.0}, "set point")
        if not 0 <= number <= 100:
            raise ValueError(f"set point {value!r} outside 0..100 %")
        return Setpoint(number, "%")
    mw = parse_quantity(value, POWER_MW, "set point")
    if mw < 0:
        raise ValueError(f"set point {value!r} is negative")
    return Setpoint(mw, "mW")


SetpointQ = Annotated[
    Setpoint,
    BeforeValidator(parse_setpoint),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": rf"^\s*{_NUMBER}\s*(%|uW|µW|mW|W)\s*$", "description": "laser set point: power (uW, mW, W) or % of nominal"}),
]
