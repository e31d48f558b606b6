"""``specimen`` run side: mounted on a simulated station, asked of the operator (the injected console), or assumed."""

from __future__ import annotations

from harness.protocol.plan import Action
from harness.run.steps.base import PlanCheck, StepExecutor, StepRun


class Specimen(StepExecutor):
    key = "specimen"

    def check(self, action: Action, check: PlanCheck) -> None:
        p = action.params
        if check.facts.lines_known:
            for line in p.emission:
                if line not in check.facts.lines:
                    check.add(action.line, f"specimen: emission for the {line} nm line, but the station has no such line (it has "
                                           f"{', '.join(sorted(check.facts.lines, key=float)) or 'none'}): that line's emission would be its "
                                           "wavelength + 30 nm")

    def execute(self, action: Action, run: StepRun) -> None:
        p = action.params
        if run.station.sim is not None:
            run.station.sim.world.mount_sample(p.sample)
            how = "mounted on the simulated station"
        elif run.console.confirm(f"\nPlease prepare the specimen: {p.sample}. {p.instructions}\nPress Enter when ready (Ctrl-C aborts) "):
            how = "confirmed by the operator"
        else:
            how = "assumed ready (unattended run)"
        beads = {}
        if p.sample == "bead_slide":
            beads = {"bead_diameter_um": p.bead_diameter, "emission_nm": dict(p.emission)}
        run.journal.write("specimen", run.now(), sync=True, sample=p.sample, how=how, **beads)
        run.info.nbo["Specimen"] = p.sample


EXECUTOR = Specimen()
