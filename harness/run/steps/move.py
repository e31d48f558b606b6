"""``move`` run side: a mark must come before a move to it (preflight); the stage moved, approaching
from one side with over-travel when asked."""

from __future__ import annotations

from typing import Any

from harness.common.errors import UserError
from harness.protocol.plan import Action
from harness.run.steps.base import PlanCheck, StepExecutor, StepRun, position


class Move(StepExecutor):
    key = "move"

    def check(self, action: Action, check: PlanCheck) -> None:
        p = action.params
        if p.to is not None and p.to not in check.marks:
            known = f" (marked so far: {', '.join(sorted(check.marks))})" if check.marks else " (no mark before it)"
            check.add(action.line, f"move: to: no position marked {p.to!r} before this step{known}; add a 'mark: {p.to}' step before it")

    def execute(self, action: Action, run: StepRun) -> None:
        p = action.params
        here = position(run.station)
        target = dict(here)
        if p.to is not None:
            if p.to not in run.state.marks:
                raise UserError(f"{run.protocol_path}:{action.line}: protocol: move: no position marked {p.to!r} before this step")
            target.update(run.state.marks[p.to])
        elif p.along is not None:
            sign = 1.0 if p.along[0] == "+" else -1.0
            target[p.along[1]] = here[p.along[1]] + sign * float(p.by)
        else:
            for axis in "xyz":
                value = getattr(p, axis)
                if value is not None:
                    target[axis] = (here[axis] + float(value)) if p.relative else float(value)
        if p.approach != "any" and p.overtravel > 0:
            sign = -1.0 if p.approach == "positive" else 1.0
            pre = dict(target)
            for axis in approach_axes(p, target, here):
                pre[axis] = target[axis] + sign * p.overtravel
            _move_to(run, pre, here)
            here = pre
        _move_to(run, target, here)
        run.journal.write("move", run.now(), target_um=target, approach=p.approach, context=action.context)


def approach_axes(p: Any, target: dict[str, float], here: dict[str, float]) -> list[str]:
    """The axes an approach over-travels: ``approach_axes`` if given; else those that move; when
    the stage already sits at the target, the axes the step names (``along``'s axis, a mark's axes)."""
    if p.approach_axes is not None:
        return [a for a in "xyz" if a in p.approach_axes and a in target]
    moving = [a for a in "xyz" if a in target and target[a] != here.get(a)]
    if moving:
        return moving
    if p.along is not None:
        return [p.along[1]]
    named = [a for a in "xyz" if getattr(p, a, None) is not None]
    return [a for a in (named or list(target)) if a in target]


def _move_to(run: StepRun, target: dict[str, float], here: dict[str, float]) -> None:
    xy, z = run.station.xy_stage, run.station.z_drive
    if xy is not None and (target.get("x"), target.get("y")) != (here.get("x"), here.get("y")):
        run.retry("XY move", lambda: xy.move_to(target["x"], target["y"]))
    if z is not None and "z" in target and target["z"] != here.get("z"):
        run.retry("Z move", lambda: z.move_to(target["z"]))


EXECUTOR = Move()
