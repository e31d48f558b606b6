"""Analysis time of the largest shipped protocol: stage repeatability (QUAREP WG6, 2 move sizes x
20 rounds x 4 directions = 160 reference/return pairs, 320 images) on full 2048 x 2048 frames.

The shipped protocol runs on a simulated station whose camera is 2048 x 2048, with its
``centre_roi`` removed (full frames), on virtual time: the camera renders each frame when the
driver polls for it and the poll's time-out is spent in station time, so a loaded machine makes the
run slower but never makes a frame miss its time-out (on a real clock at x5000 the 2048 x 2048
frames missed the 2.2 s frame time-out when other work kept the cores busy). Then ``analyse_run`` (registration of every pair, tables,
verdicts, OME annotations, report) is timed against a baseline measured in the same run: reading
every frame of the stack from disk with tifffile (the floor any analysis pays).

    python -m benchmarks.analysis_speed [--size 2048] [--rounds 20]
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

import tifffile

from benchmarks._common import ROOT, station_file
from harness.finishing.results import analyse_run
from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station


def protocol_variant(folder: Path, rounds: int, full_frame: bool = True) -> Path:
    """The shipped stage-repeatability protocol with ``rounds`` rounds per move size, on full frames
    (its ``centre_roi`` removed) unless ``full_frame`` is False."""
    text = (ROOT / "protocols" / "stage-repeatability.yaml").read_text(encoding="utf-8")
    assert ", centre_roi: [512, 512]" in text and "repeat: 20" in text, "the shipped protocol changed: update this benchmark"
    if full_frame:
        text = text.replace(", centre_roi: [512, 512]", "")
    text = re.sub(r"repeat: 20\b", f"repeat: {rounds}", text)
    path = folder / ("stage-repeatability-full-frame.yaml" if full_frame else "stage-repeatability.yaml")
    path.write_text(text, encoding="utf-8")
    return path


def read_all(path: Path) -> float:
    t = time.perf_counter()
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            page.asarray()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qc-bench-analysis-"))
    try:
        station = station_file({}, folder)  # the shipped station: virtual time
        text = station.read_text()
        text = re.sub(r"width_px: \d+", f"width_px: {args.size}", text)
        text = re.sub(r"height_px: \d+", f"height_px: {args.size}", text)
        station.write_text(text)
        t = time.perf_counter()
        with Station.load(station) as st:
            runner = Runner(st, protocol_variant(folder, args.rounds), runs_dir=folder / "runs", quiet=True)
            outcome = runner.run()
        acquired = time.perf_counter() - t
        assert outcome.status == "completed", outcome.reason
        stack = outcome.folder / "repeatability.ome.tif"
        with tifffile.TiffFile(stack) as tif:
            frames, shape = len(tif.pages), tif.pages[0].shape
        read_s = read_all(stack)
        t = time.perf_counter()
        data = analyse_run(outcome.folder)
        analysis_s = time.perf_counter() - t
        pairs = sum(int(r["metrics"]["pairs"]["value"]) for r in data["results"] if r["kind"] == "stage_repeatability")
        print(f"acquisition (simulated, virtual time): {acquired:.1f} s for {frames} frames of {shape[1]} x {shape[0]}")
        print(f"baseline: reading all {frames} frames: {read_s:.2f} s")
        print(f"analysis of {frames} images ({pairs} pairs), report included: {analysis_s:.1f} s")
        print(f"analysis ratio harness / frame reading: {analysis_s / read_s:.1f}")
        print(f"verdict {data['verdict']}; under a minute: {'yes' if analysis_s < 60 else 'NO'}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
