"""``laser``: set a line's set point and/or emission (``line: all`` for every line of the run)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator, model_validator

from harness.common.units import SetpointQ
from harness.protocol.steps.base import Action, Expansion, LineRef, StepKind, VarRef, _Model, line_key


class LaserParams(_Model):
    """Set a line's set point and/or emission. ``line: all`` applies to every line."""

    line: LineRef
    setpoint: SetpointQ | VarRef | None = None
    emission: Literal["on", "off"] | None = None

    @field_validator("emission", mode="before")
    @classmethod
    def _yaml_bool(cls, v: Any) -> Any:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _something(self) -> LaserParams:
        if self.setpoint is None and self.emission is None:
            raise ValueError("a laser step sets a setpoint, an emission, or both")
        return self


class LaserStep(_Model):
    laser: LaserParams


class Laser(StepKind):
    key = "laser"
    model = LaserStep

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        plan.roles.add("lasers")
        targets = plan.lines if str(params.line) == "all" else [line_key(params.line)]
        for t in targets:
            if t not in plan.lines:
                raise plan.error(loc + ("laser", "line"), f"laser: no {t} nm line on this station (it has {', '.join(plan.lines)})")
        params.line = "all" if str(params.line) == "all" else targets[0]
        if params.emission == "on":
            plan.emitting |= set(targets)
        elif params.emission == "off":
            plan.emitting -= set(targets)


KIND = Laser()
