"""``specimen``: the specimen the next steps need (mounted on a simulated station, asked for on a real one)."""

from __future__ import annotations

from typing import Any, Literal

from harness.protocol.steps.base import Action, Expansion, StepKind, _Model


class SpecimenParams(_Model):
    """The specimen the next steps need: a simulated station mounts it, an operator is asked."""

    sample: Literal["bead_field", "uniform_slide"]
    instructions: str = ""


class SpecimenStep(_Model):
    specimen: SpecimenParams


class Specimen(StepKind):
    key = "specimen"
    model = SpecimenStep

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        plan.roles.add("camera")


KIND = Specimen()
