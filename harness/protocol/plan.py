"""Expand a protocol into a flat plan of concrete actions for one station.

Loops are unrolled, ``$variables`` substituted and every step validated again with its values, so
a mistake inside a loop is reported with the protocol's file, line and the variable values. The
plan also knows, before anything runs, how many frames each image stack gets (so a dropped frame
keeps its place), which roles are needed, and roughly how long the run takes (for the ETA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.common.errors import UserError
from harness.common.units import WAVELENGTH_NM, parse_quantity
from harness.common.yaml_source import YamlDocument, format_errors
from harness.protocol.protocol_file import (
    STEP_KINDS,
    VAR,
    AcquireStep,
    ForEachStep,
    LaserStep,
    MeterStep,
    MoveStep,
    ProtocolFile,
    RepeatStep,
    SampleStep,
    WaitStep,
    limit_problems,
)

STEP_OVERHEAD_S = 0.05
MOVE_ESTIMATE_S = 0.5
FRAME_OVERHEAD_S = 0.05


@dataclass
class Action:
    kind: str
    params: Any  # the step's parameter model (or value for wait/mark), variables resolved
    context: dict[str, Any]
    line: int  # line of the step in the protocol file
    estimate_s: float
    frames: list[tuple[int, int]] = field(default_factory=list)  # acquire: (channel index, t index)
    channel: str = ""  # acquire: the stack channel

    def describe(self) -> str:
        ctx = " ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.kind}{' ' + ctx if ctx else ''}"


@dataclass
class StackPlan:
    name: str
    channels: list[str] = field(default_factory=list)
    frames_per_channel: dict[str, int] = field(default_factory=dict)

    @property
    def size_t(self) -> int:
        return max(self.frames_per_channel.values(), default=0)


@dataclass
class Plan:
    actions: list[Action]
    stacks: dict[str, StackPlan]
    roles: set[str]
    lines: list[str]
    role_lines: dict[str, int] = field(default_factory=dict)  # first protocol line that needs each role

    @property
    def estimate_s(self) -> float:
        return sum(a.estimate_s for a in self.actions)


def line_key(value: Any) -> str:
    """488, 488.0, '488', '488 nm' -> '488'."""
    text = str(value).strip().removesuffix("nm").strip()
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def _substitute(raw: Any, scope: dict[str, Any], missing: set[str]) -> Any:
    if isinstance(raw, dict):
        return {k: _substitute(v, scope, missing) if k not in ("do",) else v for k, v in raw.items()}
    if isinstance(raw, list):
        return [_substitute(v, scope, missing) for v in raw]
    if isinstance(raw, str) and "$" in raw:
        whole = VAR.fullmatch(raw)
        if whole:
            name = whole.group(1)
            if name not in scope:
                missing.add(name)
                return raw
            return scope[name]

        def repl(m: Any) -> str:
            if m.group(1) not in scope:
                missing.add(m.group(1))
                return m.group(0)
            return str(scope[m.group(1)])

        return VAR.sub(repl, raw)
    return raw


def lines_named(data: Any) -> list[str]:
    """Laser lines a protocol names (``line: 561``, ``for_each: {line: [...]}``, ``lines:``),
    plus the usual four: what a station-free validation assumes the station has."""
    found = {"405", "488", "561", "640"}

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif key in ("line", "lines") and str(node)[:1].isdigit():
            found.add(line_key(node))

    walk(data)
    return sorted(found, key=float)


class _Expander:
    def __init__(self, protocol: ProtocolFile, doc: YamlDocument, station_lines: list[str]) -> None:
        self.protocol = protocol
        self.doc = doc
        self.lines = self._lines(station_lines)
        self.actions: list[Action] = []
        self.stacks: dict[str, StackPlan] = {}
        self.roles: set[str] = set(protocol.requires)
        self.role_lines: dict[str, int] = {r: doc.line_of(("requires",)) for r in protocol.requires}
        self.emitting: set[str] = set()
        self.exposure_s = 0.05

    def _lines(self, station_lines: list[str]) -> list[str]:
        if self.protocol.lines == "all":
            return list(station_lines)
        wanted = [line_key(l) for l in self.protocol.lines]
        absent = [l for l in wanted if l not in station_lines]
        if absent:
            raise UserError(
                f"{self.doc.path}:{self.doc.line_of(('lines',))}: protocol: lines: the station has no {', '.join(absent)} nm line "
                f"(it has {', '.join(station_lines) or 'none'})"
            )
        return wanted

    def error(self, loc: tuple[Any, ...], message: str) -> UserError:
        return UserError(f"{self.doc.path}:{self.doc.line_of(loc)}: protocol: {message}")

    def expand(self, raw_steps: list[Any], loc: tuple[Any, ...], scope: dict[str, Any]) -> None:
        for i, raw in enumerate(raw_steps):
            here = loc + (i,)
            kind = next(k for k in raw if k in STEP_KINDS)
            if kind == "for_each":
                step = ForEachStep.model_validate(raw)
                name, values = next(iter(step.for_each.items()))
                if values == "all":
                    values = self.lines
                elif name == "line":
                    values = [line_key(v) for v in values]
                    absent = [v for v in values if v not in self.lines]
                    if absent:
                        raise self.error(here + ("for_each",), f"for_each: no {', '.join(absent)} nm line on this station (it has {', '.join(self.lines)})")
                for value in values:
                    self.expand(raw["do"], here + ("do",), {**scope, name: value})
            elif kind == "repeat":
                step = RepeatStep.model_validate(raw)
                for n in range(1, step.repeat + 1):
                    self.expand(raw["do"], here + ("do",), {**scope, step.as_: n})
            else:
                self._action(kind, raw, here, scope)

    def _action(self, kind: str, raw: dict[str, Any], loc: tuple[Any, ...], scope: dict[str, Any]) -> None:
        missing: set[str] = set()
        concrete = _substitute(raw, scope, missing)
        line = self.doc.line_of(loc)
        if missing:
            known = ", ".join(f"${k}" for k in scope) or "none"
            raise self.error(loc, f"{kind}: unknown variable {', '.join('$' + m for m in sorted(missing))} (in scope: {known})")
        try:
            step: BaseModel = STEP_KINDS[kind].model_validate(concrete)
        except ValidationError as exc:
            values = ", ".join(f"{k}={v}" for k, v in scope.items())
            text = format_errors(self.doc, exc, "protocol").replace(f"{self.doc.path}:1:", f"{self.doc.path}:{line}:")
            raise UserError(text + (f" (with {values})" if values else "")) from None
        params = getattr(step, kind)
        self._check_limits(kind, params, loc, scope)
        action = Action(kind, params, dict(scope), line, STEP_OVERHEAD_S)
        if isinstance(step, LaserStep):
            self.roles.add("lasers")
            targets = self.lines if str(params.line) == "all" else [line_key(params.line)]
            for t in targets:
                if t not in self.lines:
                    raise self.error(loc + ("laser", "line"), f"laser: no {t} nm line on this station (it has {', '.join(self.lines)})")
            params.line = "all" if str(params.line) == "all" else targets[0]
            if params.emission == "on":
                self.emitting |= set(targets)
            elif params.emission == "off":
                self.emitting -= set(targets)
        elif isinstance(step, MeterStep):
            self.roles.add("power_meter")
            if params.wavelength is not None:
                params.wavelength = self._meter_wavelength(params.wavelength, loc)
            if params.zero:
                action.estimate_s += 5.0
        elif isinstance(step, WaitStep):
            action.estimate_s = float(params)
        elif isinstance(step, SampleStep):
            self.roles.add("power_meter")
            if params.every <= 0 or params.duration < params.every:
                raise self.error(loc + ("sample",), "sample: 'every' must be > 0 and not longer than 'for'")
            action.estimate_s = float(params.duration)
        elif isinstance(step, MoveStep):
            axes = {params.along[1]} if params.along else {a for a in "xyz" if getattr(params, a) is not None}
            if params.to is None:
                self.roles.add("z_drive" if axes == {"z"} else "xy_stage")
                if "z" in axes and axes - {"z"}:
                    self.roles.add("z_drive")
            else:
                self.roles.add("xy_stage")
            action.estimate_s = MOVE_ESTIMATE_S * (2 if params.overtravel else 1)
        elif isinstance(step, AcquireStep):
            self.roles.add("camera")
            if params.exposure is not None:
                self.exposure_s = float(params.exposure)
            channel = "dark" if params.dark or not self.emitting else "+".join(sorted(self.emitting, key=float))
            stack = self.stacks.setdefault(params.stack, StackPlan(params.stack))
            if channel not in stack.channels:
                stack.channels.append(channel)
                stack.frames_per_channel[channel] = 0
            c = stack.channels.index(channel)
            first = stack.frames_per_channel[channel]
            action.frames = [(c, first + k) for k in range(params.frames)]
            action.channel = channel
            stack.frames_per_channel[channel] += params.frames
            action.estimate_s = params.frames * (self.exposure_s + FRAME_OVERHEAD_S)
        elif kind == "specimen":
            self.roles.add("camera")
        for role in self.roles:
            self.role_lines.setdefault(role, line)
        self.actions.append(action)

    def _check_limits(self, kind: str, params: Any, loc: tuple[Any, ...], scope: dict[str, Any]) -> None:
        """Refuse a value over the protocol's ``limits`` (surely a typo unless the protocol raises it)."""
        for name, problem in limit_problems(kind, params, self.protocol.limits):
            values = ", ".join(f"{k}={v}" for k, v in scope.items())
            field = kind if name == kind else f"{kind}.{name}"
            raise self.error(loc + ((kind,) if name == kind else (kind, name)), f"{field}: {problem}" + (f" (with {values})" if values else ""))

    def _meter_wavelength(self, value: Any, loc: tuple[Any, ...]) -> str | float:
        """A line of the station (its key, e.g. '488') or a wavelength in nm."""
        if isinstance(value, int) or (isinstance(value, str) and "nm" not in value):
            if line_key(value) in self.lines:
                return line_key(value)
            raise self.error(loc + ("meter", "wavelength"), f"meter: wavelength: {value!r} is not a line of this station ({', '.join(self.lines)}); a wavelength needs its unit, e.g. '532 nm'")
        try:
            nm = parse_quantity(value, WAVELENGTH_NM, "wavelength")
            if not 100 <= nm <= 20000:
                raise ValueError(f"wavelength {value!r} is outside 100 nm .. 20000 nm")
            return nm
        except ValueError as exc:
            raise self.error(loc + ("meter", "wavelength"), f"meter: {exc}") from None


def expand(protocol: ProtocolFile, doc: YamlDocument, station_lines: list[str]) -> Plan:
    """The concrete plan of ``protocol`` for a station with these laser lines (keys like '488')."""
    x = _Expander(protocol, doc, station_lines)
    x.expand(doc.data["steps"], ("steps",), {})
    return Plan(x.actions, x.stacks, x.roles, x.lines, x.role_lines)
