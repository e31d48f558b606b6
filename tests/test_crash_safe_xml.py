"""The OME-XML rewrite is crash-safe: a kill or a full disk at any moment of rewriting a stack's XML
(at finalize, when analysis adds its QC annotations, during recovery) leaves a readable file with its
previous (or its new) XML and its pixels untouched; a stack whose XML was lost anyway (an older
version, a damaged file) is rebuilt by ``recover`` from its pages, its frame log and run.json, and
``analyze`` says so in one message instead of a traceback.

A full disk is simulated with RLIMIT_FSIZE (writes that would grow a file past the limit fail, as on
a full disk, whatever writes them: our code, tifffile's or the old ``tiffcomment``); a kill by raising
a BaseException from inside the rewrite at a chosen step."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from ome_types import from_xml

from harness.analysis import qc_annotations
from harness.cli import commands as cli
from harness.finishing.results import analyse_run
from harness.finishing.runner import FinishingRunner as Runner
from harness.protocol.plan import StackPlan
from harness.records import tiff_description
from harness.records.image_records import NS_NBO, NS_RUN
from harness.records.journal import read_journal
from harness.records.ome_writer import OmeTiffStack
from harness.records.stack_check import stack_problem
from harness.records.tiff_description import entry_position, rewrite_description
from harness.recovery.recover import recover_run
from harness.station.station import Station

from .conftest import ROOT, station_variant
from .omecheck import bioformats_info, bioformats_value
from .test_recovery import _info

PROTOCOL = ROOT / "protocols" / "flat-field.yaml"
CAMERA = {"devices": {"Camera": {"simulation": {"width_px": 96, "height_px": 64}}}}


class Killed(BaseException):
    """What a kill -9 at this point would leave: nothing after it runs (not even ``except Exception``)."""


# --- helpers -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def disk_full_after(path: Path, extra: int) -> Iterator[None]:
    """Every file write that would take a file past ``path``'s size + ``extra`` bytes fails (EFBIG, as
    ENOSPC would), whoever writes it."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + extra, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def pixels(path: Path) -> list[bytes]:
    with tifffile.TiffFile(path) as tif:
        return [p.asarray().tobytes() for p in tif.pages]


def valid_ome(path: Path) -> Any:
    """The file's OME, validated against the schema; fails the test if tifffile or ome-types cannot."""
    with tifffile.TiffFile(path) as tif:
        assert tif.ome_metadata, f"{path.name}: no OME-XML"
        ome = from_xml(tif.ome_metadata, validate=True)
        assert len(tif.pages) == len(ome.images[0].pixels.tiff_data_blocks)
    return ome


def description(path: Path) -> str:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].description


def small_stack(folder: Path, frames: int = 6) -> tuple[Path, OmeTiffStack]:
    """A stack as the runner writes it (not yet finalized): page 0 has the plan's XML."""
    from harness.records.image_records import ChannelInfo, PlaneInfo

    plan = StackPlan("s", ["dark", "488"], {"dark": frames // 2, "488": frames - frames // 2})
    stack = OmeTiffStack(folder / "s.ome.tif", plan, _info(), datetime(2026, 1, 1, tzinfo=timezone.utc))
    rng = np.random.default_rng(2)
    for n in range(frames):
        c = 0 if n < frames // 2 else 1
        stack.write(rng.integers(100, 4000, (40, 56), dtype=np.uint16), PlaneInfo(c, n % (frames // 2), -1, 0.1 * n, 0.05, 1.0, 2.0, 3.0),
                    ChannelInfo(plan.channels[c], {"488": 20.0} if c else {}))
    return stack.path, stack


def padded(xml: str, n: int) -> str:
    """The same OME-XML, ``n`` characters longer (a comment inside the root element)."""
    return xml.replace("</OME>", f"<!--{'x' * n}--></OME>")


def destroy_xml(path: Path) -> None:
    """What the old in-place rewrite left after a kill or a full disk: page 0's tag 270 pointing nowhere."""
    entry, count, _ = entry_position(path)
    with open(path, "r+b") as f:
        f.seek(entry + 4)
        f.write(struct.pack("<QQ", count, 0))  # the value offset zeroed


def run_flat_field(base: Path, serial: str, monkeypatch: pytest.MonkeyPatch | None = None) -> Path:
    station_file = station_variant(base, {"devices": {"Camera": {"simulation": {"width_px": 96, "height_px": 64, "serial": serial}}}},
                                   f"{serial}.yaml")
    with Station.load(station_file) as station:
        outcome = Runner(station, PROTOCOL, runs_dir=base / "runs", quiet=True).run()
    return outcome.folder


def with_dead_owner(folder: Path) -> None:
    """run.json as a run killed with SIGKILL leaves it: ``running``, its owner process gone."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = json.loads((folder / "run.json").read_text())
    run["status"] = "running"
    run["process"] = {"pid": proc.pid, "create_time": 0.0, "hostname": socket.gethostname()}
    (folder / "run.json").write_text(json.dumps(run, indent=2))
    journal = folder / "journal.jsonl"  # killed while finalizing: before the run_end record
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(line for line in lines if '"type": "run_end"' not in line and '"type":"run_end"' not in line))
    (folder / "results.json").unlink()
    (folder / "MANIFEST.sha256").unlink()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed flat-field run (kept pristine: tests work on copies)."""
    folder = run_flat_field(tmp_path_factory.mktemp("finished"), "SIMXML1")
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / folder.name
    shutil.copytree(folder, dest)
    return dest


# --- the rewrite itself --------------------------------------------------------------------------------
def _count_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    steps: list[str] = []
    real_write, real_sync = tiff_description._pwrite, tiff_description._fsync
    monkeypatch.setattr(tiff_description, "_pwrite", lambda fd, at, data: (steps.append("write"), real_write(fd, at, data))[1])
    monkeypatch.setattr(tiff_description, "_fsync", lambda fd: (steps.append("sync"), real_sync(fd))[1])
    return steps


@pytest.mark.parametrize("reuse", [False, True], ids=["appended", "into-unused-space"])
def test_a_kill_at_any_step_of_the_rewrite_leaves_the_old_or_the_new_xml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse: bool) -> None:
    path, stack = small_stack(tmp_path)
    stack.finalize()
    final = description(path)
    if reuse:  # two long values, one after the other: the new, shorter one fits before the current one
        rewrite_description(path, padded(final, 20000))
        rewrite_description(path, padded(final, 20001))
    before, old = pixels(path), description(path)
    new = final.replace("</OME>", "<!-- rewritten -->\n</OME>")
    probe = tmp_path / "probe.ome.tif"
    shutil.copy(path, probe)
    steps = _count_steps(monkeypatch)
    rewrite_description(probe, new)
    monkeypatch.undo()
    # the value, sync; the pointer, sync; (reused space: the file cut after the new value, sync)
    assert steps == ["write", "sync", "write", "sync"] + (["sync"] if reuse else [])
    assert (probe.stat().st_size < path.stat().st_size) == reuse
    for kill_at in range(len(steps)):
        copy = tmp_path / f"kill{kill_at}.ome.tif"
        shutil.copy(path, copy)
        calls = iter(range(100))
        real_write, real_sync = tiff_description._pwrite, tiff_description._fsync

        def step(calls: Iterator[int], kill_at: int, real: Any, *args: Any) -> Any:
            if next(calls) == kill_at:
                raise Killed()
            return real(*args)

        monkeypatch.setattr(tiff_description, "_pwrite", functools.partial(step, calls, kill_at, real_write))
        monkeypatch.setattr(tiff_description, "_fsync", functools.partial(step, calls, kill_at, real_sync))
        with pytest.raises(Killed):
            rewrite_description(copy, new)
        monkeypatch.undo()
        assert description(copy) == (old if kill_at < 3 else new), kill_at  # before the pointer is written: the old
        valid_ome(copy)
        assert pixels(copy) == before
        rewrite_description(copy, new)  # and the next rewrite works
        assert description(copy) == new and pixels(copy) == before


def test_the_pointer_is_one_write_inside_the_first_sector(finished: Path) -> None:
    entry, count, offset = entry_position(finished / "flatfield.ome.tif")
    assert entry + 4 + 16 <= 512  # count and offset: 16 bytes the disk writes whole
    assert offset + count == (finished / "flatfield.ome.tif").stat().st_size  # the QC annotations' XML, last


def test_enospc_part_way_keeps_the_old_xml_and_gives_the_space_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, stack = small_stack(tmp_path)
    stack.finalize()
    size, old, before = path.stat().st_size, description(path), pixels(path)
    real_write = os.write
    written = [0]

    def full_disk(fd: int, data: Any) -> int:
        if written[0] >= 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data)[: 1000 - written[0]])  # a partial write, as a filling disk gives
        written[0] += n
        return n

    monkeypatch.setattr(tiff_description.os, "write", full_disk)
    with pytest.raises(OSError) as err:
        rewrite_description(path, padded(old, 5000))
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert "could not be rewritten" in str(err.value) and "keeps its previous metadata" in str(err.value)
    assert path.stat().st_size == size  # the partly written value was cut away again
    assert description(path) == old and pixels(path) == before
    valid_ome(path)


def test_repeated_rewrites_do_not_grow_the_file_without_bound(tmp_path: Path) -> None:
    path, stack = small_stack(tmp_path)
    stack.finalize()
    base, xml = path.stat().st_size, description(path)
    sizes = []
    for n in range(12):
        value = padded(xml, (n % 4) * 3000)
        rewrite_description(path, value)
        sizes.append(path.stat().st_size)
        assert description(path) == value
    assert max(sizes) <= base + 4 * (len(xml) + 9000), sizes
    valid_ome(path)


def test_classic_tiff_and_refusals(tmp_path: Path) -> None:
    classic = tmp_path / "classic.tif"
    tifffile.imwrite(classic, np.arange(12, dtype=np.float32).reshape(3, 4), description="first value", metadata=None)
    rewrite_description(classic, "a longer second value" * 10)
    assert tifffile.TiffFile(classic).pages[0].description == "a longer second value" * 10
    assert np.array_equal(tifffile.imread(classic), np.arange(12, dtype=np.float32).reshape(3, 4))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((3, 4), np.uint8), metadata=None)
    with pytest.raises(ValueError, match="no ImageDescription"):
        rewrite_description(plain, "<OME/>")
    text = tmp_path / "text.tif"
    text.write_text("not a tiff")
    with pytest.raises(ValueError, match="not a TIFF"):
        rewrite_description(text, "<OME/>")


# --- finalize ------------------------------------------------------------------------------------------
def test_full_disk_at_finalize_keeps_the_plans_xml(tmp_path: Path) -> None:
    path, stack = small_stack(tmp_path)
    before, planned = pixels(path), description(path)
    with disk_full_after(path, 100), pytest.raises(OSError, match="keeps its previous metadata"):
        stack.finalize()
    assert description(path) == planned and pixels(path) == before  # old code: "TiffTag 270 invalid value offset"
    assert "still the plan" in stack_problem(path)  # readable, and recover redescribes it


def test_run_whose_finalize_hits_a_full_disk_is_repaired_by_recover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    real_finalize = OmeTiffStack.finalize

    def finalize_on_a_full_disk(self: OmeTiffStack) -> bool:
        with disk_full_after(self.path, 4096):  # the grid is complete: only the rewrite needs the space
            return real_finalize(self)

    monkeypatch.setattr(OmeTiffStack, "finalize", finalize_on_a_full_disk)
    folder = run_flat_field(tmp_path, "SIMXML2")
    monkeypatch.undo()
    run = json.loads((folder / "run.json").read_text())
    assert "could not finalize flatfield.ome.tif" in run["reason"] and "keeps its previous metadata" in run["reason"]
    assert f"microscope-qc recover {folder} makes its XML describe the pages" in run["reason"]
    assert any(r["type"] == "error" and "finalizing flatfield.ome.tif" in r.get("message", "") for r in read_journal(folder / "journal.jsonl"))
    stack = folder / "flatfield.ome.tif"
    before = pixels(stack)
    assert len(before) == 50 and "still the plan" in stack_problem(stack)  # readable: the plan, not lost
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "analysis failed" and "still the plan" in results["analysis_error"]  # not analysed as if whole

    assert cli.run(["analyze", str(folder)]) == 6
    err = capsys.readouterr().err
    assert "flatfield.ome.tif" in err and f"microscope-qc recover {folder}" in err and "Traceback" not in err

    assert cli.run(["recover", str(folder), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}"]) == 0
    out = capsys.readouterr().out
    assert f"recovered {folder}" in out and "rebuilt" not in out  # the XML was readable: only redescribed
    ome = valid_ome(stack)
    assert len(ome.images[0].pixels.planes) == 50 and pixels(stack) == before
    assert cli.run(["analyze", str(folder)]) == 0
    assert json.loads((folder / "results.json").read_text())["results"]


# --- QC annotations --------------------------------------------------------------------------------------
def test_full_disk_while_annotating_keeps_the_xml_and_analyze_works_later(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_of(finished, tmp_path)
    stack = folder / "flatfield.ome.tif"
    before, xml = pixels(stack), description(stack)
    real_annotate = qc_annotations.annotate_file

    def annotate_on_a_full_disk(path: Path, *args: Any) -> None:
        with disk_full_after(path, 100):
            real_annotate(path, *args)

    monkeypatch.setattr(qc_annotations, "annotate_file", annotate_on_a_full_disk)
    data = analyse_run(folder)
    monkeypatch.undo()
    assert data["annotated_files"] == [] and "could not be rewritten" in data["annotation_error"]
    assert description(stack) == xml and pixels(stack) == before  # old code: no readable XML, analyze crashes for ever
    valid_ome(stack)
    again = analyse_run(folder)
    assert again["annotated_files"] == ["flatfield.ome.tif"] and "annotation_error" not in again
    assert pixels(stack) == before


def test_kill_while_annotating_keeps_the_xml(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_of(finished, tmp_path)
    stack = folder / "flatfield.ome.tif"
    before, xml = pixels(stack), description(stack)

    def killed(fd: int) -> None:
        raise Killed()

    monkeypatch.setattr(tiff_description, "_fsync", killed)  # the value is written, the pointer not yet
    with pytest.raises(Killed):
        analyse_run(folder)
    monkeypatch.undo()
    assert description(stack) == xml and pixels(stack) == before
    valid_ome(stack)
    assert analyse_run(folder)["annotated_files"] == ["flatfield.ome.tif"]


# --- a stack whose XML is lost ---------------------------------------------------------------------------
def test_analyze_names_a_stack_whose_xml_is_lost(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_of(finished, tmp_path)
    destroy_xml(folder / "flatfield.ome.tif")
    data = analyse_run(folder)  # old code: TypeError: Unsupported source type NoneType
    assert data["status"] == "analysis failed" and data["annotated_files"] == [] and "annotation_error" not in data
    (result,) = data["results"]
    assert result["damaged"] and result["error"].startswith("its OME-XML is missing")
    assert cli.run(["analyze", str(folder)]) == 6
    err = capsys.readouterr().err
    assert "analysis failed: flatfield.ome.tif: its OME-XML is missing" in err and "Traceback" not in err
    assert f"microscope-qc recover {folder}" in err


@pytest.mark.parametrize("damage", ["offset zeroed", "past the end", "garbage"])
def test_killed_run_whose_xml_is_lost_is_rebuilt_from_pages_and_frame_log(finished: Path, tmp_path: Path, damage: str,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_of(finished, tmp_path)
    stack = folder / "flatfield.ome.tif"
    original = valid_ome(stack)
    before = pixels(stack)
    with_dead_owner(folder)
    entry, count, offset = entry_position(stack)
    with open(stack, "r+b") as f:
        if damage == "offset zeroed":
            f.seek(entry + 4)
            f.write(struct.pack("<QQ", count, 0))
        elif damage == "past the end":  # the old rewrite's pointer, the value never written (full disk)
            f.seek(entry + 4)
            f.write(struct.pack("<QQ", count + 100, stack.stat().st_size))
        else:  # a value cut short by a kill
            f.seek(offset + count // 2)
            f.write(b"\0" * (count - count // 2))
    assert stack_problem(stack).startswith("its OME-XML is")

    assert cli.run(["recover", "--runs-dir", str(folder.parent), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}"]) == 0  # old code: exit 4, for ever
    out = capsys.readouterr().out
    assert "rebuilt from its pages, the frame log and run.json" in out
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted"
    ome = valid_ome(stack)
    assert pixels(stack) == before  # byte-identical pixels
    px, opx = ome.images[0].pixels, original.images[0].pixels
    assert len(px.planes) == len(px.tiff_data_blocks) == 50
    assert [c.name for c in px.channels] == [c.name for c in opx.channels]
    assert [(p.the_c, p.the_t, p.position_x, p.exposure_time) for p in px.planes] == [(p.the_c, p.the_t, p.position_x, p.exposure_time) for p in opx.planes]
    assert [p.delta_t for p in px.planes] == pytest.approx([p.delta_t for p in opx.planes], abs=1e-5)  # the log has 6 decimals
    assert [(c.excitation_wavelength, c.detector_settings.gain, c.detector_settings.offset) for c in px.channels] == \
        [(c.excitation_wavelength, c.detector_settings.gain, c.detector_settings.offset) for c in opx.channels]
    assert px.physical_size_x == pytest.approx(opx.physical_size_x) and px.significant_bits == opx.significant_bits
    inst, oinst = ome.instruments[0], original.instruments[0]
    assert [(laser.wavelength, laser.power, laser.serial_number) for laser in inst.lasers] == [
        (laser.wavelength, laser.power, laser.serial_number) for laser in oinst.lasers]
    assert inst.detectors[0].serial_number == oinst.detectors[0].serial_number and inst.microscope.model == oinst.microscope.model
    assert inst.objectives[0].lens_na == oinst.objectives[0].lens_na

    def notes(o: Any, namespace: str) -> dict[str, str]:
        return {kv.k: kv.value for a in o.structured_annotations.map_annotations if a.namespace == namespace for kv in a.value.ms}

    assert notes(ome, NS_NBO) == notes(original, NS_NBO)  # 4DN-BINA-OME fields, set points and specimen included
    assert {k: v for k, v in notes(ome, NS_RUN).items() if k != "MetadataRebuilt"} == notes(original, NS_RUN)
    results = json.loads((folder / "results.json").read_text())
    assert results["results"] and "annotation_error" not in results
    if damage == "offset zeroed":
        info = bioformats_info(stack)
        assert bioformats_value(info, "Image count") == "50"
        assert (bioformats_value(info, "SizeC"), bioformats_value(info, "SizeT")) == ("5", "10")
    assert cli.run(["analyze", str(folder)]) == 0


def test_finished_run_whose_xml_is_lost_is_repaired_by_recover(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_of(finished, tmp_path)
    stack = folder / "flatfield.ome.tif"
    before = pixels(stack)
    sha_acquired = json.loads((folder / "run.json").read_text())["files"]["flatfield.ome.tif"]["sha256_acquired"]
    destroy_xml(stack)
    assert cli.run(["recover", str(folder), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}"]) == 0
    capsys.readouterr()
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "completed" and run["repairs"] and "rebuilt" in " ".join(run["repairs"][0]["actions"])
    entry = run["files"]["flatfield.ome.tif"]
    assert entry["sha256"] == hashlib.sha256(stack.read_bytes()).hexdigest() and entry["sha256_acquired"] == sha_acquired
    # the repair's record, then the finishing's (analysis, results store), the last one "finished"
    assert [r["type"] for r in read_journal(folder / "journal.jsonl")][-4:] == ["repaired", "finishing", "finishing", "finished"]
    valid_ome(stack)
    assert pixels(stack) == before
    assert not json.loads((folder / "results.json").read_text())["files_changed_since_run"]
    assert cli.run(["recover", str(folder), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def killed_with_lost_xml(finished: Path, tmp_path: Path) -> tuple[Path, Path, list[bytes], str]:
    """A copy of a finished run as a kill during its XML rewrite leaves it: owner gone, the stack's
    XML lost. Returns the folder, the stack, its pixels and the stack file's digest as left."""
    folder = copy_of(finished, tmp_path)
    stack = folder / "flatfield.ome.tif"
    before = pixels(stack)
    with_dead_owner(folder)
    destroy_xml(stack)
    return folder, stack, before, hashlib.sha256(stack.read_bytes()).hexdigest()


def test_recover_on_a_full_disk_fails_cleanly_and_succeeds_once_there_is_space(finished: Path, tmp_path: Path) -> None:
    folder, stack, before, digest = killed_with_lost_xml(finished, tmp_path)
    with disk_full_after(folder / "run.json", 200_000):  # recovery's copy of the stack cannot be written
        report = recover_run(folder)
    assert report.outcome == "failed" and "could not write its rebuilt copy" in report.error and "run recover again once there is space" in report.error
    assert json.loads((folder / "run.json").read_text())["status"] == "running"  # nothing half done
    assert hashlib.sha256(stack.read_bytes()).hexdigest() == digest and not (folder / "flatfield.ome.tif.tmp").exists()
    report = recover_run(folder)  # space again: old code failed here for ever (Could not parse XML from '')
    assert report.outcome == "recovered", report.error
    valid_ome(stack)
    assert pixels(stack) == before


def test_kill_in_finalize_after_its_placeholder_pages_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """finalize completes the C x T grid with zero pages (no frame log rows), then rewrites the XML:
    a kill in between leaves the plan's XML and rowless pages, which recovery takes as those placeholders."""
    from harness.records.image_records import FRAME_COLUMNS, ChannelInfo, PlaneInfo
    from harness.records.series_writer import SeriesWriter
    from harness.recovery.recover import recover_stack

    plan = StackPlan("s", ["dark", "488"], {"dark": 4, "488": 4})
    stack = OmeTiffStack(tmp_path / "s.ome.tif", plan, _info(), datetime(2026, 1, 1, tzinfo=timezone.utc))
    log = SeriesWriter(tmp_path / "s_frames.csv", FRAME_COLUMNS)
    rng = np.random.default_rng(3)
    for n, (c, t) in enumerate([(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]):  # the run ended after 2 of 4 lit frames
        plane = PlaneInfo(c, t, -1, 0.1 * n, 0.05, 1.0, 2.0, 3.0)
        stack.write(rng.integers(100, 4000, (40, 56), dtype=np.uint16), plane, ChannelInfo(plan.channels[c], {"488": 20.0} if c else {}))
        log.write({"frame": n, "stack": "s", "channel": plan.channels[c], "c": c, "t": t, "ifd": plane.ifd, "time_s": f"{0.1 * n:.6f}",
                   "exposure_s": 0.05, "x_um": 1.0, "y_um": 2.0, "z_um": 3.0, "context": "{}", "status": "ok", "attempts": 1})
    log.close()

    def killed(fd: int) -> None:
        raise Killed()

    monkeypatch.setattr(tiff_description, "_fsync", killed)
    with pytest.raises(Killed):
        stack.finalize()
    monkeypatch.undo()
    path = stack.path
    before = pixels(path)
    assert len(before) == 8 and "still the plan" in stack_problem(path)

    result = recover_stack(tmp_path, "s", None, FRAME_COLUMNS)
    assert any("2 placeholder page(s)" in d for d in result.details), result.details
    assert not (tmp_path / "s.ome.tif.interrupted").exists()  # not taken for pages it cannot place
    assert result.entry is not None and (result.entry["frames"], result.entry["placeholder_pages"]) == (6, 2)
    ome = valid_ome(path)
    px = ome.images[0].pixels
    assert [(p.the_c, p.the_t) for p in px.planes] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert [bool(p.annotation_refs) for p in px.planes] == [False] * 6 + [True] * 2
    assert pixels(path) == before


def test_kill_during_recovery_of_a_lost_xml_then_recover_again(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, stack, before, digest = killed_with_lost_xml(finished, tmp_path)

    def killed(fd: int) -> None:
        raise Killed()

    monkeypatch.setattr(tiff_description, "_fsync", killed)  # inside the rebuilt copy's XML rewrite
    with pytest.raises(Killed):
        recover_run(folder)
    monkeypatch.undo()
    assert json.loads((folder / "run.json").read_text())["status"] == "running"
    assert hashlib.sha256(stack.read_bytes()).hexdigest() == digest  # the original is untouched until the copy is whole
    report = recover_run(folder)
    assert report.outcome == "recovered", report.error
    assert not (folder / "flatfield.ome.tif.tmp").exists()
    valid_ome(stack)
    assert pixels(stack) == before
