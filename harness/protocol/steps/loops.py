"""``for_each`` and ``repeat``: steps that expand their ``do`` steps once per value of a variable.

Their ``do`` holds any step (``Step``, the union of every registered kind): the models are completed
by ``harness/protocol/steps/__init__.py`` once that union exists (``model_rebuild``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from harness.protocol.steps.base import Expansion, LoopKind, _Model, line_key

if TYPE_CHECKING:
    from harness.protocol.steps import Step


class ForEachStep(_Model):
    for_each: dict[str, list[int | float | str] | Literal["all"]]
    do: list[Step] = Field(min_length=1)

    @field_validator("for_each")
    @classmethod
    def _one_variable(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) != 1:
            raise ValueError("for_each binds exactly one variable, e.g. {line: all} or {size: [300 um, 3000 um]}")
        name, values = next(iter(v.items()))
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"bad variable name {name!r}")
        if values == "all" and name != "line":
            raise ValueError("'all' is only for the variable 'line' (every laser line of the station)")
        if isinstance(values, list) and not values:
            raise ValueError("empty list")
        return v


class RepeatStep(_Model):
    repeat: int = Field(ge=1, le=100000)
    as_: str = Field(default="repeat", alias="as")
    do: list[Step] = Field(min_length=1)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ForEach(LoopKind):
    key = "for_each"
    model = ForEachStep

    def iterations(self, step: Any, plan: Expansion, loc: tuple[Any, ...]) -> list[tuple[str, Any]]:
        name, values = next(iter(step.for_each.items()))
        if values == "all":
            values = plan.lines
        elif name == "line":
            values = [line_key(v) for v in values]
            absent = [v for v in values if v not in plan.lines]
            if absent:
                raise plan.error(loc + ("for_each",), f"for_each: no {', '.join(absent)} nm line on this station (it has {', '.join(plan.lines)})")
        return [(name, value) for value in values]


class Repeat(LoopKind):
    key = "repeat"
    model = RepeatStep

    def iterations(self, step: Any, plan: Expansion, loc: tuple[Any, ...]) -> list[tuple[str, Any]]:
        return [(step.as_, n) for n in range(1, step.repeat + 1)]


FOR_EACH = ForEach()
REPEAT = Repeat()
