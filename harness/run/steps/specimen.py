"""``specimen`` run side: mounted on a simulated station, asked of the operator (the injected console), or assumed."""

from __future__ import annotations

from harness.protocol.plan import Action
from harness.run.steps.base import PlanCheck, StepExecutor, StepRun

TYPO_NM = 20.0


class Specimen(StepExecutor):
    key = "specimen"

    def check(self, action: Action, check: PlanCheck) -> None:
        """An emission given for a line the station lacks, next to a line of the station that has none
        (within 20 nm): a typo (647 for 640) that would leave that line at its wavelength + 30 nm. A
        protocol for many stations may name lines a station lacks: that alone is no problem."""
        p = action.params
        if not check.facts.lines_known:
            return
        station = [k for k in check.facts.lines if k.replace(".", "", 1).isdigit()]
        for line in p.emission:
            if line in check.facts.lines:
                continue
            near = [k for k in station if k not in p.emission and abs(float(k) - float(line)) <= TYPO_NM]
            if near:
                check.add(action.line, f"specimen: emission for the {line} nm line, which the station lacks; its {near[0]} nm line has no "
                                       f"emission given (it would be {float(near[0]) + 30:g} nm): did you mean {near[0]}?")

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
