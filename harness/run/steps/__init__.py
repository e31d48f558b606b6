"""The registry of step executors (preflight checks and execution; the contract is in ``base.py``).

A new step kind's run side is its module in this folder plus its entry in ``EXECUTORS`` below; every
``StepKind`` of ``harness.protocol.steps.STEPS`` has one (checked at import).
"""

from __future__ import annotations

from harness.protocol.steps import STEPS
from harness.run.steps import acquire, laser, mark, meter, move, sample, set_property, specimen, wait
from harness.run.steps.base import StepExecutor

EXECUTORS: dict[str, StepExecutor] = {e.key: e for e in (
    laser.EXECUTOR, meter.EXECUTOR, wait.EXECUTOR, sample.EXECUTOR, move.EXECUTOR, mark.EXECUTOR, acquire.EXECUTOR, specimen.EXECUTOR,
    set_property.EXECUTOR,
)}

if set(EXECUTORS) != set(STEPS):  # a step kind the runner could not run, or an executor for no kind
    raise ImportError(f"step kinds without an executor: {sorted(set(STEPS) - set(EXECUTORS))}; "
                      f"executors without a step kind: {sorted(set(EXECUTORS) - set(STEPS))}")
