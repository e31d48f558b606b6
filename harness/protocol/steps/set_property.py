"""``set_property``: set a Micro-Manager property on a device (by label, role or ``laser:488``)."""

from __future__ import annotations

from typing import Any

from harness.protocol.steps.base import Action, Expansion, StepKind, _Model


class SetPropertyParams(_Model):
    """Set a Micro-Manager property on a device (by label or role name)."""

    device: str
    property: str
    value: bool | int | float | str


class SetPropertyStep(_Model):
    set_property: SetPropertyParams


class SetProperty(StepKind):
    key = "set_property"
    model = SetPropertyStep

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        pass  # the device is checked against the station by preflight (harness/run/steps/set_property.py)


KIND = SetProperty()
