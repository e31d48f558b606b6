"""``specimen``: the specimen the next steps need (mounted on a simulated station, asked for on a real one)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.common.units import PositiveDistance, Wavelength
from harness.protocol.steps.base import Action, Expansion, StepKind, _Model, line_key

SAMPLES = ("bead_field", "uniform_slide", "bead_slide")


class SpecimenParams(_Model):
    """The specimen the next steps need: a simulated station mounts it, an operator is asked.
    ``bead_field``: 1-4 um beads (stage tests); ``uniform_slide``: an even fluorescent slide;
    ``bead_slide``: sub-resolution (multi-colour) beads for PSF, co-registration and focus, described
    by ``bead_diameter`` and the ``emission`` wavelength under each laser line (the analyses' theory)."""

    sample: Literal["bead_field", "uniform_slide", "bead_slide"]
    instructions: str = ""
    bead_diameter: PositiveDistance | None = Field(default=None, description="bead_slide: the beads' diameter, e.g. 100 nm")
    emission: dict[int | float | str, Wavelength] = Field(default_factory=dict,
                                            description="bead_slide: emission peak per laser line, e.g. {488: 515 nm}; "
                                                        "a line not listed: its wavelength + 30 nm")

    @model_validator(mode="after")
    def _beads_only(self) -> SpecimenParams:
        if self.sample != "bead_slide" and (self.bead_diameter is not None or self.emission):
            raise ValueError("bead_diameter and emission describe a bead_slide")
        self.emission = {line_key(k): v for k, v in self.emission.items()}  # 488, "488 nm" -> "488"
        return self


class SpecimenStep(_Model):
    specimen: SpecimenParams


class Specimen(StepKind):
    key = "specimen"
    model = SpecimenStep

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        plan.roles.add("camera")


KIND = Specimen()
