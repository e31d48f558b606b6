"""Rewriting a finished stack's OME-XML (what finalize and the QC annotations do): the crash-safe
``tiff_description.rewrite_description`` (value written and fsynced, then the pointer, fsynced, read
back) against tifffile's ``tiffcomment`` (in place, no fsync) followed by one fsync, on copies of one
stack; the median of ``--repeats`` each, and the file size after ten rewrites with each.

    python -m benchmarks.xml_rewrite [--frames 320] [--size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tifffile

from benchmarks._common import fsync_file
from harness.protocol.plan import StackPlan
from harness.records.image_records import PlaneInfo
from harness.records.ome_writer import OmeTiffStack
from harness.records.tiff_description import rewrite_description

from .ome_throughput import info


def _stack(folder: Path, frames: int, size: int) -> Path:
    plan = StackPlan("bench", ["488"], {"488": frames})
    stack = OmeTiffStack(folder / "bench.ome.tif", plan, info(), datetime(2026, 1, 1, tzinfo=timezone.utc))
    image = np.random.default_rng(0).integers(0, 4000, (size, size), dtype=np.uint16)
    for t in range(frames):
        stack.write(image, PlaneInfo(0, t, -1, 0.1 * t, 0.05, 1.0, 2.0, 3.0))
    stack.finalize()
    return stack.path


def _tiffcomment_synced(path: Path, xml: str) -> None:
    tifffile.tiffcomment(path, comment=xml.encode())
    fsync_file(path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=320)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = _stack(Path(tmp), args.frames, args.size)
        with tifffile.TiffFile(path) as tif:
            xml = tif.pages[0].description
        longer = xml.replace("</OME>", f"<!--{'x' * 2000}--></OME>")
        out: dict[str, float] = {"frames": args.frames, "xml_bytes": len(xml), "file_bytes": path.stat().st_size}
        for name, fn in (("crash_safe", rewrite_description), ("tiffcomment_fsync", _tiffcomment_synced)):
            times = []
            for r in range(args.repeats):
                copy = Path(tmp) / f"{name}{r}.ome.tif"
                shutil.copy(path, copy)
                fsync_file(copy)  # the copy on disk: only the rewrite's own writes are timed
                t0 = time.perf_counter()
                fn(copy, longer)
                times.append(time.perf_counter() - t0)
            out[f"{name}_ms"] = 1000 * statistics.median(times)
            copy = Path(tmp) / f"{name}_grow.ome.tif"
            shutil.copy(path, copy)
            for n in range(10):
                fn(copy, xml.replace("</OME>", f"<!--{'x' * (n % 3) * 3000}--></OME>"))
            out[f"{name}_growth_after_10_bytes"] = copy.stat().st_size - path.stat().st_size
    for key, value in out.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    return out


if __name__ == "__main__":
    main()
