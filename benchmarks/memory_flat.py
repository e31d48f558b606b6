"""Memory over a long run: a 120-minute protocol sampling at 1 Hz (virtual time) and a run of
1000 frames, with the process's resident memory sampled as the run goes. Flat means the second
half of the run adds (almost) nothing to what the first half needed.

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


def measure(protocol_text: str, folder: Path) -> list[float]:
    path = folder / "bench.yaml"
    path.write_text(protocol_text)
    samples: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            samples.append(rss_mb())
            time.sleep(0.05)

    with Station.load(station_file({}, folder)) as station:
        runner = Runner(station, path, runs_dir=folder / "runs", quiet=True)
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        outcome = runner.run()
        stop.set()
        thread.join()
        samples.append(rss_mb())  # at the end too: a run on virtual time may take less than one interval
    assert outcome.status == "completed", outcome.reason
    return samples


def report(name: str, samples: list[float]) -> None:
    s = np.array(samples)
    n = len(s)
    first_half, second_half = s[: n // 2].max(), s[n // 2 :].max()
    print(f"  {name}: RSS start {s[0]:.0f} MB, peak first half {first_half:.0f} MB, peak second half {second_half:.0f} MB, "
          f"growth in second half {second_half - first_half:+.1f} MB ({len(s)} samples)")


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
