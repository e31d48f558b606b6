"""Start-up time of the command line: ``--help`` and ``validate`` of every shipped protocol, each in
a fresh process, against a baseline measured in the same run: ``python -c pass`` (the interpreter's
own start-up, the floor any command pays).

Each command runs ``--repeats`` times, interleaved with the others so that a change of machine load
affects all of them alike; the median of each is printed, with its ratio to the baseline.

    python -m benchmarks.cli_startup [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchmarks._common import ROOT


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    protocols = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protocols").glob("*.yaml"))
    commands = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "python -m harness --help": [sys.executable, "-m", "harness", "--help"],
        f"python -m harness validate protocols/*.yaml ({len(protocols)} files)": [sys.executable, "-m", "harness", "validate", *protocols],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # warm the file cache once, not timed
        timed(argv)
    for _ in range(args.repeats):
        for name, argv in commands.items():
            times[name].append(timed(argv))
    baseline = statistics.median(times["python -c pass (baseline)"])
    width = max(len(name) for name in commands)
    print(f"median of {args.repeats} runs each, interleaved")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<{width}}  {median:6.3f} s  x{median / baseline:5.1f} the baseline  (min {min(values):.3f} s, max {max(values):.3f} s)")


if __name__ == "__main__":
    main()
