"""The protocol file format (YAML): what to measure, as data.

A protocol is a list of steps (one key each: ``laser``, ``meter``, ``wait``, ``sample``, ``move``,
``mark``, ``acquire``, ``specimen``, ``set_property``, ``for_each``, ``repeat``) plus the roles it
needs, retry rules and acceptance limits. No expression is evaluated and nothing is imported:
loops bind variables over literal lists and a step may refer to them as ``$name`` (also inside
names: ``power_$line``). Quantities carry units (``1 s``, ``300 um``, ``80 %``, ``2 mW``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag, ValidationInfo, field_validator, model_validator

from harness.common.errors import UserError
from harness.common.safe_paths import MAX_NAME, PlainNameOrVariables
from harness.common.units import Distance, Micrometres, PositiveDistance, PositiveSeconds, Seconds, SetpointQ
from harness.common.yaml_source import YamlDocument, load_yaml, parse_yaml, validate

VAR = re.compile(r"\$([A-Za-z_]\w*)")
VarRef = Annotated[str, StringConstraints(pattern=r"^\$[A-Za-z_]\w*$")]
LineRef = Union[int, str]  # a wavelength key (488), 'all', or $var
Direction = Literal["+x", "-x", "+y", "-y", "+z", "-z"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- step parameters -----------------------------------------------------------------------------
class LaserParams(_Model):
    """Set a line's set point and/or emission. ``line: all`` applies to every line."""

    line: LineRef
    setpoint: SetpointQ | VarRef | None = None
    emission: Literal["on", "off"] | None = None

    @field_validator("emission", mode="before")
    @classmethod
    def _yaml_bool(cls, v: Any) -> Any:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _something(self) -> LaserParams:
        if self.setpoint is None and self.emission is None:
            raise ValueError("a laser step sets a setpoint, an emission, or both")
        return self


class MeterParams(_Model):
    """Configure the power meter. ``wavelength`` is a wavelength or a laser line (its wavelength)."""

    wavelength: Union[int, str, None] = Field(default=None, description="'488 nm', or a laser line: 488 / $line")
    averaging: int | VarRef | None = Field(default=None, ge=1, le=100000)
    zero: bool = False


class SampleParams(_Model):
    """Read the meter every ``every`` for ``for`` (deadlines t0 + k*every) into a series file."""

    series: PlainNameOrVariables = Field(description="name of the series file (<series>.csv in the run folder)")
    every: PositiveSeconds | VarRef
    duration: PositiveSeconds | VarRef = Field(alias="for")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MoveParams(_Model):
    """Move the stage: absolute (x/y/z), relative (``relative: true``), ``along`` a direction ``by``
    a distance, or ``to`` a marked position; ``approach`` from one side with ``overtravel``."""

    x: Micrometres | VarRef | None = None
    y: Micrometres | VarRef | None = None
    z: Micrometres | VarRef | None = None
    relative: bool = False
    along: Direction | VarRef | None = None
    by: PositiveDistance | VarRef | None = None
    to: str | None = None
    approach: Literal["positive", "negative", "any"] = "any"
    overtravel: Distance = 0.0
    approach_axes: list[Literal["x", "y", "z"]] | None = Field(
        default=None,
        description="the axes the over-travel applies to (default: the axes that move; when the stage already sits at "
                    "the target, every axis the step names)",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> MoveParams:
        kinds = [self.to is not None, self.along is not None, any(v is not None for v in (self.x, self.y, self.z))]
        if sum(kinds) != 1:
            raise ValueError("a move gives exactly one of: x/y/z, along+by, or to")
        if self.along is not None and self.by is None:
            raise ValueError("'along' needs 'by'")
        if self.approach_axes is not None:
            if self.approach == "any" or not self.overtravel:
                raise ValueError("'approach_axes' needs an approach (positive or negative) and an overtravel")
            if not self.approach_axes or len(set(self.approach_axes)) != len(self.approach_axes):
                raise ValueError(f"'approach_axes' lists each axis once, at least one (got {self.approach_axes})")
            named = {a for a in "xyz" if getattr(self, a) is not None}
            if named and not set(self.approach_axes) <= named:
                raise ValueError(f"'approach_axes' {self.approach_axes} names an axis the move does not ({', '.join(sorted(named))})")
        return self


class AcquireParams(_Model):
    """Acquire frames into an image stack (one OME-TIFF per stack; channels = laser lines)."""

    stack: PlainNameOrVariables = Field(description="name of the stack file (<stack>.ome.tif in the run folder)")
    frames: int | VarRef = Field(default=1, ge=1, le=100000)
    exposure: PositiveSeconds | VarRef | None = None
    dark: bool = False
    tag: str = Field(default="", max_length=64, description="a label in the frame log (not a file name)")
    roi: tuple[int, int, int, int] | None = Field(default=None, description="camera pixels: x, y, width, height; default full frame")
    centre_roi: tuple[int, int] | None = Field(default=None, description="camera pixels: width, height of a region centred on the sensor")
    binning: int | None = Field(default=None, ge=1, le=16)

    @model_validator(mode="after")
    def _one_roi(self) -> AcquireParams:
        if self.roi is not None and self.centre_roi is not None:
            raise ValueError("give roi or centre_roi, not both")
        return self


class SpecimenParams(_Model):
    """The specimen the next steps need: a simulated station mounts it, an operator is asked."""

    sample: Literal["bead_field", "uniform_slide"]
    instructions: str = ""


class SetPropertyParams(_Model):
    """Set a Micro-Manager property on a device (by label or role name)."""

    device: str
    property: str
    value: Union[bool, int, float, str]


# --- steps ---------------------------------------------------------------------------------------
class LaserStep(_Model):
    laser: LaserParams


class MeterStep(_Model):
    meter: MeterParams


class WaitStep(_Model):
    wait: Seconds | VarRef


class SampleStep(_Model):
    sample: SampleParams


class MoveStep(_Model):
    move: MoveParams


class MarkStep(_Model):
    mark: str


class AcquireStep(_Model):
    acquire: AcquireParams


class SpecimenStep(_Model):
    specimen: SpecimenParams


class SetPropertyStep(_Model):
    set_property: SetPropertyParams


class ForEachStep(_Model):
    for_each: dict[str, Union[list[Union[int, float, str]], Literal["all"]]]
    do: list[Step] = Field(min_length=1)

    @field_validator("for_each")
    @classmethod
    def _one_variable(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) != 1:
            raise ValueError("for_each binds exactly one variable, e.g. {line: all} or {size: [300 um, 3000 um]}")
        name, values = next(iter(v.items()))
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"bad variable name {name!r}")
        if values == "all" and name != "line":
            raise ValueError("'all' is only for the variable 'line' (every laser line of the station)")
        if isinstance(values, list) and not values:
            raise ValueError("empty list")
        return v


class RepeatStep(_Model):
    repeat: int = Field(ge=1, le=100000)
    as_: str = Field(default="repeat", alias="as")
    do: list[Step] = Field(min_length=1)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


STEP_KINDS = {
    "laser": LaserStep, "meter": MeterStep, "wait": WaitStep, "sample": SampleStep, "move": MoveStep,
    "mark": MarkStep, "acquire": AcquireStep, "specimen": SpecimenStep, "set_property": SetPropertyStep,
    "for_each": ForEachStep, "repeat": RepeatStep,
}


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in value:
            if key in STEP_KINDS:
                return key
        return None
    return next((k for k, cls in STEP_KINDS.items() if isinstance(value, cls)), None)


Step = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in STEP_KINDS.items())],  # type: ignore[valid-type]
    Discriminator(_step_kind, custom_error_type="unknown_step", custom_error_message=f"not a step: a step is one of {', '.join(STEP_KINDS)}"),
]
ForEachStep.model_rebuild()
RepeatStep.model_rebuild()


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
    from harness.common.units import format_micrometres, format_seconds

    bound = getattr(limits, name)
    if abs(value) <= bound:
        return ""
    fmt = format_micrometres if name == "max_move" else format_seconds
    return (f"{fmt(value)} is over the {fmt(bound)} limit for {LIMIT_WORDS[name]}; "
            f"if you mean it, raise it with `limits: {{{name}: {fmt(abs(value))}}}`")


def limit_problems(kind: str, params: Any, limits: Limits) -> list[tuple[str, str]]:
    """(field, message) for each value of one step (its parameters, variables resolved or not)
    over ``limits``; a ``$variable`` is checked once it has a value (harness/protocol/plan.py)."""
    checks: list[tuple[str, str, Any]] = []
    if kind == "wait":
        checks = [("wait", "max_wait", params)]
    elif kind == "sample":
        checks = [("every", "max_sample_interval", params.every), ("for", "max_sample_duration", params.duration)]
    elif kind == "acquire":
        checks = [("exposure", "max_exposure", params.exposure)]
    elif kind == "move":
        checks = [(axis, "max_move", getattr(params, axis)) for axis in ("x", "y", "z", "by", "overtravel")]
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
            raise ValueError(f"{v!r} is not a protocol id: lower-case letters, digits, '-' and '_', starting with a letter or digit (e.g. 'power-stability-short')")
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
    from difflib import get_close_matches

    from harness.analyses.registry import METRICS  # the registered analyses' metrics (their specs: no numpy)

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
            kind = _step_kind(step)
            if isinstance(step, (ForEachStep, RepeatStep)):
                walk(step.do, loc + (i, "do"))
                continue
            for name, problem in limit_problems(kind or "", getattr(step, kind or "", None), protocol.limits):
                where = loc + (i, kind) + (() if name == kind else (name,))
                field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
                raise UserError(f"{doc.path}:{doc.line_of(where)}: protocol: {field}: {problem}")

    walk(protocol.steps, ("steps",))


def read_protocol_file(path: str | Path) -> tuple[ProtocolFile, YamlDocument]:
    return _checked(load_yaml(path))


def read_protocol_text(text: str, name: str = "protocol.yaml") -> tuple[ProtocolFile, YamlDocument]:
    """A protocol from its text (e.g. the copy a run.json keeps); ``name`` stands for the file in errors."""
    return _checked(parse_yaml(text, name))


def _checked(doc: YamlDocument) -> tuple[ProtocolFile, YamlDocument]:
    protocol: ProtocolFile = validate(doc, ProtocolFile, "protocol")  # type: ignore[assignment]
    check_acceptance(protocol, doc)
    check_limits(protocol, doc)
    return protocol, doc
