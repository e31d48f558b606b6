"""``specimen``: the specimen the next steps need (mounted on a simulated station, asked for on a real one)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.common.units import PositiveDistance, Wavelength
from harness.protocol.steps.base import Action, Expansion, StepKind, _Model, line_key

SAMPLES = ("bead_field", "uniform_slide", "bead_slide")
MAX_STOKES_NM = 300.0  # an emission further from its line than this is taken for a unit mistake
MAX_BEAD_UM = 10.0


class SpecimenParams(_Model):
    """The specimen the next steps need: a simulated station mounts it, an operator is asked.
    ``bead_field``: 1-4 um beads (stage tests); ``uniform_slide``: an even fluorescent slide;
    ``bead_slide``: sub-resolution (multi-colour) beads for PSF, co-registration and focus, described
    by ``bead_diameter`` and the ``emission`` wavelength under each laser line (the analyses' theory)."""

    sample: Literal["bead_field", "uniform_slide", "bead_slide"]
    instructions: str = ""
    bead_diameter: PositiveDistance | None = Field(default=None, description="bead_slide: the beads' diameter, e.g. 100 nm (at most 10 um)")
    emission: dict[int | float | str, Wavelength] = Field(default_factory=dict,
                                            description="bead_slide: emission peak per laser line, e.g. {488: 515 nm}; "
                                                        "a line not listed: its wavelength + 30 nm")

    @model_validator(mode="after")
    def _beads_only(self) -> SpecimenParams:
        if self.sample != "bead_slide" and (self.bead_diameter is not None or self.emission):
            raise ValueError("bead_diameter and emission describe a bead_slide")
        if self.bead_diameter is not None and self.bead_diameter > MAX_BEAD_UM:
            raise ValueError(f"bead_diameter {self.bead_diameter:g} um: a bead slide's beads are at most {MAX_BEAD_UM:g} um "
                             "(sub-resolution beads are 0.1-0.2 um; a unit mistake?)")
        emission: dict[int | float | str, float] = {}
        for key, nm in self.emission.items():
            line = line_key(key)  # 488, "488 nm" -> "488"
            try:
                excitation = float(line)
            except ValueError:
                raise ValueError(f"emission: {key!r} is not a laser line (a wavelength such as 488)") from None
            if isinstance(key, bool) or not 200 <= excitation <= 2000:
                raise ValueError(f"emission: {key!r} is not a laser line (a wavelength such as 488)")
            if line in emission:
                raise ValueError(f"emission: the {line} nm line is given twice")
            if nm <= excitation:
                raise ValueError(f"emission: {nm:g} nm for the {line} nm line: an emission is longer than its excitation")
            if nm > excitation + MAX_STOKES_NM:
                raise ValueError(f"emission: {nm:g} nm for the {line} nm line is more than {MAX_STOKES_NM:g} nm longer than its excitation "
                                 "(a unit mistake? e.g. '515 nm')")
            emission[line] = nm
        self.emission = emission
        return self


class SpecimenStep(_Model):
    specimen: SpecimenParams


class Specimen(StepKind):
    key = "specimen"
    model = SpecimenStep

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        plan.roles.add("camera")


KIND = Specimen()
