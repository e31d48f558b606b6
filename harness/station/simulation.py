"""Bring up the simulated part of a station: one world from the station file's ground truth, and
for each simulated device the front end its real driver talks to (an SCPI server on loopback, a
camera on the TSI-SDK stand-in, the stage model under a Micro-Manager Python stage device), as its
driver kind says (``harness.station.drivers``).

``start_simulation`` raises whatever a front end raises while starting, after stopping those
started before it. ``SimulatedHardware.stop`` stops every front end and may be called twice."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from harness.station.drivers import driver_kind
from harness.station.drivers.base import FrontEnd
from harness.station.station_file import StationFile
from simulators.clock import Clock
from simulators.params import WorldParams
from simulators.scpi_server import ScpiServer
from simulators.world import World


def world_params(station: StationFile) -> WorldParams:
    """The world's ground truth: the ``simulation`` section and every simulated device's truth, in
    its driver's world table, keyed by label (in station-file order: it seeds each device's noise).
    The optics' NA and immersion index default to the station file's objective in use."""
    sim = station.simulation
    assert sim is not None
    tables: dict[str, dict[str, BaseModel]] = {"lasers": {}, "meters": {}, "cameras": {}, "xy_stages": {}, "z_drives": {}}
    for label, entry in station.devices.items():
        table = driver_kind(entry.driver).world_table
        truth = entry.simulation_truth()
        if table is not None and truth is not None:
            tables[table][label] = truth
    optics = sim.optics
    objective = station.instrument.optics()
    if objective is not None:  # the simulated objective is the one the station file says is in use, unless the simulation says otherwise
        optics = optics.model_copy(update={
            "na": optics.na if optics.na is not None else objective.na,
            "immersion_index": optics.immersion_index if optics.immersion_index is not None else objective.immersion_index,
        })
    return WorldParams(
        seed=sim.seed,
        day_zero=sim.day_zero,
        optics=optics,
        sample=sim.sample,
        bead_field=sim.bead_field,
        uniform_slide=sim.uniform_slide,
        bead_slide=sim.bead_slide,
        **tables,  # type: ignore[arg-type]  # each table holds its driver kinds' truth models (checked by WorldParams)
    )


@dataclass
class SimulatedHardware:
    """The running simulated world and the front ends of its devices, by device label."""

    world: World
    front_ends: dict[str, FrontEnd] = field(default_factory=dict)

    @property
    def clock(self) -> Clock:
        return self.world.clock

    @property
    def servers(self) -> dict[str, ScpiServer]:
        """The SCPI servers among the front ends."""
        return {label: f for label, f in self.front_ends.items() if isinstance(f, ScpiServer)}

    def front_end(self, label: str) -> FrontEnd:
        return self.front_ends[label]

    def stop(self) -> None:
        for front_end in self.front_ends.values():
            front_end.stop()
        self.front_ends.clear()


def start_simulation(station: StationFile, clock: Clock) -> SimulatedHardware:
    world = World(world_params(station), clock)
    hw = SimulatedHardware(world)
    try:
        for label, entry in station.devices.items():
            if entry.simulated:
                front_end = driver_kind(entry.driver).start_simulator(label, entry, world)
                if front_end is not None:
                    hw.front_ends[label] = front_end
    except Exception:
        hw.stop()
        raise
    return hw
