"""``wait``: let station time pass (``wait: 10 min``)."""

from __future__ import annotations

from typing import Any

from harness.common.units import Seconds
from harness.protocol.steps.base import Action, Expansion, StepKind, VarRef, _Model


class WaitStep(_Model):
    wait: Seconds | VarRef


class Wait(StepKind):
    key = "wait"
    model = WaitStep

    def limit_checks(self, params: Any) -> list[tuple[str, str, Any]]:
        return [("wait", "max_wait", params)]

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        action.estimate_s = float(params)


KIND = Wait()
