"""Runs that do not end well: Ctrl-C, SIGTERM, device faults, missing frames. Each ends with the
right status, safe devices and readable files that describe exactly what was recorded."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tifffile
from ome_types import from_xml

from harness.common.errors import UserError
from harness.finishing.runner import FinishingRunner as Runner
from harness.records.journal import read_journal
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
    assert not any(laser.emission for laser in st.sim.world.lasers.values())  # safe state despite the failure
    run = json.loads((outcome.folder / "run.json").read_text())
    assert run["status"] == "failed" and run["reason"] == outcome.reason
    records = read_journal(outcome.folder / "journal.jsonl")
    assert [r["type"] for r in records][-4:] == ["run_end", "finishing", "finishing", "finished"]  # then the finishing
    assert records[-4]["status"] == "failed" and records[-1]["status"] == "failed"
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
    # virtual time: the socket time-out is real time the station does not see, the retry delay (1 s, the
    # sampling interval) is station time: the next sample comes that much after its deadline, and says so
    retried = next(i for i, r in enumerate(rows) if r["attempts"] == "2")
    late = [i for i, r in enumerate(rows) if float(r["lateness_s"]) > 0]
    assert late == [retried + 1] and 0 < float(rows[retried + 1]["lateness_s"]) < 0.1


def test_a_dropped_frame_is_missing_and_shifts_nothing(make_station, tmp_path: Path) -> None:
    dropped = {"kind": "dropped_frame", "after_commands": 2, "times": 1}
    st = make_station({"devices": {"Camera": {"frame_timeout_ms": 1000, "simulation": {"faults": [dropped]}}}})
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
    dropped = {"kind": "dropped_frame", "after_commands": 1, "times": 2}
    st = make_station({"devices": {"Camera": {"frame_timeout_ms": 1000, "simulation": {"faults": [dropped]}}}})
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
    station = station_variant(tmp_path, {"simulation": {"clock": "real", "time_scale": 120}})
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
    assert [r["type"] for r in records][-4:] == ["run_end", "finishing", "finishing", "finished"]  # then the finishing
    assert records[-4]["status"] == "aborted"
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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_a_page_is_written_waits_for_its_frame_log_row(make_station, tmp_path: Path, monkeypatch, sig: int) -> None:
    """The signal arrives between a frame's page and its frame-log row: the run ends after the row,
    so every page of the OME-TIFF has its row (no page the frame log does not know)."""
    from harness.records.ome_writer import OmeTiffStack

    write = OmeTiffStack.write
    count = {"n": 0}

    def write_then_signal(self, *args, **kwargs):
        result = write(self, *args, **kwargs)
        count["n"] += 1
        if count["n"] == 5:
            os.kill(os.getpid(), sig)  # delivered before the frame-log row is written
        return result

    monkeypatch.setattr(OmeTiffStack, "write", write_then_signal)
    outcome = Runner(make_station({}), ROOT / "protocols" / "stage-repeatability.yaml", runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "aborted"
    frames, tiffdata, placeholders = _check_ome_matches_frames(outcome.folder, "repeatability")
    assert len(frames) == 5 and len(tiffdata) == 5 and placeholders == []


def test_protocol_needing_a_role_the_station_lacks(tmp_path: Path, make_station) -> None:
    st = make_station({"roles": {"camera": None}})
    with pytest.raises(UserError) as info:
        Runner(st, ROOT / "protocols" / "flat-field.yaml", runs_dir=tmp_path, quiet=True)
    text = str(info.value)
    assert text.startswith(f"{ROOT / 'protocols' / 'flat-field.yaml'}:") and "needs the role 'camera'" in text


# --- every ending is named for what it is ------------------------------------------------------------
SHORT = """\
protocol: short-lit
title: Short lit sampling
retries: {attempts: 1, delay: 1 s}
steps:
  - meter: {wavelength: 488, averaging: 10}
  - laser: {line: 488, setpoint: 10 mW, emission: on}
  - sample: {series: power, every: 1 s, for: 10 s}
  - laser: {line: 488, emission: off}
"""


def _lose_laser_after_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 488 nm laser's connection is lost (for ever) right after the sampling: the protocol's own
    emission-off and the safe state's both fail (a simulator fault, armed at that moment)."""
    from harness.run.steps.sample import Sample
    from simulators.params import FaultSpec

    original = Sample.execute

    def sample_then_lose(self: Sample, action: Any, run: Any) -> None:
        original(self, action, run)
        run.station.sim.world.lasers["Laser488"].faults.arm(FaultSpec(kind="connection_lost", after_commands=0, times=0))

    monkeypatch.setattr(Sample, "execute", sample_then_lose)


def test_safe_state_not_confirmed_is_unsafe_exit_7_with_a_red_banner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from harness.cli.commands import run
    from harness.common.errors import EXIT_UNSAFE
    from harness.store.results_store import ResultsStore

    _lose_laser_after_sampling(monkeypatch)
    station = station_variant(tmp_path, {"devices": {"Laser488": {"timeout_ms": 300}}})
    outcome_file = tmp_path / "outcome.json"
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code = run(["run", str(_protocol(tmp_path, SHORT)), "--station", str(station), "--runs-dir", str(tmp_path / "runs"), "-q",
                "--outcome", str(outcome_file), "--db", db])
    out, err = capsys.readouterr()
    assert code == EXIT_UNSAFE == 7, err
    assert out.startswith("unsafe: ") and "URGENT: the safe state was NOT confirmed" in err
    result = json.loads(outcome_file.read_text())
    assert result["outcome"] == "unsafe" and result["status"] == "failed" and result["safe_state"]["confirmed"] is False
    folder = Path(result["folder"])
    run_json = json.loads((folder / "run.json").read_text())
    assert run_json["safe_state"]["confirmed"] is False and "Laser488" in " ".join(run_json["safe_state"]["failures"])
    report = (folder / "report.html").read_text()
    assert "class=unsafe" in report and "SAFE STATE NOT CONFIRMED" in report
    with ResultsStore(db) as store:
        [rec] = store.history()
    assert rec.status == "unsafe" and rec.verdict == "not judged"


def test_a_completed_run_whose_safe_state_is_confirmed_has_no_banner(make_station, tmp_path: Path) -> None:
    st = make_station({})
    outcome = Runner(st, _protocol(tmp_path, SHORT), runs_dir=tmp_path / "runs", quiet=True).run()
    assert (outcome.status, outcome.outcome, outcome.safe_state_confirmed) == ("completed", "completed", True)
    assert json.loads((outcome.folder / "run.json").read_text())["safe_state"] == {"confirmed": True, "failures": []}
    assert "class=unsafe" not in (outcome.folder / "report.html").read_text()


def test_a_full_disk_while_finalizing_a_stack_fails_the_run(make_station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's XML could not be rewritten: run.json stays ``running`` so that ``recover`` (once
    space is freed) rebuilds the stack from its pages and ends the run as the journal says."""
    import errno

    from harness.records.ome_writer import OmeTiffStack

    def no_space(self: OmeTiffStack) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(OmeTiffStack, "finalize", no_space)
    st = make_station({})
    runner = Runner(st, _protocol(tmp_path, FRAMES), runs_dir=tmp_path / "runs", quiet=True)
    outcome = runner.run()
    assert outcome.status == "failed" and outcome.outcome == "failed" and runner.left_for_recovery
    assert "could not finalize frames.ome.tif" in outcome.reason and "No space left" in outcome.reason
    assert "left for `microscope-qc recover`" in outcome.reason
    run = json.loads((outcome.folder / "run.json").read_text())
    assert run["status"] == "running"
    records = read_journal(outcome.folder / "journal.jsonl")
    assert records[-1]["type"] == "run_end" and records[-1]["status"] == "failed"
    assert not (outcome.folder / "results.json").exists()  # analysed once recovered


def test_a_failed_run_is_not_a_qc_fail(make_station, tmp_path: Path) -> None:
    """The meter is lost mid-run: the partial metrics are kept but not judged, the report says the
    measurement could not be completed (not FAIL), the store says failed / not judged."""
    from harness.store.results_store import ResultsStore
    from simulators.params import FaultSpec

    text = SAMPLING.replace("MAXMISSING", "0") + "acceptance:\n  stability_pct: {pass: [99.99, null], unit: \"%\"}\n"
    st = make_station({"devices": {"Meter": {"timeout_ms": 300}}})
    runner = Runner(st, _protocol(tmp_path, text), runs_dir=tmp_path / "runs", quiet=True)
    st.sim.world.meters["Meter"].faults.arm(FaultSpec(kind="connection_lost", after_commands=5 + 20))
    outcome = runner.run()
    assert outcome.status == "failed" and outcome.outcome == "failed"
    results = json.loads((outcome.folder / "results.json").read_text())
    assert results["verdict"] == "not judged" and "could not be completed" in results["verdict_note"]
    [r] = results["results"]
    assert r["metrics"]["stability_pct"]["value"] is not None  # the partial data are kept
    assert {m["verdict"] for m in r["metrics"].values()} == {"not judged"}
    report = (outcome.folder / "report.html").read_text()
    assert "RUN FAILED" in report and "not a QC verdict" in report and ">FAIL<" not in report
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultsStore(db) as store:
        store.import_run(outcome.folder)
        [rec] = store.history()
        assert (rec.status, rec.verdict) == ("failed", "not judged")
        assert store.history(verdict="fail") == []


def test_the_demo_flat_field_no_longer_crashes_its_analysis(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Micro-Manager's DemoCamera draws the same image whether the simulated lasers are on or not: the
    dark-subtracted flat field is all zero, which divided by its maximum (ZeroDivisionError). Now the
    analysis refuses it with the reason: exit 6, `analysis failed` in the results, the store and the
    report; `analyze` says it in one message, without a traceback."""
    import yaml

    from harness.cli.commands import run
    from harness.common.errors import EXIT_ANALYSIS_FAILED
    from harness.store.results_store import ResultsStore
    from tests.conftest import DEMO, merge

    data = merge(yaml.safe_load(DEMO.read_text()), {})
    data["micromanager"]["config"] = str(DEMO.parent / data["micromanager"]["config"])
    station = tmp_path / "demo.yaml"
    station.write_text(yaml.safe_dump(data, sort_keys=False))
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    outcome_file = tmp_path / "outcome.json"
    code = run(["run", str(ROOT / "protocols" / "flat-field.yaml"), "--station", str(station), "--runs-dir", str(tmp_path / "runs"),
                "-q", "-y", "--db", db, "--outcome", str(outcome_file)])
    out, err = capsys.readouterr()
    assert code == EXIT_ANALYSIS_FAILED == 6, err
    assert out.startswith("analysis failed: ") and "Traceback" not in err
    assert "no signal above the dark level" in err and "identical to the dark frames" in err
    result = json.loads(outcome_file.read_text())
    assert result["status"] == "completed" and result["outcome"] == "analysis failed"
    folder = Path(result["folder"])
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "analysis failed" and results["verdict"] == "not judged"
    assert [(r["subject"], r["kind"]) for r in results["results"]] == [("488 nm", "analysis failed"), ("561 nm", "analysis failed")]
    report = (folder / "report.html").read_text()
    assert "ANALYSIS FAILED" in report and "no signal above the dark level" in report
    with ResultsStore(db) as store:
        [rec] = store.history()
    assert rec.status == "analysis failed" and "no signal above the dark level" in rec.reason
    # the suggested command: the same, one message, exit 6
    assert run(["analyze", str(folder)]) == EXIT_ANALYSIS_FAILED
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "analysis failed: " in err


def test_analyze_of_a_crashing_analysis_is_one_message_and_exit_6(make_station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from harness.analyses.power import analysis as power
    from harness.cli.commands import run
    from harness.finishing import results as analysis

    st = make_station({})
    outcome = Runner(st, _protocol(tmp_path, SHORT), runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.outcome == "completed"

    def bug(*args: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(power, "analyse_series", bug)  # a crash inside one file's analysis
    assert run(["analyze", str(outcome.folder)]) == 6
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "ZeroDivisionError" in err
    results = json.loads((outcome.folder / "results.json").read_text())
    assert results["status"] == "analysis failed" and "traceback" in results["results"][0]
    monkeypatch.setattr(analysis, "analyse_run", bug)  # a crash of the analysis as a whole
    monkeypatch.setattr("harness.cli.commands.analyse_run", bug, raising=False)  # (whether cli imports it up front or when called)
    assert run(["analyze", str(outcome.folder)]) == 6
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and err.strip().startswith("analysis failed: ZeroDivisionError")
    assert json.loads((outcome.folder / "results.json").read_text())["status"] == "analysis failed"
    monkeypatch.undo()
    assert run(["analyze", str(tmp_path)]) == 2  # a user mistake stays exit 2
    assert "not a run folder" in capsys.readouterr().err
    assert run(["analyze", str(outcome.folder)]) == 0  # once mended, the same command analyses it
