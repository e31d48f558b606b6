"""The contract of a protocol step kind, protocol side: its schema and how it expands into plan actions.

A step kind is one module in ``harness/protocol/steps/`` that defines its pydantic models (the step
``{key: params}`` and its parameters) and one ``StepKind`` (or ``LoopKind`` for a step that repeats
other steps), registered in ``harness/protocol/steps/__init__.py``. Its execution and preflight checks
live in the run layer (``harness/run/steps/``), under the same key.

When each part is called:
- ``model`` validates a step as written (``read_protocol_file``), and again with every ``$variable``
  substituted (``expand``); a validation error there is reported with file, line and variable values.
- ``limit_checks(params)`` after each validation: the values it names are compared with the
  protocol's ``limits`` (a ``$variable`` not yet resolved is skipped).
- ``expand(params, action, plan, loc)`` once per concrete action, in protocol order: it may normalise
  ``params``, add roles, set ``action.estimate_s``, plan stack frames; it raises ``UserError`` (made
  by ``plan.error(loc, message)``) for a mistake the station reveals (a line it lacks).
- ``LoopKind.iterations(step, plan, loc)``: the variable bindings its ``do`` steps are expanded with.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, StringConstraints

from harness.common.errors import UserError
from harness.common.optics import Optics

VAR = re.compile(r"\$([A-Za-z_]\w*)")
VarRef = Annotated[str, StringConstraints(pattern=r"^\$[A-Za-z_]\w*$")]
LineRef = int | str  # a wavelength key (488), 'all', or $var
Direction = Literal["+x", "-x", "+y", "-y", "+z", "-z"]

STEP_OVERHEAD_S = 0.05
MOVE_ESTIMATE_S = 0.5
FRAME_OVERHEAD_S = 0.05


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def line_key(value: Any) -> str:
    """488, 488.0, '488', '488 nm' -> '488'."""
    text = str(value).strip().removesuffix("nm").strip()
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


@dataclass
class Action:
    kind: str
    params: Any  # the step's parameter model (or value for wait/mark), variables resolved
    context: dict[str, Any]
    line: int  # line of the step in the protocol file
    estimate_s: float
    frames: list[tuple[int, int]] = field(default_factory=list)  # acquire: (channel index, t index)
    channel: str = ""  # acquire: the stack channel
    z_offsets_um: list[float] = field(default_factory=list)  # acquire with z_stack: each frame's plane, from the centre

    def describe(self) -> str:
        ctx = " ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.kind}{' ' + ctx if ctx else ''}"


@dataclass
class StackPlan:
    name: str
    channels: list[str] = field(default_factory=list)
    frames_per_channel: dict[str, int] = field(default_factory=dict)
    z_planes: int = 1  # planes per z-stack (1: no z-stacks); a channel's frame t is plane t % z_planes of z-stack t // z_planes
    z_step_um: float | None = None

    @property
    def size_t(self) -> int:
        return max(self.frames_per_channel.values(), default=0)


class Expansion(Protocol):
    """What a plan being expanded offers a step kind (``harness.protocol.plan``)."""

    lines: list[str]  # the laser lines of the run (keys like '488')
    roles: set[str]  # roles the plan needs so far; a step adds its own
    emitting: set[str]  # lines switched on at this point of the plan
    stacks: dict[str, StackPlan]  # image stacks planned so far
    exposure_s: float  # the camera exposure at this point of the plan (for estimates)
    optics: Optics | None  # the station's objective (None: not known, e.g. validation without a station)

    def error(self, loc: tuple[Any, ...], message: str) -> UserError:
        """A ``UserError`` naming the protocol file and the line of ``loc``."""
        ...


class StepKind(ABC):
    """One kind of step that becomes one action of the plan (see the module docstring)."""

    key: ClassVar[str]  # the step's YAML key, e.g. "laser"
    model: ClassVar[type[BaseModel]]  # the step model, one field named ``key``

    def limit_checks(self, params: Any) -> list[tuple[str, str, Any]]:
        """(field, name of a ``Limits`` bound, value) for each value bounded by the protocol's ``limits``;
        the field equal to ``key`` means the step's value itself (``wait: 3 d``)."""
        return []

    @abstractmethod
    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        """Complete ``action`` (params, estimate, frames) and ``plan`` (roles, stacks) for this step."""


class LoopKind(ABC):
    """A step that expands its ``do`` steps once per binding of a variable."""

    key: ClassVar[str]
    model: ClassVar[type[BaseModel]]

    @abstractmethod
    def iterations(self, step: Any, plan: Expansion, loc: tuple[Any, ...]) -> list[tuple[str, Any]]:
        """(variable, value) per pass, in order; ``UserError`` for a value the station cannot have."""
