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
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT

# pytest's last line: "1 failed, 887 passed, 5 errors in 599.56s (0:09:59)", framed by "=" unless -q
SUMMARY = re.compile(r"^(?:=+ )?(.*) in ([\d.]+)s")
TIMEOUT_S = 3 * 3600  # a suite that hangs under load is a failure, not a wait for ever


def _busy() -> None:
    x = 0
    while True:  # pure CPU: the load a second job on the machine puts on it
        x = (x * 1103515245 + 12345) % 2147483648


def run_suite(extra: list[str]) -> tuple[float, dict[str, int], str]:
    """(wall seconds, counts of passed/failed/errors, the FAILED and ERROR lines). A run that ends
    without pytest's summary, or with a status other than 0 (all passed) or 1 (some failed), counts
    as one error: it crashed, hung or could not start."""
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=ROOT,
                             capture_output=True, text=True, timeout=TIMEOUT_S)
        stdout, status = out.stdout, out.returncode
    except subprocess.TimeoutExpired as exc:
        stdout, status = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or ""), None
    wall = time.perf_counter() - start
    lines = [line for line in stdout.splitlines() if SUMMARY.search(line) and re.search(r"\d+ (passed|failed|errors?)", line)]
    counts = {"passed": 0, "failed": 0, "errors": 0}
    for n, word in re.findall(r"(\d+) (passed|failed|errors?)", lines[-1] if lines else ""):
        counts["errors" if word.startswith("error") else word] += int(n)
    failures = "\n".join(line for line in stdout.splitlines() if line.startswith(("FAILED", "ERROR")))
    if failures or status not in (0, 1) or not lines:  # the whole output, for the tracebacks
        log = Path(tempfile.mkstemp(prefix="qc-suite-under-load-", suffix=".log")[1])
        log.write_text(stdout)
        failures += f"\n(the run's output: {log})"
    if not lines or status not in (0, 1):
        counts["errors"] += 1
        failures += f"\n(pytest ended with status {status}{', no summary line' if not lines else ''})"
    return wall, counts, failures.strip()


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
