"""``mark``: remember the stage position under a name, for a later ``move: {to: name}``."""

from __future__ import annotations

from typing import Any

from harness.protocol.steps.base import Action, Expansion, StepKind, _Model


class MarkStep(_Model):
    mark: str


class Mark(StepKind):
    key = "mark"
    model = MarkStep

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        pass  # nothing to plan: the position is read when the step runs


KIND = Mark()
