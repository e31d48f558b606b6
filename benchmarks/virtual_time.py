"""Whole runs of shipped protocols on virtual time against the same runs on real time sped up x120
(how simulated stations ran before virtual time), measured in the same run of this script.

Each protocol runs as a user runs it (``python -m harness run NAME``, a fresh process) on the
embedded simulated station, once on virtual time and once with ``--time-scale 120``. Printed per
run: wall time of the whole process, of the acquisition alone (journal ``run_start`` to
``run_end``), the station time it covered, and how late samples came (station seconds); then the
ratio real-time x120 / virtual of the whole process.

    python -m benchmarks.virtual_time [--protocols power-stability-short stage-repeatability] [--time-scale 120]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks._common import ROOT

TINY = """\
protocol: tiny
title: ten readings and two frames
steps:
  - laser: {line: 488, setpoint: 10 mW, emission: on}
  - sample: {series: power, every: 1 s, for: 10 s}
  - acquire: {stack: frames, frames: 2, exposure: 10 ms, centre_roi: [64, 64]}
  - laser: {line: 488, emission: off}
"""


def run(protocol: str, folder: Path, time_scale: float | None) -> dict[str, float]:
    env = dict(os.environ, XDG_DATA_HOME=str(folder / "xdg"), MICROSCOPE_QC_LOCK_DIR=str(folder / "locks"))
    argv = [sys.executable, "-m", "harness", "run", protocol, "--runs-dir", str(folder / "runs"), "-q", "-y", "--no-store"]
    if time_scale is not None:
        argv += ["--time-scale", f"{time_scale:g}"]
    t = time.perf_counter()
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{protocol}: exit {out.returncode} (its run folders are kept in {folder}): {out.stderr[-2000:]}")
    run_folder = Path(out.stdout.split(": ", 1)[1].strip().splitlines()[0])
    records = [json.loads(line) for line in (run_folder / "journal.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["type"] == "run_start")
    end = next(r for r in records if r["type"] == "run_end")
    acquisition = (datetime.fromisoformat(end["utc"]) - datetime.fromisoformat(start["utc"])).total_seconds()
    lateness = []
    for series in run_folder.glob("*.csv"):
        with open(series, newline="") as f:
            lateness += [float(r["lateness_s"]) for r in csv.DictReader(f) if r.get("lateness_s")]
    return {"wall_s": wall, "acquisition_s": acquisition, "station_s": float(end["t_s"]),
            "max_late_s": max(lateness, default=0.0), "late_samples": sum(x > 0 for x in lateness)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", nargs="+", default=["power-stability-short", "stage-repeatability"])
    ap.add_argument("--time-scale", type=float, default=120.0)
    ap.add_argument("--tiny", action="store_true", help="a ten-reading, two-frame protocol instead (a quick check)")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qc-bench-vt-"))
    protocols = args.protocols
    if args.tiny:
        (folder / "tiny.yaml").write_text(TINY)
        protocols = [str(folder / "tiny.yaml")]
    print(f"whole runs on the simulated station: virtual time against real time x{args.time_scale:g}")
    for protocol in protocols:
        virtual = run(protocol, folder, None)
        real = run(protocol, folder, args.time_scale)
        for name, r in ((" virtual", virtual), (f" x{args.time_scale:g}", real)):
            print(f"  {Path(protocol).stem:<24}{name:>8}: process {r['wall_s']:6.2f} s, acquisition {r['acquisition_s']:6.2f} s, "
                  f"station {r['station_s']:8.0f} s, late samples {r['late_samples']:4.0f} (max {r['max_late_s']:.3f} s)")
        print(f"  {Path(protocol).stem:<24} process time ratio real-time x{args.time_scale:g} / virtual: "
              f"{real['wall_s'] / virtual['wall_s']:.1f}")
    shutil.rmtree(folder, ignore_errors=True)  # kept when a run failed (above)


if __name__ == "__main__":
    main()
