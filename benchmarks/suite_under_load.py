"""The test suite, run several times in a row while other processes keep every core busy: the suite
must pass on a loaded machine (no test may depend on how fast the machine is).

The load is one busy process per core (``--load-procs``), started before the first run and stopped
after the last; each run is ``python -m pytest`` with the project's settings (every core, the kill
campaign left out), its extra arguments after ``--``. Printed per run: wall time, passed, failed and
errors (from pytest's summary line); then the wall time of an unloaded run if ``--baseline`` ran one
first, and the ratio loaded / unloaded.

    python -m benchmarks.suite_under_load [--runs 3] [--load-procs N] [--baseline] [-- -x tests/test_cli.py]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import time

from benchmarks._common import ROOT

SUMMARY = re.compile(r"=+ (.*) in ([\d.]+)s")


def _busy() -> None:
    x = 0
    while True:  # pure CPU: the load a second job on the machine puts on it
        x = (x * 1103515245 + 12345) % 2147483648


def run_suite(extra: list[str]) -> tuple[float, dict[str, int], str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in out.stdout.splitlines() if SUMMARY.search(line)]
    counts = {k: 0 for k in ("passed", "failed", "error", "errors")}
    for n, word in re.findall(r"(\d+) (passed|failed|errors?)", lines[-1] if lines else ""):
        counts[word] += int(n)
    counts["errors"] += counts.pop("error")
    failures = "\n".join(line for line in out.stdout.splitlines() if line.startswith(("FAILED", "ERROR")))
    return wall, counts, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--load-procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--baseline", action="store_true", help="one unloaded run first, for the ratio")
    ap.add_argument("extra", nargs="*", help="pytest arguments (after --)")
    args = ap.parse_args()
    baseline = None
    if args.baseline:
        baseline, counts, failures = run_suite(args.extra)
        print(f"unloaded: {baseline:7.1f} s, {counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors", flush=True)
        if failures:
            print(failures, flush=True)
    load = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load_procs)]
    for p in load:
        p.start()
    total_bad = 0
    try:
        for i in range(1, args.runs + 1):
            wall, counts, failures = run_suite(args.extra)
            total_bad += counts["failed"] + counts["errors"]
            ratio = f", ratio loaded / unloaded {wall / baseline:.2f}" if baseline else ""
            print(f"run {i} under load ({args.load_procs} busy processes): {wall:7.1f} s, {counts['passed']} passed, "
                  f"{counts['failed']} failed, {counts['errors']} errors{ratio}", flush=True)
            if failures:
                print(failures, flush=True)
    finally:
        for p in load:
            p.terminate()
        for p in load:
            p.join()
    print(f"failures and errors over {args.runs} loaded runs: {total_bad}")
    sys.exit(1 if total_bad else 0)


if __name__ == "__main__":
    main()
