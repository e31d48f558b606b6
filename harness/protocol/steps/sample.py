"""``sample``: read the power meter on a fixed grid of deadlines into a series file."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from harness.common.safe_paths import PlainNameOrVariables
from harness.common.units import PositiveSeconds
from harness.protocol.steps.base import Action, Expansion, StepKind, VarRef, _Model


class SampleParams(_Model):
    """Read the meter every ``every`` for ``for`` (deadlines t0 + k*every) into a series file."""

    series: PlainNameOrVariables = Field(description="name of the series file (<series>.csv in the run folder)")
    every: PositiveSeconds | VarRef
    duration: PositiveSeconds | VarRef = Field(alias="for")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SampleStep(_Model):
    sample: SampleParams


class Sample(StepKind):
    key = "sample"
    model = SampleStep

    def limit_checks(self, params: Any) -> list[tuple[str, str, Any]]:
        return [("every", "max_sample_interval", params.every), ("for", "max_sample_duration", params.duration)]

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        plan.roles.add("power_meter")
        if params.every <= 0 or params.duration < params.every:
            raise plan.error(loc + ("sample",), "sample: 'every' must be > 0 and not longer than 'for'")
        action.estimate_s = float(params.duration)


KIND = Sample()
