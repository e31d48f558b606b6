"""``laser`` run side: set points checked against every limit the station knows; set point and emission set."""

from __future__ import annotations

from functools import partial
from typing import Any

from harness.protocol.plan import Action
from harness.run.steps.base import PlanCheck, StepExecutor, StepRun, context


class Laser(StepExecutor):
    key = "laser"

    def check(self, action: Action, check: PlanCheck) -> None:
        p = action.params
        if p.setpoint is None:
            return
        facts = check.facts
        over: dict[tuple[int, str, str, float, str], list[tuple[float, str, Any]]] = check.memo.setdefault(self.key, {})
        targets = list(facts.lines) if str(p.line) == "all" else [str(p.line)]
        for key in targets:
            lf = facts.lines.get(key)
            if lf is None:
                continue  # a line the file cannot tell (skipped) or not on the station (said by expand)
            if p.setpoint.unit == "%" and lf.nominal_mw is None:
                if facts.loaded or lf.where:
                    check.add(action.line, f"laser: set point {p.setpoint} on the {key} nm line needs the line's nominal power, which neither the laser nor "
                                           f"the station file ({lf.where or 'roles.lasers'}.nominal_power_mw) gives")
                continue
            mw = p.setpoint.to_mw(lf.nominal_mw)
            for limit, what, where in lf.limits:
                if mw > limit * (1 + 1e-9):
                    over.setdefault((action.line, key, what, limit, where), []).append((mw, str(p.setpoint), action))

    def check_end(self, check: PlanCheck) -> None:
        """One problem per step, line and limit exceeded (a loop's set points summed up in it)."""
        for (line, key, what, limit, where), hits in check.memo.get(self.key, {}).items():
            mw, requested, action = hits[0]
            more = (f"; {len(hits) - 1} more set point{'s' if len(hits) > 2 else ''} of this step exceed it too, up to {max(h[0] for h in hits):g} mW"
                    if len(hits) > 1 else "")
            check.add(line, f"laser: set point {requested} = {mw:g} mW on the {key} nm line exceeds {what} of {limit:g} mW ({where}){context(action)}{more}")

    def execute(self, action: Action, run: StepRun) -> None:
        p = action.params
        station, state = run.station, run.state
        targets = sorted(station.lasers, key=float) if p.line == "all" else [p.line]
        for key in targets:
            line = station.lasers[key]
            if p.setpoint is not None:
                mw = p.setpoint.to_mw(line.nominal_mw())
                run.retry(f"set point {key} nm", partial(line.set_setpoint_mw, mw))
                state.setpoints_mw[key] = mw
                run.journal.write("setting", run.now(), device=line.label, line=key, setpoint_mW=mw, requested=str(p.setpoint))
            if p.emission is not None:
                on = p.emission == "on"
                run.retry(f"emission {key} nm", partial(line.set_emission, on))
                (state.emitting.add if on else state.emitting.discard)(key)
                run.journal.write("setting", run.now(), sync=True, device=line.label, line=key, emission=p.emission)


EXECUTOR = Laser()
