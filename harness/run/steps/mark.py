"""``mark`` run side: the stage position remembered under a name (preflight: marks known before a move uses them)."""

from __future__ import annotations

from harness.protocol.plan import Action
from harness.run.steps.base import PlanCheck, StepExecutor, StepRun, position


class Mark(StepExecutor):
    key = "mark"

    def check(self, action: Action, check: PlanCheck) -> None:
        check.marks.add(action.params)

    def execute(self, action: Action, run: StepRun) -> None:
        run.state.marks[action.params] = position(run.station)
        run.journal.write("mark", run.now(), name=action.params, position_um=run.state.marks[action.params])


EXECUTOR = Mark()
