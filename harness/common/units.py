"""Quantities with units in protocol files: ``1 s``, ``5 min``, ``300 um``, ``80 %``, ``2 mW``.

A bare number is refused: a file must say what it means. Each quantity type parses to one base
unit (seconds, micrometres, nanometres, milliwatts), except set points, which keep % apart
because a percentage is of the laser's nominal power. Infinite and NaN values are always refused;
durations and sizes are never negative (``PositiveSeconds``: more than zero).

In station files the key names the unit (``max_laser_power_mw``): there a bare number is in that
unit and a quantity with a unit of the same kind is converted (``KeyedQuantity``: ``0.16 W`` ->
160 for a ``_mw`` key); a unit of another kind (``160 nm``) is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ%]+)\s*$")

TIME_S = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "d": 86400.0, "us": 1e-6, "µs": 1e-6}
LENGTH_UM = {"um": 1.0, "µm": 1.0, "nm": 1e-3, "mm": 1e3}
WAVELENGTH_NM = {"nm": 1.0}
TIME_MS = {unit: factor * 1e3 for unit, factor in TIME_S.items()}
LENGTH_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3}
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
    result = number * units[unit]
    if not math.isfinite(result):
        raise ValueError(f"{what}: {value!r} is not a finite number")
    return result


def _bounded(value: Any, units: dict[str, float], what: str, minimum: str) -> float:
    number = parse_quantity(value, units, what)
    if minimum == ">=0" and number < 0:
        raise ValueError(f"{what} must not be negative (got {value!r})")
    if minimum == ">0" and number <= 0:
        raise ValueError(f"{what} must be more than zero (got {value!r})")
    return number


def _quantity(units: dict[str, float], what: str, base: str, minimum: str = "") -> Any:
    return Annotated[
        float,
        BeforeValidator(lambda v: _bounded(v, units, what, minimum)),
        PlainSerializer(lambda v: f"{v:g} {base}", return_type=str),
        WithJsonSchema({"type": "string", "pattern": rf"^\s*{'' if minimum else '[-+]?'}(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*({'|'.join(units)})\s*$",
                        "description": f"{what} with unit ({', '.join(units)})" + {">=0": ", not negative", ">0": ", more than zero"}.get(minimum, "")}),
    ]


Seconds = _quantity(TIME_S, "duration", "s", ">=0")
PositiveSeconds = _quantity(TIME_S, "duration", "s", ">0")
Micrometres = _quantity(LENGTH_UM, "length", "um")
Distance = _quantity(LENGTH_UM, "distance", "um", ">=0")
PositiveDistance = _quantity(LENGTH_UM, "distance", "um", ">0")
Bytes = _quantity(SIZE_B, "size", "B", ">=0")
Wavelength = _quantity(LENGTH_NM, "wavelength", "nm", ">0")


def format_seconds(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable: 2592000 -> '30 d'."""
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if abs(seconds) >= factor:
            return f"{seconds / factor:g} {unit}"
    return f"{seconds * 1e3:g} ms"


def format_micrometres(um: float) -> str:
    return f"{um / 1e3:g} mm" if abs(um) >= 1e3 else f"{um:g} um"


def parse_keyed(value: Any, units: dict[str, float], what: str) -> Any:
    """A station value whose key names the unit: a bare number as is, a quantity converted."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{what}: {value!r} is not a finite number")
        return value
    if isinstance(value, str):
        return parse_quantity(value, units, what)
    return value  # let the field's own type say what is wrong


def _keyed(kind: type, units: dict[str, float], what: str, base: str) -> Any:
    return Annotated[kind, BeforeValidator(lambda v: parse_keyed(v, units, f"{what} (in {base})")), WithJsonSchema({
        "anyOf": [{"type": "number"}, {"type": "string", "pattern": rf"^\s*{_NUMBER}\s*({'|'.join(units)})\s*$"}],
        "description": f"{what}: a number in {base}, or a quantity with its unit ({', '.join(units)})",
    })]


# station-file fields whose key names the unit
KeyMw = _keyed(float, POWER_MW, "power", "mW")
KeyMsInt = _keyed(int, TIME_MS, "duration", "ms")
KeyUm = _keyed(float, LENGTH_UM, "length", "um")
KeyNm = _keyed(float, LENGTH_NM, "wavelength", "nm")


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
