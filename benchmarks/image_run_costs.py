"""Fixed costs of an image run: the whole ``microscope-qc run`` process of each shipped image
protocol (flat-field, stage-repeatability) on the simulated station (virtual time) against its
acquisition alone, measured in the same process.

The command runs in a fresh process, as a user runs it (results store included, in a temporary
folder). Inside it, the times of a few points are taken (``time.monotonic``, one clock for every
process): the run starts (``Runner.run``), the acquisition ends (the journal's ``run_end``: every
frame written and every stack finalized), analysis starts and ends, the manifest is written, and the
process exits (with its peak resident memory). The baseline is the acquisition; printed: the whole
process, its parts, the ratio whole process / acquisition, and the peak RSS.

    python -m benchmarks.image_run_costs [--size 2048] [--rounds 20] [--full-frame] [--protocols flat-field,stage-repeatability]

``--size N`` gives the camera N x N px (default: the station's, 1920 x 1080); the shipped
stage-repeatability protocol images a 512 x 512 region of it unless ``--full-frame``.

Measured on this 2-core machine (shared; the version before it in the same minutes), time after
acquisition / acquisition and peak RSS:
- flat-field, 50 frames of 2048 x 2048 (420 MB): 20.2 s / 21.9 s (0.92), 2532 MB before; 9.1 s /
  19.4 s (0.47), 347 MB now (the frames streamed into running sums, the stack read once for its
  hash: the manifest 0.44 s -> 0.06 s);
- flat-field, 50 frames of 1920 x 1080: 9.0 s / 10.4 s, 1345 MB before; 9.4 s / 12.4 s, 228 MB now:
  of the 8.4 s of analysis, the report's figures take 4.8 s and importing matplotlib 1.5 s;
- stage-repeatability, 320 frames of 512 x 512: 4.5 s / 15.5 s, 164 MB before; 3.7 s / 15.9 s,
  162 MB now.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, station_file

PROTOCOLS = ("flat-field", "stage-repeatability")


def _child(marks_file: Path, argv: list[str]) -> None:
    """Run the command line in this process with time marks; they are written at exit."""
    from harness.cli import commands as cli
    from harness.finishing import pipeline as finishing
    from harness.records import journal
    from harness.run import runner

    marks: dict[str, Any] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, time.monotonic())

    def wrap(owner: Any, attr: str, before: str, after: str | None = None) -> None:
        original = getattr(owner, attr)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            mark(before)
            try:
                return original(*args, **kwargs)
            finally:
                if after:
                    mark(after)

        setattr(owner, attr, wrapped)

    original_write = journal.Journal.write

    def write(self: Any, type_: str, *args: Any, **kwargs: Any) -> Any:
        out = original_write(self, type_, *args, **kwargs)
        if type_ == "run_end":
            mark("acquired")
        return out

    journal.Journal.write = write  # type: ignore[method-assign]
    wrap(runner.Runner, "run", "run_start", "run_end")
    wrap(finishing, "analyse", "analysis_start", "analysis_end")
    wrap(finishing, "write_manifest", "manifest_start", "manifest_end")

    def at_exit() -> None:
        marks["exit"] = time.monotonic()
        marks["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        marks_file.write_text(json.dumps(marks))

    atexit.register(at_exit)
    sys.argv = ["microscope-qc", *argv]
    cli.main()


def protocol_file(name: str, folder: Path, rounds: int, full_frame: bool) -> Path:
    if name != "stage-repeatability":
        return ROOT / "protocols" / f"{name}.yaml"
    from benchmarks.analysis_speed import protocol_variant

    return protocol_variant(folder, rounds, full_frame=full_frame)


def measure(name: str, folder: Path, station: Path, rounds: int, full_frame: bool) -> dict[str, Any]:
    marks_file = folder / f"{name}.marks.json"
    protocol = protocol_file(name, folder, rounds, full_frame)
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "xdg"), "MICROSCOPE_QC_DB": f"sqlite:///{folder / 'results.sqlite'}",
           "MICROSCOPE_QC_LOCK_DIR": str(folder / "locks"), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "benchmarks.image_run_costs", "--child", str(marks_file), "--",
            "run", str(protocol), "--station", str(station), "--runs-dir", str(folder / "runs"), "--yes", "--quiet"]
    t = time.monotonic()
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    marks = json.loads(marks_file.read_text()) if marks_file.is_file() else {}
    marks["process_start"], marks["process_end"] = t, time.monotonic()
    if out.returncode != 0:
        raise SystemExit(f"{name}: the run failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    run_folder = max((folder / "runs").glob(f"*_{name}*"), key=lambda p: p.stat().st_mtime)
    run = json.loads((run_folder / "run.json").read_text())
    stacks = {n: e for n, e in run["files"].items() if e["kind"] == "ome_tiff"}
    marks["frames"] = sum(e["frames"] for e in stacks.values())
    marks["stack_mb"] = sum((run_folder / n).stat().st_size for n in stacks) / 1e6
    import tifffile

    with tifffile.TiffFile(run_folder / next(iter(stacks))) as tif:
        marks["shape"] = tif.pages[0].shape  # type: ignore[union-attr]
    return marks


def report(name: str, m: dict[str, Any]) -> None:
    whole = m["process_end"] - m["process_start"]
    acquisition = m["acquired"] - m["run_start"]
    startup = m["run_start"] - m["process_start"]
    after = m["run_end"] - m["acquired"]
    analysis = m["analysis_end"] - m["analysis_start"]
    manifest = m["manifest_end"] - m["manifest_start"]
    leaving = m["process_end"] - m["run_end"]
    h, w = m["shape"]
    print(f"{name}: {m['frames']} frames of {w} x {h} px ({m['stack_mb']:.0f} MB of stack)")
    print(f"  whole process {whole:.2f} s = start-up {startup:.2f} s + acquisition {acquisition:.2f} s "
          f"+ after acquisition {after:.2f} s (analysis {analysis:.2f} s, manifest {manifest:.2f} s) + exit {leaving:.2f} s")
    print(f"  ratio whole process / acquisition: {whole / acquisition:.2f}; after acquisition / acquisition: {after / acquisition:.2f}")
    print(f"  peak RSS {m['peak_rss_mb']:.0f} MB")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(Path(sys.argv[2]), sys.argv[4:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=None, help="camera N x N px (default: the station's)")
    ap.add_argument("--rounds", type=int, default=20, help="stage-repeatability rounds per move size (shipped: 20)")
    ap.add_argument("--full-frame", action="store_true", help="stage-repeatability on full frames (no centre_roi)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qc-bench-costs-"))
    try:
        station = station_file({}, folder)
        if args.size:
            text = station.read_text()
            text = re.sub(r"width_px: \d+", f"width_px: {args.size}", text)
            text = re.sub(r"height_px: \d+", f"height_px: {args.size}", text)
            station.write_text(text)
        for name in args.protocols.split(","):
            report(name, measure(name, folder, station, args.rounds, args.full_frame))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
