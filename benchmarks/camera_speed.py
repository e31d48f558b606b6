"""Frames per second of the simulated camera (``CameraModel.render``: scene, dark current, shot and read
noise, gain, rounding to uint16) on the shipped station's physics, against numpy's bare random generation
of the same frame (one ``rng.standard_normal(shape, dtype=float32)``) measured in the same run, the two
alternating frame by frame. Scenes: the uniform slide (flat-field; 20 % of the 488 line, 200 ms, about
half the full well), the bead field (stage-repeatability; the same light, a few e- of background: exact
Poisson noise) with the stage at rest (no thermal drift: the scene is reused), and the bead field at a new
stage position every frame (as in stage-repeatability, where the stage's thermal drift alone moves the
field of view between frames), and dark frames (the light off: every pixel without a defect drawn from
one exact law per PRNU level, as in EMVA 1288 dark series). The camera is the station's, with its fixed
patterns (DSNU, PRNU) and defect pixels.

    python -m benchmarks.camera_speed [--sizes 512 2048] [--frames 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._common import ROOT
from harness.run.preflight import read_station_file
from harness.station.simulation import world_params
from simulators.camera import CameraModel, Exposure
from simulators.params import CameraParams
from simulators.world import World

SCENES = ("uniform_slide", "bead_field", "bead_field_moving", "dark")


def camera(sensor: int, scene: str) -> CameraModel:
    station, _ = read_station_file(ROOT / "configs" / "simulated.yaml")
    params = world_params(station)
    cam = params.cameras["Camera"].model_dump()
    cam.update(width_px=sensor, height_px=sensor)
    world = World(params.model_copy(update={"cameras": {"Camera": CameraParams(**cam)}}))
    world.mount_sample("uniform_slide" if scene == "uniform_slide" else "bead_field")
    laser = world.lasers["Laser488"]
    laser.set_setpoint_mw(0.2 * laser.p.nominal_power_mw)
    laser.set_emission(scene != "dark")
    model = world.cameras["Camera"]
    if scene == "bead_field_moving":
        model.stage_position = lambda t: (3.7 * t, -2.9 * t)  # a new field of view every frame
    else:
        model.stage_position = lambda t: (1000.0, 2000.0)  # a stage at rest, without thermal drift
    return model


def measure(size: int, sensor: int, scene: str, frames: int) -> tuple[float, float, float]:
    """(median s per rendered frame, median s per bare normal frame, mean ADU of the last frame)."""
    model = camera(sensor, scene)
    x0 = (sensor - size) // 2
    exposure = Exposure(0.2, (x0, x0, x0 + size - 1, x0 + size - 1))
    rng = np.random.default_rng(1)
    model.render(100.0, exposure)  # warm the caches (as the second frame of a run finds them)
    rng.standard_normal((size, size), dtype=np.float32)
    render, bare = [], []
    frame = np.zeros(1)
    for k in range(frames):
        t = time.perf_counter()
        frame = model.render(101.0 + k, exposure)
        render.append(time.perf_counter() - t)
        t = time.perf_counter()
        rng.standard_normal((size, size), dtype=np.float32)
        bare.append(time.perf_counter() - t)
    return float(np.median(render)), float(np.median(bare)), float(frame.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    sensor = max(args.sizes)
    print(f"CameraModel.render on a {sensor}x{sensor} sensor (centred ROI), median of {args.frames} frames;")
    print("  the baseline: rng.standard_normal(shape, dtype=float32), one frame, alternating with the renders")
    for size in args.sizes:
        for scene in SCENES:
            r, b, mean = measure(size, sensor, scene, args.frames)
            print(
                f"  {size}x{size} {scene:18s} render {1 / r:7.1f} frames/s, numpy {1 / b:7.1f} frames/s, "
                f"ratio render / numpy {r / b:5.2f} (mean {mean:.0f} ADU)"
            )


if __name__ == "__main__":
    main()
