"""The facility policy file (YAML): how often each QC check (a protocol id) is due on each microscope
(a station name), and whether a check applies to a microscope at all.

```yaml
policy: facility QC policy      # marks the file as a facility policy (any text)
checks:                         # the default for every microscope
  psf: {every: 30 d}
  flat-field: {every: 182 d}
microscopes:                    # overrides, per microscope (station name)
  Spinning disk 2:
    psf: {every: 14 d}
    stage-iso230: {applicable: false}
watch:                          # metrics without acceptance limits whose control charts the overview watches too
  power-stability-short: [mean_mw]
```

A check named under ``checks`` is required on every microscope the board knows, unless a
microscope's override says ``applicable: false``; an override may also add a check that is not a
default. ``every`` is a duration with its unit (``30 d``, ``12 h``), at most 100 years. The overview lists the recent
out-of-control points of every judged metric (one with an acceptance limit) and of the metrics
``watch`` names per check (e.g. a laser's mean power: no fixed limit fits every laser, but a change
from its own history is worth seeing). A bad file is one ``UserError`` naming file, line and field.

Contract: ``read_policy(path)`` -> ``Policy``; ``Policy.interval_s(microscope, check)`` is the
interval in seconds, or None when the check is not required there; ``due_state(...)`` tells, for a
last completed run, when the check is next due and whether it is overdue (pure, no I/O but the file
read). No web framework is imported here (the ``schema`` command imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.common.errors import UserError
from harness.common.units import PositiveSeconds
from harness.common.yaml_source import format_errors, load_yaml

NEVER_RUN, OVERDUE, DUE_SOON, OK, NOT_REQUIRED = "never run", "overdue", "due soon", "ok", "not required"
MAX_EVERY_S = 100 * 365 * 86400.0  # an interval is at most 100 years: a due date stays a date
DUE_SOON_FRACTION = 0.1  # "due soon" within the last tenth of the interval


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CheckRule(_Model):
    """How often one check is due (``every``), or that it does not apply (``applicable: false``)."""

    every: PositiveSeconds | None = Field(default=None, description="interval between runs of the check, e.g. '30 d' (at most 100 years)")
    applicable: bool = Field(default=True, description="false: the check is not required on this microscope")
    note: str | None = Field(default=None, description="why (for people; shown on the board)")

    @field_validator("every")
    @classmethod
    def _bounded(cls, value: float | None) -> float | None:
        if value is not None and value > MAX_EVERY_S:
            raise ValueError(f"at most 100 years (36500 d), got {value / 86400:g} d")
        return value

    @model_validator(mode="after")
    def _either(self) -> CheckRule:
        if self.applicable and self.every is None:
            raise ValueError("give 'every' (e.g. '30 d'), or 'applicable: false'")
        return self


class PolicyFile(_Model):
    """A facility QC policy: the default interval of each check, and per-microscope overrides."""

    policy: str = Field(description="the policy's name (marks the file as a facility policy)")
    checks: dict[str, CheckRule] = Field(default_factory=dict, description="check (protocol id) -> rule, for every microscope")
    microscopes: dict[str, dict[str, CheckRule]] = Field(
        default_factory=dict, description="microscope (station name) -> check -> rule, overriding the default")
    watch: dict[str, list[str]] = Field(
        default_factory=dict, description="check (protocol id) -> metrics without acceptance limits whose control charts the overview watches too")


@dataclass(frozen=True)
class DueState:
    state: str  # NEVER_RUN, OVERDUE, DUE_SOON, OK or NOT_REQUIRED
    due: datetime | None  # when the check is (was) next due; None: never run or not required
    interval_s: float | None


@dataclass(frozen=True)
class Policy:
    spec: PolicyFile
    path: Path | None = None

    def rule(self, microscope: str, check: str) -> CheckRule | None:
        own = self.spec.microscopes.get(microscope, {})
        return own.get(check) or self.spec.checks.get(check)

    def interval_s(self, microscope: str, check: str) -> float | None:
        """Seconds between runs of ``check`` on ``microscope``; None when it is not required there."""
        rule = self.rule(microscope, check)
        return rule.every if rule is not None and rule.applicable else None

    def not_applicable(self, microscope: str, check: str) -> bool:
        rule = self.rule(microscope, check)
        return rule is not None and not rule.applicable

    def checks(self) -> list[str]:
        """Every check the policy names (defaults and overrides), sorted."""
        names = set(self.spec.checks) | {c for own in self.spec.microscopes.values() for c in own}
        return sorted(names)

    def microscopes(self) -> list[str]:
        return sorted(self.spec.microscopes)

    def watched(self) -> set[tuple[str, str]]:
        """(check, metric) pairs the overview watches besides the judged metrics."""
        return {(check, metric) for check, names in self.spec.watch.items() for metric in names}


EMPTY = Policy(PolicyFile(policy="none"))


def read_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; UserError naming file, line and field."""
    doc = load_yaml(path)
    if doc.top != "mapping":
        raise UserError(f"{doc.path}:1: not a facility policy file: expected keys policy:, checks: and microscopes: at the top "
                        "(see configs/facility-policy.yaml)")
    doc.schema_words |= {"policy", "checks", "microscopes", "every", "applicable", "note", "watch"}
    try:
        spec = PolicyFile.model_validate(doc.data)
    except ValidationError as exc:
        raise UserError(format_errors(doc, exc, "facility policy")) from None
    return Policy(spec, Path(path))


def due_state(policy: Policy, microscope: str, check: str, last_done: datetime | None, now: datetime) -> DueState:
    """Whether ``check`` is due on ``microscope``, given the end of its last completed run."""
    interval = policy.interval_s(microscope, check)
    if interval is None:
        return DueState(NOT_REQUIRED, None, None)
    if last_done is None:
        return DueState(NEVER_RUN, None, interval)
    due = last_done + timedelta(seconds=interval)
    if now > due:
        return DueState(OVERDUE, due, interval)
    if (due - now).total_seconds() <= DUE_SOON_FRACTION * interval:
        return DueState(DUE_SOON, due, interval)
    return DueState(OK, due, interval)
