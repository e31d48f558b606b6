"""Bring up the simulated part of a station: one world from the station file's ground truth, and
the front ends the real drivers talk to (SCPI servers on loopback, the TSI-SDK stand-in, Micro-Manager
Python stage devices)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.station.station_file import (
    LaserEntry,
    PowerMeterEntry,
    SimulatedXYEntry,
    SimulatedZEntry,
    StationFile,
    TsiCameraEntry,
)
from simulators import tsi_sdk
from simulators.clock import Clock
from simulators.mm_stage import SimulatedXYStage, SimulatedZDrive
from simulators.obis_scpi import ObisScpi
from simulators.params import CameraParams, MeterParams, WorldParams
from simulators.pm100_scpi import PM100Scpi
from simulators.scpi_server import ScpiServer
from simulators.world import World

SIM_SDK_PACKAGE = "simulators.tsi_sdk"


def world_params(station: StationFile) -> WorldParams:
    sim = station.simulation
    assert sim is not None
    lasers, meters, cameras, xys, zs = {}, {}, {}, {}, {}
    for label, d in station.devices.items():
        if isinstance(d, LaserEntry) and d.simulated:
            lasers[label] = d.simulation
        elif isinstance(d, PowerMeterEntry) and d.simulated:
            meters[label] = d.simulation or MeterParams()
        elif isinstance(d, TsiCameraEntry) and d.simulated:
            cameras[label] = d.simulation or CameraParams()
        elif isinstance(d, SimulatedXYEntry):
            xys[label] = d.simulation
        elif isinstance(d, SimulatedZEntry):
            zs[label] = d.simulation
    return WorldParams(
        seed=sim.seed,
        optics=sim.optics,
        sample=sim.sample,
        bead_field=sim.bead_field,
        uniform_slide=sim.uniform_slide,
        lasers=lasers,
        meters=meters,
        cameras=cameras,
        xy_stages=xys,
        z_drives=zs,
    )


@dataclass
class SimulatedHardware:
    """The running simulated world and its front ends; ``resources`` maps device label -> VISA resource."""

    world: World
    servers: dict[str, ScpiServer] = field(default_factory=dict)
    camera_serials: list[str] = field(default_factory=list)

    @property
    def clock(self) -> Clock:
        return self.world.clock

    def resource(self, label: str) -> str:
        return self.servers[label].resource

    def stage_device(self, label: str) -> SimulatedXYStage | SimulatedZDrive:
        if label in self.world.xy_stages:
            return SimulatedXYStage(self.world.xy_stages[label])
        return SimulatedZDrive(self.world.z_drives[label])

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        tsi_sdk.detach_cameras(self.camera_serials)
        self.camera_serials.clear()


def start_simulation(station: StationFile, clock: Clock) -> SimulatedHardware:
    world = World(world_params(station), clock)
    hw = SimulatedHardware(world)
    try:
        for label, meter in world.meters.items():
            hw.servers[label] = ScpiServer(PM100Scpi(meter), meter.faults, label, clock, meter.p.command_latency_s).start()
        for label, laser in world.lasers.items():
            hw.servers[label] = ScpiServer(ObisScpi(laser), laser.faults, label, clock, laser.p.command_latency_s).start()
        cams = {cam.p.serial: cam for cam in world.cameras.values()}
        tsi_sdk.attach_cameras(cams)
        hw.camera_serials = list(cams)
    except Exception:
        hw.stop()
        raise
    return hw
