"""``wait`` run side: station time passes, with progress."""

from __future__ import annotations

from harness.protocol.plan import Action
from harness.run.steps.base import StepExecutor, StepRun


class Wait(StepExecutor):
    key = "wait"

    def execute(self, action: Action, run: StepRun) -> None:
        clock, seconds = run.clock, float(action.params)
        end = clock.now() + seconds
        # progress every 1 % of the wait, and (in real time) at least every quarter of a real second
        step = max(seconds / 100, 0.25 * (clock.time_scale or 0.0))
        while (left := end - clock.now()) > 0:
            clock.sleep(min(left, step))
            run.progress(seconds - max(end - clock.now(), 0), f"wait {action.params:g} s")


EXECUTOR = Wait()
