"""``set_property`` run side: the device, property and value checked against the loaded station
(preflight); the property set."""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

from harness.common.errors import UserError
from harness.protocol.plan import Action
from harness.run.station_facts import device_label
from harness.run.steps.base import PlanCheck, StepExecutor, StepRun


class SetProperty(StepExecutor):
    key = "set_property"

    def check(self, action: Action, check: PlanCheck) -> None:
        _check_property(action, action.params, check)

    def execute(self, action: Action, run: StepRun) -> None:
        p = action.params
        f = run.facts
        label = device_label(p.device, f.role_labels, {k: line.label for k, line in f.lines.items()}, f.devices)
        if label is None:
            raise UserError(f"{run.protocol_path}:{action.line}: protocol: set_property: no device or role {p.device!r} on station {f.name}")
        from harness.station.roles import device_call  # brings Micro-Manager (pymmcore-plus): not for preflight or validate

        run.retry(f"{label}.{p.property}", lambda: device_call(label, lambda: run.station.core.setProperty(label, p.property, p.value)))
        run.journal.write("setting", run.now(), device=label, property=p.property, value=p.value)


def _check_property(action: Action, p: Any, check: PlanCheck) -> None:
    facts = check.facts
    label = device_label(p.device, facts.role_labels, check.lasers, facts.devices)
    if label is None:
        check.add(action.line, f"set_property: no device or role {p.device!r} on station {facts.name} "
                               f"(roles: {', '.join(sorted(facts.role_labels)) or 'none'}; devices: {', '.join(sorted(facts.devices or ())) or 'none'})")
        return
    core = facts.core
    if core is None:
        return  # said in skipped
    names = [str(getattr(n, "value", n)) for n in core.getDevicePropertyNames(label)]  # some names are Keyword enums
    if p.property not in names:
        close = get_close_matches(p.property, names, n=1)
        check.add(action.line, f"set_property: device {label} has no property {p.property!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                  + f"; it has {', '.join(names)}")
        return
    if core.isPropertyReadOnly(label, p.property):
        check.add(action.line, f"set_property: {label}.{p.property} is read-only")
        return
    value = p.value
    text = ("1" if value else "0") if isinstance(value, bool) else str(value)
    allowed = [str(getattr(v, "value", v)) for v in core.getAllowedPropertyValues(label, p.property)]
    if allowed and text not in allowed and not any(_same_number(text, a) for a in allowed):
        check.add(action.line, f"set_property: {label}.{p.property} = {value!r} is not allowed; allowed: {', '.join(allowed)}")
        return
    kind = int(core.getPropertyType(label, p.property))  # 1 string, 2 float, 3 integer
    if kind in (2, 3):
        try:
            number = float(text)
        except ValueError:
            check.add(action.line, f"set_property: {label}.{p.property} takes a number, not {value!r}")
            return
        if kind == 3 and number != int(number):
            check.add(action.line, f"set_property: {label}.{p.property} takes an integer, not {value!r}")
        if core.hasPropertyLimits(label, p.property):
            lo, hi = float(core.getPropertyLowerLimit(label, p.property)), float(core.getPropertyUpperLimit(label, p.property))
            if not lo <= number <= hi:
                check.add(action.line, f"set_property: {label}.{p.property} = {value!r} is outside its limits {lo:g} .. {hi:g}")


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


EXECUTOR = SetProperty()
