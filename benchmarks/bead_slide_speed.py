"""Frames per second of the simulated bead slide in a z-stack protocol: per laser line (4 lines), a
z-stack of ``--planes`` planes over 8 theoretical axial FWHMs of that line, each plane approached from
below by the Z drive (backlash, repeatability), rendered by the camera (``CameraModel.render``: the
bead slide's scene at the drive's true position, then shot and read noise). Two objectives: 20x/0.75
air (0.252 um pixels) and 60x/1.4 oil (0.084 um pixels), default bead density (5000 per mm^2). Also
the time to compute the four lines' PSF truth (``World.psf_truth``) once.

    python -m benchmarks.bead_slide_speed [--sizes 256 512] [--planes 30]
"""

from __future__ import annotations

import argparse
import time

from simulators.camera import Exposure
from simulators.params import AxisParams, CameraParams, LaserParams, OpticsParams, WorldParams, ZDriveParams
from simulators.world import World

OBJECTIVES = {"20x/0.75 air": (20.0, 0.75, 1.0), "60x/1.4 oil": (60.0, 1.4, 1.518)}
LINES = (405, 488, 561, 640)


def world(size: int, magnification: float, na: float, n: float) -> World:
    w = World(WorldParams(
        seed=7,
        sample="bead_slide",
        optics=OpticsParams(magnification=magnification, na=na, immersion_index=n),
        lasers={f"Laser{nm}": LaserParams(wavelength_nm=nm, nominal_power_mw=100, cdrh=False) for nm in LINES},
        cameras={"Camera": CameraParams(width_px=size, height_px=size, pixel_size_um=5.04)},
        z_drives={"Z": ZDriveParams(z=AxisParams(min_um=0, max_um=10000, speed_um_per_s=1000, backlash_um=0.2,
                                                 repeatability_sigma_um=0.02))},
    ))
    w.mount_sample("bead_slide")
    return w


def measure(size: int, objective: str, planes: int) -> tuple[float, float, float, int]:
    """(seconds for the truth, wall s per frame, process s per frame, beads in the field)."""
    magnification, na, n = OBJECTIVES[objective]
    w = world(size, magnification, na, n)
    t0 = time.perf_counter()
    for laser in w.lasers:
        w.psf_truth(laser)
    truth_s = time.perf_counter() - t0
    camera, drive = w.cameras["Camera"], w.z_drives["Z"]
    exposure = Exposure(0.1, (0, 0, size - 1, size - 1))
    wall, cpu, frames = time.perf_counter(), time.process_time(), 0
    for name, laser in w.lasers.items():
        for other in w.lasers.values():
            other.set_emission(False)
        laser.set_setpoint_mw(10.0)
        laser.set_emission(True)
        extent = 8 * w.psf_truth(name).axial_fwhm_um
        for k in range(planes):
            z = 2000.0 - extent / 2 + extent * k / (planes - 1)
            drive.move({"z": z - 1.0})
            drive.move({"z": z})
            w.clock.advance(0.2)
            camera.render(w.clock.now(), exposure)
            frames += 1
    wall, cpu = (time.perf_counter() - wall) / frames, (time.process_time() - cpu) / frames
    fov = camera.field_of_view(w.clock.now(), exposure)
    beads = len(w.bead_positions_um(fov.x0_um, fov.x0_um + size * fov.pixel_um, fov.y0_um, fov.y0_um + size * fov.pixel_um))
    return truth_s, wall, cpu, beads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--planes", type=int, default=30)
    args = parser.parse_args()
    print(f"bead slide z-stacks: {len(LINES)} lines x {args.planes} planes over 8 axial FWHMs, camera render per plane")
    for size in args.sizes:
        for objective in OBJECTIVES:
            truth_s, wall, cpu, beads = measure(size, objective, args.planes)
            total = wall * len(LINES) * args.planes
            print(f"  {size}x{size} {objective:13s} {beads:4d} beads in the field: {1 / wall:6.1f} frames/s "
                  f"({1 / cpu:6.1f} per process-second), protocol {total:5.1f} s, truth of 4 lines {truth_s:4.1f} s")


if __name__ == "__main__":
    main()
