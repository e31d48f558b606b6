"""Virtual time: a simulated station's data depend on its files and seed only.

Two runs of the same protocol on the same station file, with the station clock started at the same
date-time, give identical readings, frames, frame times and journal times, whether or not another
process keeps the processor busy meanwhile. The clock's own contract is tested here too."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station
from simulators.clock import ScaledClock, VirtualClock, WallClock
from tests.conftest import station_variant

pytestmark = pytest.mark.fast

PROTOCOL = """\
protocol: determinism
title: Readings, moves, waits and frames
version: "1"
requires: [lasers, power_meter, camera, xy_stage]
steps:
  - meter: {wavelength: 488, averaging: 50}
  - laser: {line: 488, setpoint: 20 %, emission: on}
  - wait: 30 s
  - sample: {series: power, every: 2 s, for: 40 s}
  - repeat: 3
    do:
      - move: {x: 1500 um, y: -200 um, approach: positive, overtravel: 50 um}
      - acquire: {stack: beads, exposure: 50 ms, centre_roi: [64, 48]}
      - move: {x: 0 um, y: 0 um}
      - acquire: {stack: beads, exposure: 50 ms, centre_roi: [64, 48]}
  - laser: {line: 488, emission: off}
"""
START = datetime(2026, 12, 5, 2, 0, tzinfo=timezone.utc)


def _run(tmp_path: Path, name: str) -> Path:
    station = station_variant(tmp_path, {"devices": {"Camera": {"simulation": {"serial": f"SIMDET{name}"}}}}, f"{name}.yaml")
    protocol = tmp_path / "determinism.yaml"
    protocol.write_text(PROTOCOL)
    with Station.load(station, clock_start=START) as st:
        outcome = Runner(st, protocol, runs_dir=tmp_path / f"runs-{name}", quiet=True, store=False).run()
    assert outcome.status == "completed", outcome.reason
    return outcome.folder


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _journal_times(folder: Path) -> list[tuple[str, float]]:
    records = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    # ``t_s`` is station time; a record's ``utc`` is when it was written (wall clock, for forensics)
    return [(r["type"], r["t_s"]) for r in records if "t_s" in r]


def test_two_runs_give_identical_data_whatever_the_load(tmp_path: Path) -> None:
    quiet = _run(tmp_path, "a")
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a busy machine for the second run
    try:
        busy = _run(tmp_path, "b")
    finally:
        burner.kill()
        burner.wait()
    power_a, power_b = _csv(quiet / "power.csv"), _csv(busy / "power.csv")
    assert len(power_a) == 20 and power_a == power_b  # every column: readings, times, UTC, lateness
    frames_a, frames_b = _csv(quiet / "beads_frames.csv"), _csv(busy / "beads_frames.csv")
    assert len(frames_a) == 6 and frames_a == frames_b
    pixels_a = tifffile.imread(quiet / "beads.ome.tif")
    pixels_b = tifffile.imread(busy / "beads.ome.tif")
    assert pixels_a.shape[-2:] == (48, 64) and np.array_equal(pixels_a, pixels_b)
    assert _journal_times(quiet) == _journal_times(busy)
    run_a, run_b = (json.loads((f / "run.json").read_text()) for f in (quiet, busy))
    assert run_a["started_utc"] == run_b["started_utc"] and run_a["ended_utc"] == run_b["ended_utc"]
    assert run_a["clock"] == run_b["clock"] and run_a["clock"]["mode"] == "virtual"
    # station time is what the devices did: 30 s wait + 40 s of samples + moves and 6 frames of 50 ms
    times = [float(r["time_s"]) for r in frames_a]
    assert all(b - a >= 0.05 for a, b in zip(times, times[1:]))
    assert 70.0 < run_a["clock"]["elapsed_s"] < 80.0


def test_samples_are_taken_exactly_at_their_deadlines(tmp_path: Path) -> None:
    folder = _run(tmp_path, "c")
    rows = _csv(folder / "power.csv")
    assert [float(r["time_s"]) for r in rows] == [float(r["deadline_s"]) for r in rows]
    assert all(r["late"] == "0" for r in rows)
    deadlines = [float(r["deadline_s"]) for r in rows]
    assert np.allclose(np.diff(deadlines), 2.0, rtol=0, atol=1e-9)


def test_virtual_clock_moves_only_when_waited_on() -> None:
    seen: list[datetime] = []
    clock = VirtualClock(START, on_time=seen.append)
    assert clock.virtual and clock.time_scale is None and clock.now() == 0.0
    clock.sleep(1.5)
    clock.sleep_until(1.0)  # in the past: nothing happens
    assert clock.now() == 1.5
    clock.poll(4.0)  # a poller waiting for a device busy until t = 4 s
    clock.poll(3.0)
    clock.advance(-5)  # never backwards
    assert clock.now() == 4.0
    assert clock.utc() == datetime(2026, 12, 5, 2, 0, 4, tzinfo=timezone.utc)
    assert clock.at(datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc)) == 3600.0
    assert [d.second for d in seen] == [1, 4]  # on_time only when the clock moved
    stop = threading.Event()
    clock.sleep_until(7200.0, stop)
    assert clock.now() == 7200.0


def test_virtual_clock_is_consistent_across_threads() -> None:
    clock = VirtualClock(START)

    def spend() -> None:
        for _ in range(1000):
            clock.sleep(0.001)

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.now() == pytest.approx(4.0, abs=1e-9)


def test_real_clocks_keep_the_interface() -> None:
    wall, fast = WallClock(), ScaledClock(1000.0, START)
    assert not wall.virtual and wall.time_scale == 1.0 and fast.time_scale == 1000.0
    before = wall.now()
    wall.poll(1e9)  # real time passes by itself: polling does not move it
    wall.advance(1e9)
    assert wall.now() - before < 1e6
    assert abs((wall.utc() - datetime.now(timezone.utc)).total_seconds()) < 5
    assert fast.at(fast.utc(12.5)) == pytest.approx(12.5)
    assert wall.describe() == "real time" and fast.describe() == "real time x1000"
    with pytest.raises(ValueError):
        VirtualClock(datetime(2026, 12, 5))  # a start without a time zone is ambiguous


def test_a_station_with_micro_manager_devices_cannot_run_on_virtual_time(tmp_path: Path) -> None:
    from harness.common.errors import UserError
    from tests.conftest import ROOT

    data = yaml.safe_load((ROOT / "configs" / "demo-micromanager.yaml").read_text())
    data["micromanager"]["config"] = str(ROOT / "configs" / data["micromanager"]["config"])
    data["simulation"].pop("time_scale", None)
    data["simulation"]["clock"] = "virtual"
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(UserError, match=r"demo\.yaml:\d+: station: simulation\.clock: a virtual clock cannot drive Micro-Manager adapter devices"):
        Station.load(path)
