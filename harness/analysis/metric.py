"""One metric's value as the analyses compute it, before judging: value, unit, and why it was not
computed (then the value is NaN and the metric is ``not judged``). Plain data; no dependency, so every
analysis can use it without loading another analysis' formulas."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from harness.common.errors import BadInput


@dataclass(frozen=True)
class Metric:
    value: float
    unit: str
    reason: str = ""  # why it was not computed (value NaN): the metric is not judged


def computed(unit: str, formula: Callable[[], float]) -> Metric:
    """The formula's value, or a metric that says why its input does not allow it."""
    try:
        return Metric(float(formula()), unit)
    except BadInput as exc:
        return Metric(math.nan, unit, str(exc))
