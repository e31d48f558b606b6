"""The protocol file format (YAML): what to measure, as data.

A protocol is a list of steps (one key each: ``laser``, ``meter``, ``wait``, ``sample``, ``move``,
``mark``, ``acquire``, ``specimen``, ``set_property``, ``for_each``, ``repeat``; each kind's model is
in ``harness/protocol/steps/``) plus the roles it needs, retry rules and acceptance limits. No
expression is evaluated and nothing is imported: loops bind variables over literal lists and a step
may refer to them as ``$name`` (also inside names: ``power_$line``). Quantities carry units (``1 s``,
``300 um``, ``80 %``, ``2 mW``).

``read_protocol_file(path)`` / ``read_protocol_text(text, path)`` return the validated protocol and
its YAML document (for line numbers), or raise ``UserError`` naming file, line and field;
``load_protocol(path)`` / ``protocol_from_text(text, path)`` the same with its text and digest
(``ProtocolSource``, what a run records of its protocol).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from harness.common.errors import UserError
from harness.common.safe_paths import MAX_NAME
from harness.common.units import Micrometres, Seconds, format_micrometres, format_seconds
from harness.common.yaml_source import YamlDocument, load_yaml, load_yaml_text, validate
from harness.protocol.steps import LOOPS, STEP_KINDS, STEPS, Step, step_kind
from harness.protocol.steps.acquire import AcquireParams, AcquireStep
from harness.protocol.steps.base import VAR, Direction, LineRef, VarRef, _Model
from harness.protocol.steps.laser import LaserParams, LaserStep
from harness.protocol.steps.loops import ForEachStep, RepeatStep
from harness.protocol.steps.mark import MarkStep
from harness.protocol.steps.meter import MeterParams, MeterStep
from harness.protocol.steps.move import MoveParams, MoveStep
from harness.protocol.steps.sample import SampleParams, SampleStep
from harness.protocol.steps.set_property import SetPropertyParams, SetPropertyStep
from harness.protocol.steps.specimen import SpecimenParams, SpecimenStep
from harness.protocol.steps.wait import WaitStep

__all__ = [  # the step models, re-exported for callers that knew them here
    "VAR", "Direction", "LineRef", "VarRef", "Step", "STEP_KINDS", "AcquireParams", "AcquireStep", "LaserParams", "LaserStep",
    "ForEachStep", "RepeatStep", "MarkStep", "MeterParams", "MeterStep", "MoveParams", "MoveStep", "SampleParams", "SampleStep",
    "SetPropertyParams", "SetPropertyStep", "SpecimenParams", "SpecimenStep", "WaitStep",
]
# --- acceptance limits (judged by the analysis) ----------------------------------------------------
class Limit(_Model):
    """Bounds for one metric: ``pass`` and optionally ``warn`` ranges as ``[min, max]``
    (``null`` for an open end). Outside ``warn`` (or ``pass`` when no warn is given): fail."""

    pass_: tuple[float | None, float | None] = Field(alias="pass")
    warn: tuple[float | None, float | None] | None = None
    unit: str = ""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryRule(_Model):
    attempts: int = Field(default=3, ge=1, le=20, description="tries of one device operation")
    delay: Seconds = 1.0


DAY_S = 86400.0


class Limits(_Model):
    """Upper bounds above which a value in this protocol is taken for a typo. A protocol that means
    a larger value raises the bound here (``limits: {max_wait: 40 d}``)."""

    max_wait: Seconds = Field(default=7 * DAY_S, description="longest wait step (default 7 d)")
    max_sample_duration: Seconds = Field(default=7 * DAY_S, description="longest sample 'for' (default 7 d)")
    max_sample_interval: Seconds = Field(default=DAY_S, description="longest sample 'every' (default 1 d)")
    max_exposure: Seconds = Field(default=600.0, description="longest camera exposure (default 10 min)")
    max_move: Micrometres = Field(default=1e6, ge=0, description="largest stage position or move, any axis (default 1 m)")
    max_retry_delay: Seconds = Field(default=DAY_S, description="longest retries.delay (default 1 d)")


LIMIT_WORDS = {"max_wait": "a wait", "max_sample_duration": "a sample's 'for'", "max_sample_interval": "a sample's 'every'",
               "max_exposure": "an exposure", "max_move": "a stage move or position", "max_retry_delay": "a retry delay"}


def over_limit(limits: Limits, name: str, value: float) -> str:
    """The message for a value over one of ``limits`` ("" if it is within)."""
    bound = getattr(limits, name)
    if abs(value) <= bound:
        return ""
    fmt = format_micrometres if name == "max_move" else format_seconds
    return (f"{fmt(value)} is over the {fmt(bound)} limit for {LIMIT_WORDS[name]}; "
            f"if you mean it, raise it with `limits: {{{name}: {fmt(abs(value))}}}`")


def limit_problems(kind: str, params: Any, limits: Limits) -> list[tuple[str, str]]:
    """(field, message) for each value of one step (its parameters, variables resolved or not)
    over ``limits``; a ``$variable`` is checked once it has a value (harness/protocol/plan.py)."""
    step = STEPS.get(kind)
    checks = step.limit_checks(params) if step is not None else []
    out = []
    for name, limit, value in checks:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = over_limit(limits, limit, float(value))
            if problem:
                out.append((name, problem))
    return out


PROTOCOL_ID = r"^[a-z0-9][a-z0-9_-]*$"


class ProtocolFile(_Model):
    protocol: str = Field(max_length=MAX_NAME, description="short id, used in run folder names",
                          json_schema_extra={"pattern": PROTOCOL_ID})
    title: str
    version: str = "1"
    description: str = ""
    references: list[str] = Field(default_factory=list)
    requires: list[Literal["lasers", "power_meter", "camera", "xy_stage", "z_drive"]] = Field(default_factory=list)
    lines: list[int] | Literal["all"] = "all"
    limits: Limits = Field(default=Limits(), description="raise a bound above which a value is taken for a typo")
    retries: RetryRule = RetryRule()
    max_missing: int = Field(default=0, ge=0, description="failed readings/frames tolerated before the run fails")
    steps: list[Step] = Field(min_length=1)
    acceptance: dict[str, Limit] = Field(default_factory=dict)

    @field_validator("protocol")
    @classmethod
    def _protocol_id(cls, v: str) -> str:
        if not re.fullmatch(PROTOCOL_ID, v):
            raise ValueError(f"{v!r} is not a protocol id: lower-case letters, digits, '-' and '_', "
                             "starting with a letter or digit (e.g. 'power-stability-short')")
        return v

    @field_validator("retries")
    @classmethod
    def _retry_delay(cls, v: RetryRule, info: ValidationInfo) -> RetryRule:
        problem = over_limit(info.data.get("limits", Limits()), "max_retry_delay", v.delay)
        if problem:
            raise ValueError(f"delay: {problem}")
        return v


def acceptance_problem(name: str, limit: Limit) -> str:
    """Why a limit is a mistake ("" if it is not): a misspelt metric would never be judged; a unit
    that is not the metric's, an empty range, or a warn range that does not contain the pass range."""
    from harness.analyses.registry import METRICS  # a layer above (the registered analyses' specs: plain data, no numpy)

    if name not in METRICS:
        close = get_close_matches(name, list(METRICS), n=1)
        return f"no metric {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + "; the metrics are listed in harness/analyses/*/__init__.py"
    unit = METRICS[name]
    if limit.unit and limit.unit != unit:
        return f"unit {limit.unit!r}, but the metric is in {unit!r}" if unit else f"unit {limit.unit!r}, but the metric has no unit"
    for bounds, what in ((limit.pass_, "pass"), (limit.warn, "warn")):
        if bounds and bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            return f"{what} range [{bounds[0]:g}, {bounds[1]:g}] is empty (min > max)"
    if limit.warn is not None:
        (plo, phi), (wlo, whi) = limit.pass_, limit.warn
        inside = (wlo is None or (plo is not None and plo >= wlo)) and (whi is None or (phi is not None and phi <= whi))
        if not inside:
            return "the warn range must contain the pass range (warn is the wider band)"
    return ""


def check_acceptance(protocol: ProtocolFile, doc: YamlDocument) -> None:
    for name, limit in protocol.acceptance.items():
        problem = acceptance_problem(name, limit)
        if problem:
            raise UserError(f"{doc.path}:{doc.line_of(('acceptance', name))}: protocol: acceptance.{name}: {problem}")


def check_limits(protocol: ProtocolFile, doc: YamlDocument) -> None:
    """Refuse a value written in a step (not a ``$variable``) over the protocol's ``limits``."""
    def walk(steps: list[Any], loc: tuple[Any, ...]) -> None:
        for i, step in enumerate(steps):
            kind = step_kind(step)
            if kind in LOOPS:
                walk(step.do, loc + (i, "do"))
                continue
            for name, problem in limit_problems(kind or "", getattr(step, kind or "", None), protocol.limits):
                where = loc + (i, kind) + (() if name == kind else (name,))
                field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
                raise UserError(f"{doc.path}:{doc.line_of(where)}: protocol: {field}: {problem}")

    walk(protocol.steps, ("steps",))


def read_protocol_file(path: str | Path) -> tuple[ProtocolFile, YamlDocument]:
    """A protocol file, validated; ``UserError`` naming file, line and field."""
    return _checked(load_yaml(path))


def read_protocol_text(text: str, path: str | Path) -> tuple[ProtocolFile, YamlDocument]:
    """A protocol's text (e.g. kept in a run's ``run.json``), validated as if read from ``path``
    (the name its messages give); nothing is read from or written to disk."""
    return _checked(load_yaml_text(text, path))


@dataclass
class ProtocolSource:
    """A protocol as read: the validated model, its YAML document (for line numbers), its text (as a
    run records it) and the path it came from (or the name its messages give), and the sha256 of its
    bytes."""

    protocol: ProtocolFile
    doc: YamlDocument
    text: str
    path: Path
    sha256: str


def load_protocol(path: str | Path) -> ProtocolSource:
    """A protocol file with its text and digest; ``UserError`` as ``read_protocol_file``."""
    protocol, doc = read_protocol_file(path)
    path = Path(path)
    return ProtocolSource(protocol, doc, path.read_text(encoding="utf-8"), path, hashlib.sha256(path.read_bytes()).hexdigest())


def protocol_from_text(text: str, path: str | Path) -> ProtocolSource:
    """A protocol from its text (e.g. a run's ``run.json``); nothing is read from disk."""
    protocol, doc = read_protocol_text(text, path)
    return ProtocolSource(protocol, doc, text, Path(path), hashlib.sha256(text.encode("utf-8")).hexdigest())


def _checked(doc: YamlDocument) -> tuple[ProtocolFile, YamlDocument]:
    protocol = validate(doc, ProtocolFile, "protocol")
    assert isinstance(protocol, ProtocolFile)
    check_acceptance(protocol, doc)
    check_limits(protocol, doc)
    return protocol, doc
