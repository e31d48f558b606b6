"""A full disk is a documented ending: one message, exit 4 (``failed``, reason ``disk full: ...``),
lasers off, every reading and frame already on disk kept, journal lines never torn, the folder
recoverable; no room to start is ``not started`` (exit 5) with no folder left behind.

The full disk is injected: the writes of one file start failing with ``ENOSPC`` (after writing part
of what they were given, as a real full disk does) until the run releases its space reserve."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tifffile
from ome_types import from_xml

from harness.cli import commands as cli
from harness.common import disk_full
from harness.records.journal import Journal, read_journal
from harness.records.series_writer import SeriesWriter, read_series
from tests.conftest import station_variant

SAMPLING = """\
protocol: disk-sampling
title: Sampling until the disk fills
retries: {attempts: 1, delay: 1 s}
steps:
  - meter: {wavelength: 488, averaging: 10}
  - laser: {line: 488, setpoint: 10 mW, emission: on}
  - sample: {series: power, every: 1 s, for: 40 s}
  - laser: {line: 488, emission: off}
"""

FRAMES = """\
protocol: disk-frames
title: Frames until the disk fills
retries: {attempts: 1, delay: 1 s}
steps:
  - laser: {line: 561, setpoint: 20 %, emission: on}
  - acquire: {stack: frames, frames: 12, exposure: 20 ms, centre_roi: [64, 64]}
  - laser: {line: 561, emission: off}
"""


class FullDisk:
    """Writes to files named ``name`` fail with ENOSPC from the ``after``-th on (the first failing
    one writes half its bytes), until the run's space reserve is released (``forever``: never)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str, after: int, forever: bool = False) -> None:
        self.name, self.after, self.forever = name, after, forever
        self.writes = self.failures = 0
        self.full = False
        real_append, real_release = disk_full.append_whole, disk_full.SpaceReserve.release

        def append_whole(fd: int, data: bytes, size: int) -> int:
            if Path(os.readlink(f"/proc/self/fd/{fd}")).name == self.name:
                self.writes += 1
                if self.writes == self.after:
                    self.full = True
                if self.full:
                    self.failures += 1
                    os.write(fd, data[: len(data) // 2])  # a real full disk takes what fits, then refuses
                    os.ftruncate(fd, size)  # what append_whole does on its error (tested on its own below)
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real_append(fd, data, size)

        def release(reserve: disk_full.SpaceReserve) -> None:
            real_release(reserve)
            if not self.forever:
                self.full = False

        monkeypatch.setattr(module, "append_whole", append_whole)
        monkeypatch.setattr(disk_full.SpaceReserve, "release", release)


def _run(tmp_path: Path, protocol: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    station = station_variant(tmp_path, {"devices": {"Camera": {"simulation": {"serial": "SIMDISK1"}}}})
    path = tmp_path / "p.yaml"
    path.write_text(protocol)
    outcome = tmp_path / "outcome.json"
    code = cli.run(["run", str(path), "--station", str(station), "--runs-dir", str(tmp_path / "runs"), "-q", "-y",
                    "--outcome", str(outcome), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}", *extra])
    return code, json.loads(outcome.read_text()) if outcome.is_file() else {}, ""


def _lines_all_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # not one torn or merged line


def _check_disk_full_ending(result: dict[str, Any], file_name: str) -> Path:
    folder = Path(result["folder"])
    assert result["status"] == "failed" and result["outcome"] == "failed"
    assert result["reason"] == f"disk full: {folder / file_name}: no space left on device; data so far kept in {folder}"
    assert result["safe_state"]["confirmed"] is True
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and run["reason"] == result["reason"]
    records = _lines_all_json(folder / "journal.jsonl")
    types = [r["type"] for r in records]
    end = types.index("run_end")
    assert types[end - 2:end + 1] == ["error", "safe_state", "run_end"] and types[end + 1:] == ["finishing", "finishing", "finished"]
    assert records[end - 2]["disk_full"] is True and records[end - 2]["message"] == result["reason"]
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert not (folder / disk_full.RESERVE_NAME).exists()
    manifest = subprocess.run(["sha256sum", "-c", "--quiet", "MANIFEST.sha256"], cwd=folder, capture_output=True, text=True)
    assert manifest.returncode == 0, manifest.stdout + manifest.stderr
    return folder


def test_enospc_in_the_journal_is_a_disk_full_ending_and_no_line_is_torn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import harness.records.journal

    disk = FullDisk(monkeypatch, harness.records.journal, "journal.jsonl", after=12)
    code, result, _ = _run(tmp_path, SAMPLING)
    err = capsys.readouterr().err
    assert code == 4, err
    assert "Traceback" not in err and disk.failures >= 1
    folder = _check_disk_full_ending(result, "journal.jsonl")
    records = read_journal(folder / "journal.jsonl")
    readings = [r for r in records if r["type"] == "reading"]
    rows = read_series(folder / "power.csv")
    assert [int(r["sample"]) for r in rows] == [r["sample"] for r in readings]  # each reading once, in both
    assert all(float(row["power_W"]) == pytest.approx(r["power_W"]) for row, r in zip(rows, readings))


def test_enospc_in_a_series_csv_keeps_every_row_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import harness.records.series_writer

    disk = FullDisk(monkeypatch, harness.records.series_writer, "power.csv", after=9)  # the header and 7 rows fit
    code, result, _ = _run(tmp_path, SAMPLING)
    assert code == 4, capsys.readouterr().err
    folder = _check_disk_full_ending(result, "power.csv")
    raw = (folder / "power.csv").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 1 + 8  # the refused row was written once space came back
    rows = read_series(folder / "power.csv")
    readings = [r for r in read_journal(folder / "journal.jsonl") if r["type"] == "reading"]
    assert [int(r["sample"]) for r in rows] == [r["sample"] for r in readings] == list(range(8))
    assert disk.failures == 1


def test_a_page_that_does_not_fit_is_not_written_and_the_stack_is_finalized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import harness.run.runner

    pages = {"n": 0}
    real = harness.run.runner.check_room

    def check_room(path: Path, need: int) -> None:
        pages["n"] += 1
        if pages["n"] > 5:
            raise disk_full.DiskFull(path)
        real(path, need)

    monkeypatch.setattr(harness.run.runner, "check_room", check_room)
    code, result, _ = _run(tmp_path, FRAMES)
    assert code == 4, capsys.readouterr().err
    folder = _check_disk_full_ending(result, "frames.ome.tif")
    frames = [r for r in read_journal(folder / "journal.jsonl") if r["type"] == "frame"]
    with tifffile.TiffFile(folder / "frames.ome.tif") as tif:
        px = from_xml(tif.ome_metadata).images[0].pixels
        assert len(tif.pages) == len(px.planes) == len(px.tiff_data_blocks) == 5  # the frames that fitted
        assert all(p.asarray().max() > 0 for p in tif.pages)
    assert len(frames) == 5 and len(read_series(folder / "frames_frames.csv")) == 5


def test_a_page_cut_short_by_a_full_disk_is_left_for_recover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from harness.records.ome_writer import OmeTiffStack
    from harness.recovery.recover import recover_run

    real_write, real_fh_write = OmeTiffStack.write, tifffile.FileHandle.write
    full = {"from": None}

    def write(self: OmeTiffStack, image: Any, plane: Any, channel: Any = None) -> None:
        if len(self.planes) == 4:
            full["from"] = self.path
        real_write(self, image, plane, channel)

    def fh_write(fh: Any, data: Any) -> int:
        if full["from"] is not None and Path(fh.path) == full["from"]:
            real_fh_write(fh, bytes(memoryview(data).cast("B"))[:100])  # what fitted
            fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fh_write(fh, data)

    monkeypatch.setattr(tifffile.FileHandle, "write", fh_write)
    monkeypatch.setattr(OmeTiffStack, "write", write)
    code, result, _ = _run(tmp_path, FRAMES)
    err = capsys.readouterr().err
    assert code == 4, err
    folder = Path(result["folder"])
    assert result["status"] == "failed" and result["reason"].startswith(f"disk full: {folder / 'frames.ome.tif'}: no space left on device")
    assert "microscope-qc recover" in result["stored"]
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "running"  # the stack's XML is the plan's: `recover` rebuilds it from its pages
    records = _lines_all_json(folder / "journal.jsonl")
    assert records[-1]["type"] == "run_end" and records[-1]["status"] == "failed"
    assert records[-2]["type"] == "safe_state" and records[-2]["confirmed"] is True
    # the run process has ended: its owner is gone, and recovery ends the run as its journal says
    run["process"]["pid"] = _dead_pid()
    (folder / "run.json").write_text(json.dumps(run))
    report = recover_run(folder)
    assert report.outcome == "recovered", report.error
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and "disk full" in run["reason"]
    with tifffile.TiffFile(folder / "frames.ome.tif") as tif:
        px = from_xml(tif.ome_metadata).images[0].pixels
        assert len(tif.pages) == len(px.planes) == len(px.tiff_data_blocks)
        assert sum(1 for p in tif.pages if p.asarray().max() > 0) == 4


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


@pytest.mark.parametrize("where", ["run folder", "run.json", "reserve"])
def test_no_room_to_start_is_not_started_and_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str], where: str) -> None:
    import harness.records.run_record
    from harness.recovery.recover import scan_runs

    runs = tmp_path / "runs"
    if where == "run folder":
        real_mkdir = Path.mkdir

        def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
            if self.parent == runs:
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
            real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    elif where == "run.json":
        def replace_json(path: Path, data: Any) -> None:
            path.with_name(path.name + ".tmp").write_text("{\"run_id\": ")  # what fitted
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(harness.records.run_record, "replace_json", replace_json)  # run.json is written through the run record
    else:
        def no_reserve(self: disk_full.SpaceReserve, folder: Path, size: int = 0) -> None:
            raise disk_full.DiskFull(folder / disk_full.RESERVE_NAME)

        monkeypatch.setattr(disk_full.SpaceReserve, "__init__", no_reserve)
    code, result, _ = _run(tmp_path, SAMPLING)
    err = capsys.readouterr().err
    assert code == 5, err
    assert result["status"] == "not started" and result["reason"].startswith("disk full: ")
    assert result["reason"].endswith("no space left on device; the run was not started")
    assert f"not started: {result['reason']}" in err and "Traceback" not in err
    assert not runs.exists() or list(runs.iterdir()) == []
    assert scan_runs(runs) == []  # nothing for recovery to call interrupted


def test_a_journal_that_stays_full_shows_its_last_records_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import harness.records.journal

    FullDisk(monkeypatch, harness.records.journal, "journal.jsonl", after=12, forever=True)
    code, result, _ = _run(tmp_path, SAMPLING)
    err = capsys.readouterr().err
    assert code == 4 and "Traceback" not in err
    assert "journal records that could not be written" in err
    assert '"type":"safe_state"' in err and '"type":"run_end"' in err
    folder = Path(result["folder"])
    assert json.loads((folder / "run.json").read_text())["status"] == "failed"
    _lines_all_json(folder / "journal.jsonl")  # what is there is whole


# --- the pieces ------------------------------------------------------------------------------------
def test_append_whole_cuts_a_short_write_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"line one\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    real_write = os.write
    calls = {"n": 0}

    def short_write(fd_: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd_, bytes(data)[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(OSError) as info:
        disk_full.append_whole(fd, b"line two\n", 9)
    monkeypatch.undo()
    assert disk_full.is_disk_full(info.value)
    assert path.read_bytes() == b"line one\n"
    assert disk_full.append_whole(fd, b"line two\n", 9) == 18
    os.close(fd)
    assert path.read_bytes() == b"line one\nline two\n"


def _switchable_full_disk(monkeypatch: pytest.MonkeyPatch, module: Any) -> dict[str, bool]:
    """``module``'s whole-line appends fail with ENOSPC while the returned ``state["full"]`` is True."""
    state = {"full": False}
    real = disk_full.append_whole

    def append_whole(fd: int, data: bytes, size: int) -> int:
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, size)

    monkeypatch.setattr(module, "append_whole", append_whole)
    return state


def test_journal_keeps_a_refused_record_and_writes_it_first_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.records.journal

    state = _switchable_full_disk(monkeypatch, harness.records.journal)
    journal = Journal(tmp_path / "journal.jsonl")
    journal.write("a")
    state["full"] = True
    with pytest.raises(disk_full.DiskFull) as info:
        journal.write("b")
    assert str(info.value) == f"disk full: {tmp_path / 'journal.jsonl'}: no space left on device"
    journal.tolerant = True
    journal.write("c")  # no raise while a run ends
    state["full"] = False
    journal.write("d")
    journal.close()
    assert [(r["seq"], r["type"]) for r in _lines_all_json(tmp_path / "journal.jsonl")] == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]


def test_series_writer_drops_a_row_it_cannot_write_at_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.records.series_writer

    state = _switchable_full_disk(monkeypatch, harness.records.series_writer)
    writer = SeriesWriter(tmp_path / "s.csv", ["a", "b"])
    writer.write({"a": 1, "b": 2})
    state["full"] = True
    with pytest.raises(disk_full.DiskFull):
        writer.write({"a": 3, "b": 4})
    with pytest.raises(disk_full.DiskFull):
        writer.close()
    assert writer.rows == 1
    assert (tmp_path / "s.csv").read_bytes() == b"a,b\r\n1,2\r\n"


def test_a_record_after_a_fragment_is_not_dropped_by_recovery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal written before records were appended whole: a full disk cut a line short, the next
    (complete) records landed on the fragment; recovery must still see the run's end."""
    from harness.recovery.recover import recover_run

    code, result, _ = _run(tmp_path, SAMPLING.replace("for: 40 s", "for: 5 s"))
    assert code == 0, capsys.readouterr().err
    folder = Path(result["folder"])
    journal = folder / "journal.jsonl"
    lines = journal.read_text().splitlines()
    lines = lines[:[json.loads(line)["type"] for line in lines].index("run_end") + 1]  # as killed before its finishing
    end = json.loads(lines[-1])
    end.update(status="failed", reason="disk full: x: no space left on device")
    torn = '{"seq":' + str(end["seq"]) + ',"type":"err'  # the fragment a full disk left
    journal.write_text("\n".join(lines[:-1]) + "\n" + torn + json.dumps(end, separators=(",", ":")) + "\n")
    assert read_journal(journal)[-1] == end
    run = json.loads((folder / "run.json").read_text())
    run.update(status="running")
    run["process"]["pid"] = _dead_pid()
    (folder / "run.json").write_text(json.dumps(run))
    report = recover_run(folder)
    assert report.outcome == "recovered", report.error
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and run["reason"].startswith("disk full: x: no space left on device")


def test_recovery_removes_a_killed_runs_space_reserve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.recovery.recover import recover_run

    code, result, _ = _run(tmp_path, SAMPLING.replace("for: 40 s", "for: 3 s"))
    assert code == 0, capsys.readouterr().err
    folder = Path(result["folder"])
    run = json.loads((folder / "run.json").read_text())
    run.update(status="running")
    run["process"]["pid"] = _dead_pid()
    (folder / "run.json").write_text(json.dumps(run))
    (folder / disk_full.RESERVE_NAME).write_bytes(b"\0" * 1000)
    report = recover_run(folder)
    assert report.outcome == "recovered", report.error
    assert not (folder / disk_full.RESERVE_NAME).exists()
    assert disk_full.RESERVE_NAME not in (folder / "MANIFEST.sha256").read_text()


def test_a_disk_that_fills_during_the_analysis_is_analysis_failed_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import harness.finishing.results

    def analyse_run(folder: Path) -> dict[str, Any]:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "report.html"))

    monkeypatch.setattr(harness.finishing.results, "analyse_run", analyse_run)
    code, result, _ = _run(tmp_path, SAMPLING.replace("for: 40 s", "for: 3 s"))
    err = capsys.readouterr().err
    assert code == 6 and result["outcome"] == "analysis failed", err
    folder = Path(result["folder"])
    assert result["analysis_error"].startswith(f"analysis failed: disk full: {folder / 'report.html'}: no space left on device; the data are kept")
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"
