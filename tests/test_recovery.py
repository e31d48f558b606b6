"""Crash recovery: a real run process killed with SIGKILL mid-stack, then recovered (through the CLI
and the functions); files cut short by hand; owners that are alive or on another host left alone."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import tifffile
from ome_types import from_xml

from harness.cli import commands as cli
from harness.protocol.plan import StackPlan
from harness.records.image_records import FRAME_COLUMNS, ChannelInfo, InstrumentInfo, LineInfo, PlaneInfo
from harness.records.journal import read_journal
from harness.records.ome_metadata import build_ome
from harness.records.ome_writer import OmeTiffStack
from harness.records.series_writer import SeriesWriter, read_series
from harness.recovery.recover import (
    INTERRUPTED_NOTE,
    LOST_NOTE,
    UNLOGGED_NOTE,
    find_interrupted,
    info_from_ome,
    recover_run,
    recover_stack,
    repair_csv,
    repair_journal,
    scan_pages,
    scan_runs,
)

from .conftest import ROOT, station_variant
from .omecheck import bioformats_info, bioformats_value

PROTOCOL = ROOT / "protocols" / "flat-field.yaml"
KILL_AFTER_ROWS = 13  # the 10 dark frames and a few of the first lit channel


# --- a real run, killed ----------------------------------------------------------------------------
def _rows_in(path: Path) -> int:
    try:
        return max(path.read_bytes().count(b"\n") - 1, 0)
    except OSError:
        return 0


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat-field run folder as SIGKILL left it (kept pristine: tests work on copies)."""
    base = tmp_path_factory.mktemp("killed")
    station = station_variant(base, {
        "simulation": {"clock": "real", "time_scale": 2},  # 200 ms exposures take 0.1 s: slow enough to kill mid-stack
        "devices": {"Camera": {"simulation": {"width_px": 96, "height_px": 64, "serial": "SIMKILL1"}}},
    })
    runs = base / "runs"
    env = {**os.environ, "XDG_DATA_HOME": str(base / "data")}  # the station lock goes there, not to the user's
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(PROTOCOL), "--station", str(station), "--runs-dir", str(runs),
         "--quiet", "--yes", "--no-store"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list(runs.glob("*/flatfield_frames.csv"))
            if logs and _rows_in(logs[0]) >= KILL_AFTER_ROWS:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    finally:
        proc.kill()  # SIGKILL: no handler, no finally, no finalize
        proc.wait(timeout=30)
    (folder,) = list(runs.iterdir())
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "running"
    assert run["process"]["pid"] == proc.pid and run["process"]["hostname"] == socket.gethostname()
    return folder


def _copy(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / folder.name
    shutil.copytree(folder, dest)
    return dest


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _ome(path: Path) -> tuple[int, Any, list[np.ndarray]]:
    with tifffile.TiffFile(path) as tif:
        ome = from_xml(tif.ome_metadata, validate=True)
        return len(tif.pages), ome, [p.asarray() for p in tif.pages]


def test_killed_run_is_recovered_through_the_cli(crashed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(crashed, tmp_path)
    runs = folder.parent
    assert find_interrupted(runs) == [folder]
    original_rows = read_series(folder / "flatfield_frames.csv")
    with tifffile.TiffFile(folder / "flatfield.ome.tif") as tif:  # every complete page as the run left it
        original_pages = [tif.pages[k].asarray() for k in range(scan_pages(folder / "flatfield.ome.tif").pages)]

    assert cli.run(["recover", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"recovered {folder}: status interrupted" in out

    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert run["reason"].startswith("the run process ended without finishing (killed or power loss); recovered ")
    assert run["recovered_utc"] and run["process"]["hostname"] == socket.gethostname()
    journal = read_journal(folder / "journal.jsonl")
    # the recovery's record, then the finishing's (analysis, results store), the last one "finished"
    assert [r["seq"] for r in journal] == list(range(len(journal)))
    at = next(i for i, r in enumerate(journal) if r["type"] == "recovered")
    assert [(r["type"], r.get("step")) for r in journal[at:]] == [
        ("recovered", None), ("finishing", "analysed"), ("finishing", "recorded"), ("finished", None)]
    assert journal[-1]["status"] == "interrupted"
    assert run["ended_utc"] == journal[at - 1]["utc"]  # the last event of the run itself
    assert run["missing"] == 0

    # the frame log: whole rows only, every one a real frame (one more if SIGKILL came between a page and its row)
    rows = read_series(folder / "flatfield_frames.csv")
    assert rows[: len(original_rows)] == original_rows and len(rows) - len(original_rows) in (0, 1)
    assert len(rows) >= KILL_AFTER_ROWS and all(r["status"] == "ok" for r in rows)
    with open(folder / "flatfield_frames.csv", newline="") as f:
        assert all(len(r) == len(FRAME_COLUMNS) for r in csv.reader(f))

    # the OME-TIFF: Planes == pages == TiffData; real frames as acquired, the grid's rest zero and annotated
    pages, ome, images = _ome(folder / "flatfield.ome.tif")
    px = ome.images[0].pixels
    assert pages == len(px.planes) == len(px.tiff_data_blocks) == px.size_c * px.size_t
    names = [c.name for c in px.channels]
    assert names[:2] == ["dark", "405"] and px.size_t == 10  # killed during the 405 nm frames (the rest never began)
    # detector settings as acquired (from the frame log): the camera's gain, offset and binning
    for c, name in enumerate(names):
        row = next(r for r in rows if r["channel"] == name)
        ds = px.channels[c].detector_settings
        assert (ds.gain, ds.offset, ds.binning.value) == (float(row["gain_db"]), float(row["offset"]), f"{row['binning']}x{row['binning']}")
    notes = {a.id: {m.k: m.value for m in a.value.ms} for a in ome.structured_annotations.map_annotations}
    real = 0
    for td, plane in zip(px.tiff_data_blocks, px.planes):
        assert (td.first_c, td.first_t) == (plane.the_c, plane.the_t)
        if plane.annotation_refs:
            note = notes[plane.annotation_refs[0].id]
            assert note["FrameStatus"] == "not acquired" and note["Reason"] == INTERRUPTED_NOTE
            assert not images[td.ifd].any()
            assert plane.delta_t is None and plane.exposure_time is None  # never acquired: no time, no exposure
        else:
            real += 1
            assert plane.delta_t is not None and plane.exposure_time is not None
            assert np.array_equal(images[td.ifd], original_pages[td.ifd]) and images[td.ifd].any()
    assert real == len(rows)
    assert run["files"]["flatfield.ome.tif"]["frames"] == real
    assert run["files"]["flatfield.ome.tif"]["placeholder_pages"] == pages - real
    assert run["files"]["flatfield_frames.csv"]["rows"] == len(rows)
    info = bioformats_info(folder / "flatfield.ome.tif")
    assert bioformats_value(info, "Image count") == str(pages)
    assert (bioformats_value(info, "SizeC"), bioformats_value(info, "SizeT")) == (str(len(names)), "10")

    # analysed (a run that did not complete is not judged: not a QC fail) and every file in the manifest
    results = json.loads((folder / "results.json").read_text())
    assert results["run_status"] == "interrupted" and results["verdict"] == "not judged"
    assert (folder / "report.html").is_file()
    check = subprocess.run(["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split("  ", 1)[1] for line in (folder / "MANIFEST.sha256").read_text().splitlines()}
    assert listed == {p.name for p in folder.iterdir()} - {"MANIFEST.sha256"}

    # recovering again changes nothing
    before = _hashes(folder)
    assert recover_run(folder).outcome == "nothing to do"
    assert cli.run(["recover", "--runs-dir", str(runs)]) == 0
    assert "no interrupted runs" in capsys.readouterr().out
    assert cli.run(["recover", str(folder)]) == 0
    assert _hashes(folder) == before


def test_planned_xml_gives_back_the_instrument_and_annotations(crashed: Path) -> None:
    """What recovery reads back from page 0 builds the same Instrument and annotations again."""
    with tifffile.TiffFile(crashed / "flatfield.ome.tif") as tif:
        planned = from_xml(tif.pages[0].description)
    run = json.loads((crashed / "run.json").read_text())
    info, extra = info_from_ome(planned, run["protocol"]["plan"]["lines"])
    assert [line.key for line in info.lines] == ["405", "488", "561", "640"] and extra == {}
    plan = run["protocol"]["plan"]["stacks"]["flatfield"]
    px = planned.images[0].pixels
    again = build_ome(info, "flatfield", (px.size_y, px.size_x), [ChannelInfo(n) for n in plan["channels"]], [],
                      planned.images[0].acquisition_date, planned.uuid.removeprefix("urn:uuid:"))
    assert again.instruments == planned.instruments
    assert again.structured_annotations == planned.structured_annotations
    assert again.images[0].pixels.channels == px.channels


def test_cmd_run_recovers_interrupted_runs_first(crashed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(crashed, tmp_path)
    # the files preflight, but the station's meter cannot be reached: the run itself cannot start, but
    # recovery has happened by then (a mistake in a file is refused before recovery, within a second)
    station = station_variant(tmp_path, {"devices": {"Meter": {"resource": "TCPIP0::127.0.0.1::1::SOCKET", "timeout_ms": 200}}})
    code = cli.run(["run", str(PROTOCOL), "--station", str(station), "--runs-dir", str(folder.parent), "--no-store"])
    assert code == cli.EXIT_DEVICE
    err = capsys.readouterr().err
    assert f"recovered {folder}: status interrupted" in err
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"


def test_partial_journal_line_and_csv_row_are_dropped(crashed: Path, tmp_path: Path) -> None:
    folder = _copy(crashed, tmp_path)
    rows_before = read_series(folder / "flatfield_frames.csv")
    with open(folder / "journal.jsonl", "ab") as f:
        f.write(b'{"seq":999,"type":"frame","utc":"2026-')
    with open(folder / "flatfield_frames.csv", "ab") as f:
        f.write(b"13,flatfield,405,1,3,13,7.9")
    report = recover_run(folder)
    assert report.outcome == "recovered", report
    journal_text = (folder / "journal.jsonl").read_text()
    assert journal_text.endswith("\n")
    last = next(r for r in map(json.loads, journal_text.splitlines()) if r["type"] == "recovered")
    assert last["dropped_journal_tail"] == '{"seq":999,"type":"frame","utc":"2026-'
    assert last["dropped_csv_rows"] == {"flatfield_frames.csv": "13,flatfield,405,1,3,13,7.9"}
    assert all(json.loads(line) for line in journal_text.splitlines())
    assert read_series(folder / "flatfield_frames.csv") == rows_before
    assert (folder / "flatfield_frames.csv").read_bytes().endswith(b"\r\n")


def test_page_written_but_not_logged_is_placed_from_the_protocol(crashed: Path, tmp_path: Path) -> None:
    """Killed between writing a page and its frame log row: the page is kept, where the plan puts it."""
    folder = _copy(crashed, tmp_path)
    csv_path = folder / "flatfield_frames.csv"
    data = csv_path.read_bytes()
    last_row = read_series(csv_path)[-1]
    csv_path.write_bytes(data[: data.rstrip(b"\r\n").rfind(b"\n") + 1])
    assert recover_run(folder).outcome == "recovered"
    rows = read_series(csv_path)
    assert rows[-1]["ifd"] == last_row["ifd"] and (rows[-1]["c"], rows[-1]["t"]) == (last_row["c"], last_row["t"])
    assert rows[-1]["status"] == "ok" and rows[-1]["error"] == UNLOGGED_NOTE and rows[-1]["context"] == last_row["context"]
    pages, ome, images = _ome(folder / "flatfield.ome.tif")
    plane = ome.images[0].pixels.planes[int(last_row["ifd"])]
    assert not plane.annotation_refs and plane.delta_t is None and images[int(last_row["ifd"])].any()


# --- owners that are not gone ------------------------------------------------------------------------
def _with_owner(crashed: Path, tmp_path: Path, name: str, **process: Any) -> Path:
    folder = tmp_path / "runs" / name
    shutil.copytree(crashed, folder)
    run = json.loads((folder / "run.json").read_text())
    run["process"] = {**run["process"], **process}
    (folder / "run.json").write_text(json.dumps(run, indent=2))
    return folder


def test_live_and_foreign_owners_are_left_alone(crashed: Path, tmp_path: Path) -> None:
    me = psutil.Process()
    live = _with_owner(crashed, tmp_path, "a-live", pid=os.getpid(), create_time=me.create_time())
    foreign = _with_owner(crashed, tmp_path, "b-foreign", hostname="another-host.invalid")
    reused = _with_owner(crashed, tmp_path, "c-reused", pid=os.getpid(), create_time=me.create_time() - 3600)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = _with_owner(crashed, tmp_path, "d-dead", pid=gone.pid)
    runs = live.parent
    states = {c.folder.name: c.owner for c in scan_runs(runs)}
    assert states == {"a-live": "alive", "b-foreign": "other host", "c-reused": "gone", "d-dead": "gone"}
    assert find_interrupted(runs) == [reused, dead]
    before = {f: _hashes(f) for f in (live, foreign)}
    assert recover_run(live).outcome == "left alone"
    assert recover_run(foreign).outcome == "left alone"
    assert recover_run(live, force=True).outcome == "left alone"  # a live owner, even forced
    assert {f: _hashes(f) for f in (live, foreign)} == before


# --- files cut short by hand ---------------------------------------------------------------------------
def _info() -> InstrumentInfo:
    return InstrumentInfo(
        microscope={"manufacturer": "M", "model": "X", "type": "Inverted"}, lines=[LineInfo("488", 488.0, 100.0, "V", "L", "1")],
        camera={"vendor": "C", "model": "Cam", "serial": "9"}, objective=None, filters=[], pixel_size_um=0.5, bit_depth=12,
        run={"RunId": "r", "Protocol": "p"}, nbo={"Station.Name": "s"},
    )


def _unfinished_stack(folder: Path, frames: list[tuple[int, int]], missing: tuple[int, ...] = ()) -> tuple[Path, list[np.ndarray]]:
    """A stack (channels dark, 488; 4 frames each) written as the runner writes it (the frame log row
    after each page), never finalized."""
    from datetime import datetime, timezone

    plan = StackPlan("s", ["dark", "488"], {"dark": 4, "488": 4})
    stack = OmeTiffStack(folder / "s.ome.tif", plan, _info(), datetime(2026, 1, 1, tzinfo=timezone.utc))
    log = SeriesWriter(folder / "s_frames.csv", FRAME_COLUMNS)
    rng = np.random.default_rng(1)
    images = []
    for n, (c, t) in enumerate(frames):
        name = plan.channels[c]
        channel = ChannelInfo(name, {"488": 20.0} if c else {})
        plane = PlaneInfo(c, t, -1, 0.1 * n, 0.05, 1.0, 2.0, 3.0)
        row = {"frame": n, "stack": "s", "channel": name, "c": c, "t": t, "time_s": f"{0.1 * n:.6f}", "exposure_s": 0.05,
               "x_um": 1.0, "y_um": 2.0, "z_um": 3.0, "lines_on": "488", "setpoint_mW": "20", "context": "{}"}
        if n in missing:
            stack.write_missing(plane, "timeout")
            log.write({**row, "status": "missing", "error": "timeout", "ifd": plane.ifd})
            images.append(np.zeros((40, 56), np.uint16))
            continue
        image = rng.integers(100, 4000, (40, 56), dtype=np.uint16)
        stack.write(image, plane, channel)
        log.write({**row, "status": "ok", "ifd": plane.ifd, "attempts": 1})
        images.append(image)
    log.close()
    stack._writer.close()  # type: ignore[union-attr]  # what a crash leaves: closed by the OS, never finalized
    return stack.path, images


@pytest.mark.parametrize("cut", ["mid_pixels", "few_pixels", "ifd_only"])
def test_truncated_last_page_is_dropped_and_the_rest_kept(tmp_path: Path, cut: str) -> None:
    path, images = _unfinished_stack(tmp_path, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)], missing=(2,))
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[5]
        offset, count, ifd = last.dataoffsets[0], last.databytecounts[0], last.offset
    size = {"mid_pixels": offset + count // 2, "few_pixels": offset + 3, "ifd_only": ifd}[cut]
    with open(path, "r+b") as f:
        f.truncate(size)
    scan = scan_pages(path)
    assert scan.pages == 5 and scan.chain in (5, 6)  # an IFD that is not there at all ends the chain

    result = recover_stack(tmp_path, "s", None, FRAME_COLUMNS)
    assert result.entry is not None and result.entry["frames"] == 4 and result.entry["placeholder_pages"] == 4
    pages, ome, read = _ome(path)
    px = ome.images[0].pixels
    assert pages == len(px.planes) == len(px.tiff_data_blocks) == 8 and (px.size_c, px.size_t) == (2, 4)
    notes = {a.id: {m.k: m.value for m in a.value.ms} for a in ome.structured_annotations.map_annotations}
    status = [notes[p.annotation_refs[0].id]["FrameStatus"] if p.annotation_refs else "" for p in px.planes]
    reasons = [notes[p.annotation_refs[0].id]["Reason"] if p.annotation_refs else "" for p in px.planes]
    assert status == ["", "", "missing", "", "", "missing", "not acquired", "not acquired"]
    assert reasons[2] == "timeout" and reasons[5] == LOST_NOTE and reasons[6] == INTERRUPTED_NOTE
    for k in range(5):
        assert np.array_equal(read[k], images[k])
    assert not read[5].any()
    rows = read_series(tmp_path / "s_frames.csv")
    assert [r["status"] for r in rows] == ["ok", "ok", "missing", "ok", "ok", "missing"] and rows[5]["error"] == LOST_NOTE
    assert [c.name for c in px.channels] == ["dark", "488"] and px.channels[0].light_source_settings is None
    assert px.channels[1].light_source_settings.attenuation == pytest.approx(0.8)
    assert px.planes[1].position_x == 1.0 and px.planes[1].delta_t == pytest.approx(0.1)
    if cut == "mid_pixels":
        bio = bioformats_info(path)
        assert bioformats_value(bio, "Image count") == "8"
    # again: already consistent, untouched
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert "already consistent" in recover_stack(tmp_path, "s", None, FRAME_COLUMNS).details[0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_first_page_cut_short_keeps_the_bytes_aside(tmp_path: Path) -> None:
    path, _ = _unfinished_stack(tmp_path, [(0, 0)])
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    result = recover_stack(tmp_path, "s", None, FRAME_COLUMNS)
    assert result.entry is None and not path.exists() and (tmp_path / "s.ome.tif.incomplete").is_file()
    assert read_series(tmp_path / "s_frames.csv")[0]["status"] == "missing"


# --- journal and CSV mending -----------------------------------------------------------------------------
def test_repair_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"seq":0}\n{"seq":1}\n{"seq":2,"ty')
    assert repair_journal(path) == b'{"seq":2,"ty'
    assert path.read_bytes() == b'{"seq":0}\n{"seq":1}\n'
    assert repair_journal(path) == b""
    path.write_bytes(b'{"seq":0}\n' + b"\0" * 30 + b"\n" + b"\0" * 7)  # what a power loss can leave
    assert repair_journal(path) == b"\0" * 30 + b"\n" + b"\0" * 7
    assert path.read_bytes() == b'{"seq":0}\n'
    path.write_bytes(b'{"seq":0}\nnot json, but whole\n{"seq"')  # a whole line is not ours to drop
    assert repair_journal(path) == b'{"seq"'
    assert path.read_bytes() == b'{"seq":0}\nnot json, but whole\n'


@pytest.mark.parametrize(("tail", "kept_rows", "dropped"), [
    (b"", 2, b""),
    (b"3,x,", 2, b"3,x,"),  # no line end
    (b"3,x\r\n", 2, b"3,x\r\n"),  # the wrong number of fields (a power loss)
    (b'3,"two\r\nlines",', 2, b'3,"two\r\nlines",'),  # a quoted field with a line end, cut short
    (b'3,"two\r\nlines",c\r\n', 3, b""),  # ... and whole
    (b"3,b,c\r", 3, b""),  # whole but for its \n: mended, not dropped
])
def test_repair_csv(tmp_path: Path, tail: bytes, kept_rows: int, dropped: bytes) -> None:
    path = tmp_path / "s.csv"
    head = b"a,b,c\r\n1,x,y\r\n2,x,y\r\n"
    path.write_bytes(head + tail)
    assert repair_csv(path, ["a", "b", "c"]) == (kept_rows, dropped)
    assert path.read_bytes().endswith(b"\r\n")
    assert len(read_series(path)) == kept_rows
    assert repair_csv(path, ["a", "b", "c"]) == (kept_rows, b"")


def test_repair_csv_header_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"a,b")
    assert repair_csv(path, ["a", "b", "c"]) == (0, b"a,b")
    assert path.read_bytes() == b"a,b,c\r\n"


def test_folder_without_run_json(tmp_path: Path) -> None:
    """The runner creates the journal just before run.json: a process killed in between leaves a
    folder that names no owner, taken as abandoned once nothing in it changed for a while."""
    folder = tmp_path / "runs" / "20260101T000000Z_flat-field_simulated-widefield_abcdef12"
    folder.mkdir(parents=True)
    (folder / "journal.jsonl").write_bytes(b"")
    assert [c.owner for c in scan_runs(folder.parent)] == ["unknown"]  # may be a run starting right now
    assert recover_run(folder).outcome == "left alone"
    old = time.time() - 3600
    os.utime(folder / "journal.jsonl", (old, old))
    os.utime(folder, (old, old))
    assert find_interrupted(folder.parent) == [folder]
    report = recover_run(folder)
    assert report.outcome == "recovered" and not report.analysis_error
    run = json.loads((folder / "run.json").read_text())
    assert (run["run_id"], run["protocol"]["id"], run["status"]) == ("abcdef12", "flat-field", "interrupted")
    assert run["started_utc"] == "2026-01-01T00:00:00+00:00" and run["files"] == {}
    assert [r["type"] for r in read_journal(folder / "journal.jsonl")][-4:] == ["recovered", "finishing", "finishing", "finished"]
    assert (folder / "MANIFEST.sha256").is_file()
    assert recover_run(folder).outcome == "nothing to do"
