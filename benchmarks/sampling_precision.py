"""Real-time sampling precision: the harness reads the simulated PM100D over its socket at 10 Hz
(time scale 1) and we measure the interval error (start of each reading against its deadline
t0 + k/10) and the accumulated drift. Baselines in the same run: a naive ``read(); sleep(0.1)``
loop, the pymmcore-plus MDA time plan (DemoCamera, 100 ms interval), and the harness's clock
waiting for the same deadlines with no I/O at all (the floor the machine's scheduler sets).

    python -m benchmarks.sampling_precision [--seconds 60]
"""

from __future__ import annotations

import argparse
import atexit
import csv
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import station_file, stats_ms
from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station

PROTOCOL = """\
protocol: bench-sampling
title: 10 Hz sampling
steps:
  - meter: {{wavelength: 488, averaging: 1}}
  - sample: {{series: power, every: 100 ms, for: {seconds} s}}
"""


def harness_errors(seconds: float, folder: Path) -> tuple[np.ndarray, float]:
    protocol = folder / "bench.yaml"
    protocol.write_text(PROTOCOL.format(seconds=seconds))
    with Station.load(station_file({"simulation": {"clock": "real", "time_scale": 1}}, folder)) as station:
        outcome = Runner(station, protocol, runs_dir=folder / "runs", quiet=True).run()
    with open(outcome.folder / "power.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    deadlines = np.array([float(r["deadline_s"]) for r in rows])
    times = np.array([float(r["time_s"]) for r in rows])
    errors = times - deadlines
    return errors, errors[-1] - errors[0]


def naive_errors(seconds: float, folder: Path) -> tuple[np.ndarray, float]:
    with Station.load(station_file({"simulation": {"clock": "real", "time_scale": 1}}, folder)) as station:
        meter = station.power_meter
        meter.set_averaging(1)
        n = int(round(seconds / 0.1))
        starts = []
        t0 = time.monotonic()
        for _ in range(n):
            starts.append(time.monotonic() - t0)
            meter.read_w()
            time.sleep(0.1)
    errors = np.array(starts) - 0.1 * np.arange(n)
    return errors, errors[-1] - errors[0]


def floor_errors(seconds: float) -> tuple[np.ndarray, float]:
    """The same clock and deadlines with no I/O at all: what this machine's scheduler allows."""
    from simulators.clock import ScaledClock

    clock = ScaledClock(1.0)
    n = int(round(seconds / 0.1))
    t0 = clock.now()
    errors = []
    for k in range(n):
        clock.sleep_until(t0 + 0.1 * k)
        errors.append(clock.now() - (t0 + 0.1 * k))
    e = np.array(errors)
    return e, e[-1] - e[0]


def mda_errors(seconds: float) -> tuple[np.ndarray, float]:
    import mm_test_adapters
    from pymmcore_plus import CMMCorePlus
    from useq import MDASequence

    core = CMMCorePlus()
    core.setDeviceAdapterSearchPaths([mm_test_adapters.device_adapter_path()])
    core.loadSystemConfiguration(str(Path(__file__).resolve().parents[1] / "configs" / "demo-micromanager.cfg"))
    core.setExposure(1)
    n = int(round(seconds / 0.1))
    stamps: list[float] = []
    t0: list[float] = []
    core.mda.events.sequenceStarted.connect(lambda *a: t0.append(time.perf_counter()))
    core.mda.events.frameReady.connect(lambda *a: stamps.append(time.perf_counter()))
    core.mda.run(MDASequence(time_plan={"interval": 0.1, "loops": n}))
    core.unloadAllDevices()
    times = np.array(stamps) - stamps[0]
    errors = times - 0.1 * np.arange(len(times))
    return errors, errors[-1] - errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qc-bench-"))
    atexit.register(shutil.rmtree, folder, True)  # the runs are not kept
    results = {
        "harness runner (simulated PM100D over pyvisa-py socket)": harness_errors(args.seconds, folder),
        "baseline: naive read(); sleep(0.1)": naive_errors(args.seconds, folder),
        "baseline: pymmcore-plus MDA time plan (DemoCamera)": mda_errors(args.seconds),
        "baseline: the same clock with no I/O (this machine's floor)": floor_errors(args.seconds),
    }
    print(f"10 Hz for {args.seconds:g} s of real time; interval error = start - (t0 + k * 100 ms)")
    for name, (errors, drift) in results.items():
        print(f"  {name}: {stats_ms(errors)}; accumulated drift {drift * 1e3:+.1f} ms over {len(errors)} samples")
    ours = np.percentile(np.abs(results[next(iter(results))][0]), 99)
    for name, (errors, _) in list(results.items())[1:]:
        print(f"  p99 ratio harness / {name.split(': ', 1)[1]}: {ours / np.percentile(np.abs(errors), 99):.3f}")


if __name__ == "__main__":
    main()
