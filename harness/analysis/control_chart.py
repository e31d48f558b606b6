"""Control charts for a QC metric over time (individuals chart): control limits from a baseline, and
the points that signal a change of the instrument.

Limits: centre line = mean of the baseline (the first ``baseline`` points, or all of them if there
are fewer), limits = centre +- 3 SD with the sample SD (n - 1). Rules (Western Electric / Nelson):

- ``outside``: a point beyond a control limit (rule 1);
- ``run``: ``run_length`` (default 8) or more consecutive points on one side of the centre line
  (rule 2); a point exactly on the centre line ends a run. As control-chart software does, the point
  that completes the run is flagged, and each further point that continues it.

Statistical control is only claimed from a baseline of at least ``MIN_CONTROL_BASELINE`` (10) runs:
the SD of fewer runs is too uncertain for +-3 SD limits to mean what they say (with 5 runs the upper
95 % confidence bound of the SD is 2.9 times its estimate). With fewer, the limits are provisional and
a chart says "too few runs for control limits".

Pure functions of plain sequences of numbers; no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

OUTSIDE, RUN = "outside", "run"
MIN_CONTROL_BASELINE = 10  # baseline runs needed before a series is said to be in (or out of) statistical control


@dataclass(frozen=True)
class Limits:
    centre: float
    sd: float  # nan with a baseline of one point
    lower: float
    upper: float
    baseline: int  # points the limits come from

    @property
    def defined(self) -> bool:
        return math.isfinite(self.lower) and math.isfinite(self.upper)

    @property
    def established(self) -> bool:
        """Enough baseline runs to judge statistical control (``MIN_CONTROL_BASELINE``)."""
        return self.defined and self.baseline >= MIN_CONTROL_BASELINE

    def describe(self, unit: str | None = None) -> str:
        """For people: the limits, or why there are none yet."""
        u = f" {unit}" if unit else ""
        if not self.defined:
            return f"too few runs for control limits (1 run; {MIN_CONTROL_BASELINE} are needed)"
        limits = f"{self.lower:.5g} to {self.upper:.5g}{u} from the first {self.baseline} runs"
        if not self.established:
            return f"too few runs for control limits ({self.baseline} in the baseline; {MIN_CONTROL_BASELINE} are needed): provisional limits {limits}"
        return f"control limits {limits}"


@dataclass(frozen=True)
class Flag:
    index: int  # into the series
    rule: str  # OUTSIDE or RUN
    detail: str  # for people: "above the upper control limit 100.3", "8 in a row below the centre line"


def control_limits(values: Sequence[float], baseline: int = 10, k: float = 3.0) -> Limits:
    """Centre +- ``k`` SD of the first ``baseline`` values (all values if there are fewer)."""
    if baseline < 1:
        raise ValueError(f"baseline must be at least 1 point, not {baseline}")
    base = [float(v) for v in values[:baseline]]
    if not base:
        raise ValueError("no values")
    centre = statistics.fmean(base)
    sd = statistics.stdev(base, centre) if len(base) > 1 else math.nan
    return Limits(centre, sd, centre - k * sd, centre + k * sd, len(base))


def outside_limits(values: Sequence[float], limits: Limits) -> list[Flag]:
    """Rule 1: the points beyond a control limit (none if the limits are undefined)."""
    if not limits.defined:
        return []
    out = []
    for i, v in enumerate(values):
        if v > limits.upper:
            out.append(Flag(i, OUTSIDE, f"above the upper control limit {limits.upper:.6g}"))
        elif v < limits.lower:
            out.append(Flag(i, OUTSIDE, f"below the lower control limit {limits.lower:.6g}"))
    return out


def runs_on_one_side(values: Sequence[float], centre: float, run_length: int = 8) -> list[Flag]:
    """Rule 2: each point that is the ``run_length``-th or later of consecutive points on one side."""
    if run_length < 2:
        raise ValueError(f"run_length must be at least 2, not {run_length}")
    out = []
    side, length = 0, 0
    for i, v in enumerate(values):
        s = (v > centre) - (v < centre)
        length = length + 1 if s == side and s != 0 else (1 if s != 0 else 0)
        side = s
        if length >= run_length:
            where = "above" if side > 0 else "below"
            out.append(Flag(i, RUN, f"{length} in a row {where} the centre line {centre:.6g}"))
    return out


def evaluate(values: Sequence[float], baseline: int = 10, run_length: int = 8) -> tuple[Limits, list[Flag]]:
    """Limits from the baseline and every flag of the series, ordered by point (rule 1 first)."""
    limits = control_limits(values, baseline)
    flags = outside_limits(values, limits) + runs_on_one_side(values, limits.centre, run_length)
    return limits, sorted(flags, key=lambda f: (f.index, f.rule != OUTSIDE))


def flagged_indices(flags: Sequence[Flag]) -> list[int]:
    return sorted({f.index for f in flags})
