"""Streaming 2048 x 2048 uint16 frames to OME-TIFF: the harness's writer (pages as frames arrive,
schema-validated OME-XML written at the start and rewritten at the end) against tifffile writing
the same frames with no metadata, in the same run. Both end with fsync (the data is on disk);
repeats alternate which goes first; the ratio is the median of the paired ratios.

    python -m benchmarks.ome_throughput [--frames 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tifffile

from benchmarks._common import fsync_file
from harness.protocol.plan import StackPlan
from harness.records.image_records import InstrumentInfo, LineInfo, PlaneInfo
from harness.records.ome_writer import OmeTiffStack


def info() -> InstrumentInfo:
    return InstrumentInfo(
        microscope={"manufacturer": "Bench", "model": "B1", "type": "Inverted"},
        lines=[LineInfo("488", 488.0, 100.0, "Coherent", "OBIS", "1")],
        camera={"vendor": "Thorlabs", "model": "CS", "serial": "1"},
        objective={"nominal_magnification": 20.0, "lens_na": 0.75, "immersion": "Air"},
        filters=[], pixel_size_um=0.25, bit_depth=12, run={"RunId": "bench", "ToolVersion": "bench"},
    )


def write_raw(path: Path, frames: list[np.ndarray]) -> float:
    t = time.perf_counter()
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for frame in frames:
            tw.write(frame, photometric="minisblack", contiguous=False, metadata=None)
    fsync_file(path)
    return time.perf_counter() - t


def write_ome(path: Path, frames: list[np.ndarray]) -> float:
    t = time.perf_counter()
    stack = OmeTiffStack(path, StackPlan("bench", ["488"], {"488": len(frames)}), info(), datetime.now(timezone.utc))
    for k, frame in enumerate(frames):
        stack.write(frame, PlaneInfo(0, k, -1, 0.1 * k, 0.05, 0.0, 0.0, 0.0))
    stack.finalize()
    fsync_file(path)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = [rng.integers(90, 4000, (args.size, args.size), dtype=np.uint16) for _ in range(min(args.frames, 8))]
    frames = [frames[k % len(frames)] for k in range(args.frames)]
    mb = args.frames * frames[0].nbytes / 1e6
    folder = Path(tempfile.mkdtemp(prefix="qc-bench-"))
    atexit.register(shutil.rmtree, folder, True)  # the runs are not kept
    raw, ome = [], []
    for r in range(args.repeats):
        pair = [("raw", write_raw, folder / f"raw{r}.tif"), ("ome", write_ome, folder / f"ome{r}.ome.tif")]
        for kind, fn, path in pair if r % 2 == 0 else pair[::-1]:
            (raw if kind == "raw" else ome).append(fn(path, frames))
            path.unlink()
    ratios = np.array(raw) / np.array(ome)
    print(f"{args.frames} frames {args.size}x{args.size} uint16 ({mb:.0f} MB), {args.repeats} paired repeats, fsync'd")
    print(f"  baseline tifffile, no metadata: median {mb / np.median(raw):.0f} MB/s")
    print(f"  harness OME-TIFF writer:        median {mb / np.median(ome):.0f} MB/s")
    print(f"  throughput ratio harness / tifffile: median {np.median(ratios):.3f} (min {ratios.min():.3f}, max {ratios.max():.3f})")


if __name__ == "__main__":
    main()
