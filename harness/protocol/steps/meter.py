"""``meter``: configure the power meter (wavelength setting, averaging, zeroing)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.common.units import WAVELENGTH_NM, parse_quantity
from harness.protocol.steps.base import Action, Expansion, StepKind, VarRef, _Model, line_key

ZERO_ESTIMATE_S = 5.0


class MeterParams(_Model):
    """Configure the power meter. ``wavelength`` is a wavelength or a laser line (its wavelength)."""

    wavelength: int | str | None = Field(default=None, description="'488 nm', or a laser line: 488 / $line")
    averaging: int | VarRef | None = Field(default=None, ge=1, le=100000)
    zero: bool = False


class MeterStep(_Model):
    meter: MeterParams


class Meter(StepKind):
    key = "meter"
    model = MeterStep

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        plan.roles.add("power_meter")
        if params.wavelength is not None:
            params.wavelength = _wavelength(params.wavelength, plan, loc)
        if params.zero:
            action.estimate_s += ZERO_ESTIMATE_S


def _wavelength(value: Any, plan: Expansion, loc: tuple[Any, ...]) -> str | float:
    """A line of the station (its key, e.g. '488') or a wavelength in nm."""
    if isinstance(value, int) or (isinstance(value, str) and "nm" not in value):
        if line_key(value) in plan.lines:
            return line_key(value)
        raise plan.error(loc + ("meter", "wavelength"), f"meter: wavelength: {value!r} is not a line of this station ({', '.join(plan.lines)}); "
                                                        "a wavelength needs its unit, e.g. '532 nm'")
    try:
        nm = parse_quantity(value, WAVELENGTH_NM, "wavelength")
        if not 100 <= nm <= 20000:
            raise ValueError(f"wavelength {value!r} is outside 100 nm .. 20000 nm")
        return nm
    except ValueError as exc:
        raise plan.error(loc + ("meter", "wavelength"), f"meter: {exc}") from None


KIND = Meter()
