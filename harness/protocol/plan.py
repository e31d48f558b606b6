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
from harness.common.optics import Optics
from harness.common.yaml_source import YamlDocument, format_errors
from harness.protocol.protocol_file import ProtocolFile, limit_problems
from harness.protocol.steps import LOOPS, STEP_KINDS, STEPS
from harness.protocol.steps.base import STEP_OVERHEAD_S, VAR, Action, StackPlan, line_key

__all__ = ["Action", "Plan", "StackPlan", "expand", "line_key", "lines_named"]


@dataclass
class Plan:
    actions: list[Action]
    stacks: dict[str, StackPlan]
    roles: set[str]
    lines: list[str]
    role_lines: dict[str, int] = field(default_factory=dict)  # first protocol line that needs each role
    optics: Optics | None = None  # the objective the plan's z-stacks were planned for

    @property
    def estimate_s(self) -> float:
        return sum(a.estimate_s for a in self.actions)


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
    def __init__(self, protocol: ProtocolFile, doc: YamlDocument, station_lines: list[str], optics: Optics | None) -> None:
        self.protocol = protocol
        self.optics = optics
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
        wanted = [line_key(w) for w in self.protocol.lines]
        absent = [w for w in wanted if w not in station_lines]
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
            loop = LOOPS.get(kind)
            if loop is None:
                self._action(kind, raw, here, scope)
                continue
            step = loop.model.model_validate(raw)
            for name, value in loop.iterations(step, self, here):
                self.expand(raw["do"], here + ("do",), {**scope, name: value})

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
        STEPS[kind].expand(params, action, self, loc)
        for role in self.roles:
            self.role_lines.setdefault(role, line)
        self.actions.append(action)

    def _check_limits(self, kind: str, params: Any, loc: tuple[Any, ...], scope: dict[str, Any]) -> None:
        """Refuse a value over the protocol's ``limits`` (surely a typo unless the protocol raises it)."""
        for name, problem in limit_problems(kind, params, self.protocol.limits):
            values = ", ".join(f"{k}={v}" for k, v in scope.items())
            field = kind if name == kind else f"{kind}.{name}"
            raise self.error(loc + ((kind,) if name == kind else (kind, name)), f"{field}: {problem}" + (f" (with {values})" if values else ""))


def expand(protocol: ProtocolFile, doc: YamlDocument, station_lines: list[str], optics: Optics | None = None) -> Plan:
    """The concrete plan of ``protocol`` for a station with these laser lines (keys like '488') and
    this objective (``None``: not known; z-stacks are then planned for ``ASSUMED_OPTICS`` and the
    plan's ``optics`` stays None, which preflight reports)."""
    x = _Expander(protocol, doc, station_lines, optics)
    x.expand(doc.data["steps"], ("steps",), {})
    return Plan(x.actions, x.stacks, x.roles, x.lines, x.role_lines, optics)
