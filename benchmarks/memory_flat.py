"""Memory over a long run: a 120-minute protocol sampling at 1 Hz (virtual time) and a run of
1000 frames, with the process's resident memory read at every step of the acquisition (by the
run's progress, so halves are halves of the station time, whatever the wall time) and, for the
whole run with its finishing (analysis, report), by a thread every 50 ms. Flat means the second half
of the acquisition adds (almost) nothing to what the first half needed.

    python -m benchmarks.memory_flat [--minutes 120] [--frames 1000]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._common import station_file
from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station

SAMPLING = """\
protocol: bench-memory-sampling
title: long sampling
steps:
  - meter: {{wavelength: 488, averaging: 10}}
  - laser: {{line: 488, setpoint: 10 mW, emission: on}}
  - sample: {{series: power, every: 1 s, for: {minutes} min}}
  - laser: {{line: 488, emission: off}}
"""

FRAMES = """\
protocol: bench-memory-frames
title: many frames
steps:
  - laser: {{line: 488, setpoint: 20 %, emission: on}}
  - acquire: {{stack: frames, frames: {frames}, exposure: 10 ms, centre_roi: [512, 512]}}
  - laser: {{line: 488, emission: off}}
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class RssByProgress:
    """A progress display that reads the resident memory at every update of the acquisition."""

    def __init__(self, total_s: float) -> None:
        self.total_s = total_s
        self.samples: list[tuple[float, float]] = []  # (fraction of the planned station time, MB)

    def update(self, done_s: float, step: str) -> None:
        self.samples.append((done_s / self.total_s if self.total_s > 0 else 1.0, rss_mb()))

    def close(self) -> None:
        pass


def measure(protocol_text: str, folder: Path) -> tuple[list[tuple[float, float]], float]:
    """(RSS by acquisition progress, peak RSS of the whole run with its finishing)."""
    path = folder / "bench.yaml"
    path.write_text(protocol_text)
    peak = [rss_mb()]
    stop = threading.Event()
    displays: list[RssByProgress] = []

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.05)

    def progress(total_s: float) -> RssByProgress:
        displays.append(RssByProgress(total_s))
        return displays[-1]

    with Station.load(station_file({}, folder)) as station:
        runner = Runner(station, path, runs_dir=folder / "runs", quiet=True, progress=progress)
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        start_mb = rss_mb()
        outcome = runner.run()
        stop.set()
        thread.join()
    assert outcome.status == "completed", outcome.reason
    return [(0.0, start_mb), *displays[0].samples], max(peak[0], rss_mb())


def report(name: str, measured: tuple[list[tuple[float, float]], float]) -> None:
    samples, whole_peak = measured
    frac = np.array([f for f, _ in samples])
    mb = np.array([m for _, m in samples])
    first_half, second_half = mb[frac <= 0.5].max(), mb[frac > 0.5].max()
    print(f"  {name}: acquisition RSS start {mb[0]:.0f} MB, peak first half {first_half:.0f} MB, peak second half {second_half:.0f} MB, "
          f"growth in second half {second_half - first_half:+.1f} MB ({len(mb)} readings); "
          f"whole run with its finishing: peak {whole_peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qc-bench-"))
    atexit.register(shutil.rmtree, folder, True)  # the runs are not kept
    print("resident memory during runs (Linux /proc/self/statm)")
    report(f"{args.minutes:g} min at 1 Hz", measure(SAMPLING.format(minutes=args.minutes), folder))
    report(f"{args.frames} frames of 512x512", measure(FRAMES.format(frames=args.frames), folder))


if __name__ == "__main__":
    main()
