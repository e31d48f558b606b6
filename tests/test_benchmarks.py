"""The benchmarks run (with small sizes here: the real figures come from running them in full)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "module,args,expect",
    [
        ("benchmarks.ome_throughput", ["--frames", "4", "--repeats", "2", "--size", "256"], "throughput ratio harness / tifffile"),
        ("benchmarks.sampling_precision", ["--seconds", "2"], "p99 ratio harness / naive"),
        ("benchmarks.memory_flat", ["--minutes", "3", "--frames", "20"], "growth in second half"),
        ("benchmarks.analysis_speed", ["--size", "256", "--rounds", "1"], "analysis ratio harness / frame reading"),
        ("benchmarks.xml_rewrite", ["--frames", "8", "--size", "64", "--repeats", "1"], "crash_safe_growth_after_10_bytes"),
        ("benchmarks.cli_startup", ["--repeats", "1"], "the baseline"),
        ("benchmarks.virtual_time", ["--tiny"], "process time ratio real-time x120 / virtual"),
        ("benchmarks.camera_speed", ["--sizes", "64", "--frames", "2"], "ratio render / numpy"),
        ("benchmarks.bead_slide_speed", ["--sizes", "64", "--planes", "3"], "per process-second"),
        ("benchmarks.image_run_costs", ["--size", "256", "--rounds", "1", "--full-frame"], "ratio whole process / acquisition"),
    ],
)
def test_benchmark_runs(module: str, args: list[str], expect: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert expect in out.stdout
