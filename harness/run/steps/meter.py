"""``meter`` run side: zero (with the lit lines off), wavelength setting, averaging."""

from __future__ import annotations

from harness.protocol.plan import Action
from harness.run.steps.base import StepExecutor, StepRun, lines_off


class Meter(StepExecutor):
    key = "meter"

    def execute(self, action: Action, run: StepRun) -> None:
        p = action.params
        meter = run.station.power_meter
        assert meter is not None
        if p.zero:
            lit = sorted(run.state.emitting)
            with lines_off(run, lit, "zeroing", restore_on_error=False):
                run.retry("zero", lambda: meter.zero())
            run.journal.write("setting", run.now(), device=meter.label, zeroed=True, lines_off_during_zero=lit)
        if p.wavelength is not None:
            nm = run.station.lasers[p.wavelength].wavelength_nm if isinstance(p.wavelength, str) else float(p.wavelength)
            run.retry("meter wavelength", lambda: meter.set_wavelength_nm(nm))
            run.state.meter_wavelength_nm = nm
            run.journal.write("setting", run.now(), device=meter.label, wavelength_nm=nm)
        if p.averaging is not None:
            averaging = int(p.averaging)
            run.retry("meter averaging", lambda: meter.set_averaging(averaging))
            run.state.averaging = averaging
            run.journal.write("setting", run.now(), device=meter.label, averaging=averaging)


EXECUTOR = Meter()
