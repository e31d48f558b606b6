"""The registry of protocol step kinds (schema and plan expansion; the contract is in ``base.py``).

A new step kind is its module in this folder plus its entry in ``KINDS`` below (and, for running it,
its executor in ``harness/run/steps/``). The order of ``KINDS`` is the order of the alternatives in
the protocol schema (``schemas/protocol.schema.json``): append, do not reorder.

- ``STEPS``: key -> ``StepKind`` (steps that become one action), ``LOOPS``: key -> ``LoopKind``.
- ``STEP_KINDS``: key -> step model, every kind; ``Step``: the tagged union a protocol's ``steps`` holds.
- ``step_kind(value)``: the key of a raw step (a dict) or a validated step model, or None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import BaseModel, Discriminator, Tag

from harness.protocol.steps import acquire, laser, loops, mark, meter, move, sample, set_property, specimen, wait
from harness.protocol.steps.base import LoopKind, StepKind

KINDS: list[StepKind | LoopKind] = [
    laser.KIND, meter.KIND, wait.KIND, sample.KIND, move.KIND, mark.KIND, acquire.KIND, specimen.KIND, set_property.KIND,
    loops.FOR_EACH, loops.REPEAT,
]

STEPS: dict[str, StepKind] = {k.key: k for k in KINDS if isinstance(k, StepKind)}
LOOPS: dict[str, LoopKind] = {k.key: k for k in KINDS if isinstance(k, LoopKind)}
STEP_KINDS: dict[str, type[BaseModel]] = {k.key: k.model for k in KINDS}


def step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in value:
            if key in STEP_KINDS:
                return key
        return None
    return next((k for k, cls in STEP_KINDS.items() if isinstance(value, cls)), None)


if TYPE_CHECKING:
    Step = BaseModel  # to a type checker: some step model
else:  # to pydantic: one of the registered step models, chosen by its key
    Step = Annotated[
        Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in STEP_KINDS.items())],  # noqa: UP007  (built at run time)
        Discriminator(step_kind, custom_error_type="unknown_step", custom_error_message=f"not a step: a step is one of {', '.join(STEP_KINDS)}"),
    ]
for _loop in LOOPS.values():
    _loop.model.model_rebuild(_types_namespace={"Step": Step})
