"""Runs that do not end well: Ctrl-C, SIGTERM, device faults, missing frames. Each ends with the
right status, safe devices and readable files that describe exactly what was recorded."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile
from ome_types import from_xml

from harness.errors import UserError
from harness.journal import read_journal
from harness.runner import Runner
from tests.conftest import ROOT, station_variant
from tests.omecheck import bioformats_info, bioformats_value

SAMPLING = """\
protocol: sampling-test
title: Sampling test
retries: {attempts: 2, delay: 1 s}
max_missing: MAXMISSING
steps:
  - meter: {wavelength: 488, averaging: 10}
  - laser: {line: 488, setpoint: 10 mW, emission: on}
  - sample: {series: power, every: 1 s, for: 60 s}
  - laser: {line: 488, emission: off}
"""

FRAMES = """\
protocol: frames-test
title: Frames test
retries: {attempts: 1, delay: 1 s}
max_missing: 1
steps:
  - laser: {line: 561, setpoint: 20 %, emission: on}
  - repeat: 6
    as: k
    do:
      - move: {x: 10 um, relative: true}
      - acquire: {stack: frames, exposure: 20 ms, centre_roi: [256, 256], tag: "k$k"}
  - laser: {line: 561, emission: off}
"""


def _protocol(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_ome_matches_frames(folder: Path, stack: str) -> tuple[list, list, list]:
    """Every page is described; real frames match the frame log; placeholders are all zero and say so."""
    rows = [r for r in _rows(folder / f"{stack}_frames.csv") if r["ifd"] != ""]
    with tifffile.TiffFile(folder / f"{stack}.ome.tif") as tif:
        ome = from_xml(tif.ome_metadata, validate=True)
        pages = [p.asarray() for p in tif.pages]
    px = ome.images[0].pixels
    assert len(pages) == len(px.planes) == len(px.tiff_data_blocks)
    by_ifd = {td.ifd: (td, plane) for td, plane in zip(px.tiff_data_blocks, px.planes)}
    assert sorted(by_ifd) == list(range(len(pages)))
    notes = {a.id: {m.k: m.value for m in a.value.ms} for a in ome.structured_annotations.map_annotations}
    for row in rows:
        td, plane = by_ifd[int(row["ifd"])]
        assert td.first_t == int(row["t"]) and plane.the_t == int(row["t"])
        if row["status"] == "ok":
            assert not plane.annotation_refs and pages[td.ifd].max() > 0
        else:
            assert notes[plane.annotation_refs[0].id]["FrameStatus"] == "missing" and pages[td.ifd].max() == 0
    placeholders = [plane for td, plane in by_ifd.values() if plane.annotation_refs]
    assert all(pages[td.ifd].max() == 0 for td, plane in by_ifd.values() if plane.annotation_refs)
    ok = [r for r in rows if r["status"] == "ok"]
    return ok, [by_ifd[i][0] for i in sorted(by_ifd)], placeholders


def test_meter_lost_mid_run_fails_the_run_and_keeps_the_data(make_station, tmp_path: Path) -> None:
    from simulators.params import FaultSpec

    st = make_station({"devices": {"Meter": {"timeout_ms": 300}}})
    runner = Runner(st, _protocol(tmp_path, SAMPLING.replace("MAXMISSING", "0")), runs_dir=tmp_path / "runs", quiet=True)
    # the connection drops about 20 readings into the sampling (commands counted from now)
    st.sim.world.meters["Meter"].faults.arm(FaultSpec(kind="connection_lost", after_commands=5 + 20))
    outcome = runner.run()
    assert outcome.status == "failed"
    assert "ConnectionLost" in outcome.reason or "connection" in outcome.reason.lower()
    rows = _rows(outcome.folder / "power.csv")
    assert 15 <= sum(r["status"] == "ok" for r in rows) <= 25
    assert rows[-1]["status"] == "missing"
    assert not any(l.emission for l in st.sim.world.lasers.values())  # safe state despite the failure
    run = json.loads((outcome.folder / "run.json").read_text())
    assert run["status"] == "failed" and run["reason"] == outcome.reason
    records = read_journal(outcome.folder / "journal.jsonl")
    assert records[-1]["type"] == "run_end" and records[-1]["status"] == "failed"
    assert any(r["type"] == "device_error" and r["error"] == "ConnectionLost" for r in records)


def test_a_timeout_is_retried_and_recorded(make_station, tmp_path: Path) -> None:
    st = make_station({"devices": {"Meter": {"timeout_ms": 200}}})
    runner = Runner(st, _protocol(tmp_path, SAMPLING.replace("MAXMISSING", "0")), runs_dir=tmp_path / "runs", quiet=True)
    from simulators.params import FaultSpec

    st.sim.world.meters["Meter"].faults.arm(FaultSpec(kind="no_reply", after_commands=30, times=1))
    outcome = runner.run()
    assert outcome.status == "completed", outcome.reason
    rows = _rows(outcome.folder / "power.csv")
    assert len(rows) == 60 and all(r["status"] == "ok" for r in rows)
    assert sorted(int(r["attempts"]) for r in rows)[-1] == 2
    assert any(int(r["late"]) for r in rows)  # the retry made that sample late, and it says so


def test_a_dropped_frame_is_missing_and_shifts_nothing(make_station, tmp_path: Path) -> None:
    st = make_station({"devices": {"Camera": {"frame_timeout_ms": 1000, "simulation": {"faults": [{"kind": "dropped_frame", "after_commands": 2, "times": 1}]}}}})
    runner = Runner(st, _protocol(tmp_path, FRAMES), runs_dir=tmp_path / "runs", quiet=True)
    outcome = runner.run()
    assert outcome.status == "completed", outcome.reason
    all_rows = _rows(outcome.folder / "frames_frames.csv")
    assert [r["status"] for r in all_rows] == ["ok", "ok", "missing", "ok", "ok", "ok"]
    assert [r["tag"] for r in all_rows] == [f"k{k}" for k in range(1, 7)]
    frames, tiffdata, placeholders = _check_ome_matches_frames(outcome.folder, "frames")
    assert [td.first_t for td in tiffdata] == [0, 1, 2, 3, 4, 5]  # frame 2's place is kept
    assert [p.the_t for p in placeholders] == [2]
    assert [float(r["x_um"]) for r in frames] == [10, 20, 40, 50, 60]
    info = bioformats_info(outcome.folder / "frames.ome.tif")
    assert int(bioformats_value(info, "SizeT")) == 6
    run = json.loads((outcome.folder / "run.json").read_text())
    assert run["missing"] == 1 and run["files"]["frames.ome.tif"]["frames"] == 5


def test_too_many_missing_frames_fail_the_run(make_station, tmp_path: Path) -> None:
    st = make_station({"devices": {"Camera": {"frame_timeout_ms": 1000, "simulation": {"faults": [{"kind": "dropped_frame", "after_commands": 1, "times": 2}]}}}})
    outcome = Runner(st, _protocol(tmp_path, FRAMES), runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "failed" and "max_missing of 1" in outcome.reason
    frames, _, placeholders = _check_ome_matches_frames(outcome.folder, "frames")
    assert len(frames) == 1 and len(placeholders) == 2


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path_glob: Path, pattern: str, rows: int, proc: subprocess.Popen[str], timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in path_glob.glob(pattern):
            if path.exists() and len(path.read_text().splitlines()) > rows:
                return path
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run did not get that far")


@pytest.mark.parametrize("sig,exit_status,reason", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 130, "SIGTERM")])
def test_interrupting_a_run_aborts_it_cleanly(tmp_path: Path, sig: int, exit_status: int, reason: str) -> None:
    station = station_variant(tmp_path, {"simulation": {"time_scale": 120}})
    runs = tmp_path / "runs"
    proc = _start(["run", str(ROOT / "protocols" / "stage-repeatability.yaml"), "--station", str(station), "--runs-dir", str(runs), "-q"])
    frames_csv = _wait_for(runs, "*/repeatability_frames.csv", 7, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_status, err
    folder = frames_csv.parent
    assert out.strip() == f"aborted: {folder}"
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "aborted" and reason in run["reason"]
    frames, _, placeholders = _check_ome_matches_frames(folder, "repeatability")
    assert 7 <= len(frames) < 320 and placeholders == []  # one channel, frames in order: no gaps
    records = read_journal(folder / "journal.jsonl")
    safe = [r for r in records if r["type"] == "safe_state"]
    assert safe and safe[-1]["confirmed"] is True
    assert records[-1]["type"] == "run_end" and records[-1]["status"] == "aborted"
    info = bioformats_info(folder / "repeatability.ome.tif")
    assert int(bioformats_value(info, "Image count")) == len(frames)


def test_an_interrupted_multichannel_stack_is_completed_with_marked_placeholders(make_station, tmp_path: Path) -> None:
    """Flat field stopped during the second line: the C x T grid gets 'not acquired' pages."""
    st = make_station({})
    runner = Runner(st, ROOT / "protocols" / "flat-field.yaml", runs_dir=tmp_path / "runs", quiet=True)
    snap = st.camera.snap
    count = {"n": 0}

    def snap_then_interrupt():
        count["n"] += 1
        if count["n"] == 15:
            raise KeyboardInterrupt
        return snap()

    st.camera.snap = snap_then_interrupt
    outcome = runner.run()
    assert outcome.status == "aborted"
    frames, tiffdata, placeholders = _check_ome_matches_frames(outcome.folder, "flatfield")
    assert len(frames) == 14 and len(placeholders) == 6  # dark 10 + 4 of the 405 channel; 6 of 10 missing
    assert {(p.the_c, p.the_t) for p in placeholders} == {(1, t) for t in range(4, 10)}
    info = bioformats_info(outcome.folder / "flatfield.ome.tif")
    assert int(bioformats_value(info, "SizeC")) == 2 and int(bioformats_value(info, "SizeT")) == 10


def test_protocol_needing_a_role_the_station_lacks(tmp_path: Path, make_station) -> None:
    st = make_station({"roles": {"camera": None}})
    with pytest.raises(UserError) as info:
        Runner(st, ROOT / "protocols" / "flat-field.yaml", runs_dir=tmp_path, quiet=True)
    text = str(info.value)
    assert text.startswith(f"{ROOT / 'protocols' / 'flat-field.yaml'}:") and "needs the role 'camera'" in text
