"""``move``: move the stage (absolute, relative, along a direction, or to a marked position)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.common.units import Distance, Micrometres, PositiveDistance
from harness.protocol.steps.base import MOVE_ESTIMATE_S, Action, Direction, Expansion, StepKind, VarRef, _Model


class MoveParams(_Model):
    """Move the stage: absolute (x/y/z), relative (``relative: true``), ``along`` a direction ``by``
    a distance, or ``to`` a marked position; ``approach`` from one side with ``overtravel``."""

    x: Micrometres | VarRef | None = None
    y: Micrometres | VarRef | None = None
    z: Micrometres | VarRef | None = None
    relative: bool = False
    along: Direction | VarRef | None = None
    by: PositiveDistance | VarRef | None = None
    to: str | None = None
    approach: Literal["positive", "negative", "any"] = "any"
    overtravel: Distance = 0.0
    approach_axes: list[Literal["x", "y", "z"]] | None = Field(
        default=None,
        description="the axes the over-travel applies to (default: the axes that move; when the stage already sits at "
                    "the target, every axis the step names)",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> MoveParams:
        kinds = [self.to is not None, self.along is not None, any(v is not None for v in (self.x, self.y, self.z))]
        if sum(kinds) != 1:
            raise ValueError("a move gives exactly one of: x/y/z, along+by, or to")
        if self.along is not None and self.by is None:
            raise ValueError("'along' needs 'by'")
        if self.approach_axes is not None:
            if self.approach == "any" or not self.overtravel:
                raise ValueError("'approach_axes' needs an approach (positive or negative) and an overtravel")
            if not self.approach_axes or len(set(self.approach_axes)) != len(self.approach_axes):
                raise ValueError(f"'approach_axes' lists each axis once, at least one (got {self.approach_axes})")
            named = {a for a in "xyz" if getattr(self, a) is not None}
            if named and not set(self.approach_axes) <= named:
                raise ValueError(f"'approach_axes' {self.approach_axes} names an axis the move does not ({', '.join(sorted(named))})")
        return self


class MoveStep(_Model):
    move: MoveParams


class Move(StepKind):
    key = "move"
    model = MoveStep

    def limit_checks(self, params: Any) -> list[tuple[str, str, Any]]:
        return [(axis, "max_move", getattr(params, axis)) for axis in ("x", "y", "z", "by", "overtravel")]

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        axes = {params.along[1]} if params.along else {a for a in "xyz" if getattr(params, a) is not None}
        if params.to is None:
            plan.roles.add("z_drive" if axes == {"z"} else "xy_stage")
            if "z" in axes and axes - {"z"}:
                plan.roles.add("z_drive")
        else:
            plan.roles.add("xy_stage")
        action.estimate_s = MOVE_ESTIMATE_S * (2 if params.overtravel else 1)


KIND = Move()
