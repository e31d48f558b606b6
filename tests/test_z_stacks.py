"""Z-stacks: planned from the objective (Nyquist step, extent in axial FWHMs), acquired plane by plane
from below, written as the OME Z dimension (Bio-Formats reads it), recovered after a kill with the
same shape."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile

from harness.common.errors import UserError
from harness.common.optics import Optics, axial_fwhm_um, nyquist_axial_um
from harness.protocol.plan import expand
from harness.protocol.protocol_file import read_protocol_text
from harness.records.journal import read_journal
from harness.records.series_writer import read_series
from harness.run.preflight import preflight
from harness.run.station_facts import file_facts
from tests.conftest import ROOT, SIMULATED, station_variant
from tests.omecheck import bioformats_info, bioformats_value

HEAD = """protocol: ztest
title: z-stacks
requires: [lasers, camera, z_drive]
steps:
"""
STACK = """  - specimen: {sample: bead_field}
  - move: {z: 2000 um}
  - for_each: {line: [488, 561]}
    do:
      - laser: {line: $line, setpoint: 20 %, emission: on}
      - acquire: {stack: psf, exposure: 20 ms, centre_roi: [64, 64], tag: psf, z_stack: ZSTACK}
      - laser: {line: $line, emission: off}
"""


def _plan(z_stack: str, optics: Optics | None, lines: list[str] | None = None, extra: str = "") -> object:
    text = HEAD + STACK.replace("ZSTACK", z_stack) + extra
    protocol, doc = read_protocol_text(text, "z.yaml")
    return expand(protocol, doc, lines or ["405", "488", "561", "640"], optics)


def test_nyquist_step_and_extent_follow_from_the_objective_and_the_lines() -> None:
    optics = Optics(0.75, 1.0)
    plan = _plan("{}", optics)
    step = round(nyquist_axial_um(405, optics) / 2, 3)  # shortest line, oversample 2
    half = round(8 * axial_fwhm_um(640, optics) / 2 / step)  # 8 axial FWHMs at the longest line
    stack = plan.stacks["psf"]  # type: ignore[attr-defined]
    assert (stack.z_planes, stack.z_step_um) == (2 * half + 1, step)
    acquires = [a for a in plan.actions if a.kind == "acquire"]  # type: ignore[attr-defined]
    offsets = acquires[0].z_offsets_um
    assert offsets[0] == pytest.approx(-half * step) and offsets[-1] == pytest.approx(half * step) and offsets[half] == 0
    assert acquires[1].frames[0] == (1, 0) and acquires[1].frames[-1] == (1, 2 * half)
    # the published widefield numbers: 0.75 air at 405 nm: cos(alpha) = 0.6614, step 0.405 / (2 x 0.3386) um
    assert nyquist_axial_um(405, optics) == pytest.approx(0.405 / (2 * (1 - math.sqrt(1 - 0.75**2))), rel=1e-12)
    # oil 1.4: a finer step, fewer um per plane
    oil = _plan("{}", Optics(1.4, 1.518))
    assert oil.stacks["psf"].z_step_um < step  # type: ignore[attr-defined]


def test_explicit_step_and_extent_and_their_mistakes() -> None:
    plan = _plan("{step: 0.25 um, extent: 5 um}", None)
    stack = plan.stacks["psf"]  # type: ignore[attr-defined]
    assert (stack.z_planes, stack.z_step_um) == (21, 0.25)
    with pytest.raises(UserError, match="extent or extent_fwhm, not both"):
        _plan("{extent: 5 um, extent_fwhm: 4}", None)
    with pytest.raises(UserError, match="oversample goes with step: nyquist"):
        _plan("{step: 0.2 um, oversample: 3}", None)
    with pytest.raises(UserError, match=r"z\.yaml:\d+: .*at most 2001"):
        _plan("{step: 0.001 um, extent: 100 um}", None)
    extra = "  - acquire: {stack: psf, exposure: 20 ms, centre_roi: [64, 64], z_stack: {step: 0.5 um, extent: 5 um}}\n"
    with pytest.raises(UserError, match="a stack holds z-stacks of one shape"):
        _plan("{step: 0.25 um, extent: 5 um}", None, extra=extra)
    extra = "  - acquire: {stack: psf, exposure: 20 ms, centre_roi: [64, 64]}\n"
    with pytest.raises(UserError, match="holds z-stacks of 21 planes"):
        _plan("{step: 0.25 um, extent: 5 um}", None, extra=extra)
    with pytest.raises(UserError, match="leave 'frames' out"):
        read_protocol_text(HEAD + "  - acquire: {stack: s, frames: 3, z_stack: {}}\n", "z.yaml")


def test_a_station_without_an_objective_is_told_what_nyquist_needs(tmp_path: Path) -> None:
    station = station_variant(tmp_path, {"instrument": {"objectives": [], "objective_in_use": ""}})
    protocol = tmp_path / "z.yaml"
    protocol.write_text(HEAD + STACK.replace("ZSTACK", "{}"))
    report = preflight(protocol, file_facts(station), None)
    assert any("z_stack: its step and extent follow from the objective" in p for p in report.problems), report.problems
    protocol.write_text(HEAD + STACK.replace("ZSTACK", "{step: 0.3 um, extent: 4 um}"))
    assert not preflight(protocol, file_facts(station), None).problems


def test_a_z_stack_too_short_or_too_coarse_for_any_fit_is_refused_before_the_run(tmp_path: Path) -> None:
    protocol = tmp_path / "z.yaml"
    protocol.write_text(HEAD + STACK.replace("ZSTACK", "{step: 20 um, extent: 10 um}"))
    problems = preflight(protocol, file_facts(SIMULATED), None).problems
    assert any("z.yaml:10: protocol: acquire: z_stack: 3 planes 20 um apart; a focus or bead fit needs at least 5" in p for p in problems), problems
    protocol.write_text(HEAD + STACK.replace("ZSTACK", "{step: 0.2 um, extent: 2 um}"))
    problems = preflight(protocol, file_facts(SIMULATED), None).problems
    assert any("spans 2 um, less than 2 theoretical axial FWHMs (3.33 um at 640 nm, NA 0.75)" in p for p in problems), problems
    text = HEAD + STACK.replace("ZSTACK", "{}").replace("sample: bead_field}", "sample: bead_slide, emission: {647: 670 nm}}")
    protocol.write_text(text)
    problems = preflight(protocol, file_facts(SIMULATED), None).problems
    assert any("specimen: emission for the 647 nm line, which the station lacks; its 640 nm line has no emission given "
               "(it would be 670 nm): did you mean 640?" in p for p in problems), problems
    protocol.write_text(text.replace("{647: 670 nm}", "{405: 430 nm, 488: 515 nm, 532: 550 nm}"))  # a line other stations have: fine
    assert not preflight(protocol, file_facts(SIMULATED), None).problems
    with pytest.raises(UserError, match="more than 300 nm longer than its excitation"):
        read_protocol_text(HEAD + "  - specimen: {sample: bead_slide, emission: {488: 515 um}}\n", "z.yaml")
    with pytest.raises(UserError, match="bead_diameter 100 um: a bead slide's beads are at most 10 um"):
        read_protocol_text(HEAD + "  - specimen: {sample: bead_slide, bead_diameter: 100 um}\n", "z.yaml")


def _run(tmp_path: Path, protocol: Path, station: Path, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    if kill_at:
        env["MICROSCOPE_QC_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "harness", "run", str(protocol), "--station", str(station), "--runs-dir", str(tmp_path / "runs"),
                           "--quiet", "--yes", "--no-store"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def z_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("zrun")
    protocol = tmp / "z.yaml"
    protocol.write_text(HEAD + STACK.replace("ZSTACK", "{step: 0.4 um, extent: 4 um}"))
    out = _run(tmp, protocol, station_variant(tmp, {}))
    assert out.returncode == 0, out.stdout + out.stderr
    (folder,) = list((tmp / "runs").iterdir())
    return folder


def test_a_z_stack_is_acquired_from_below_and_written_as_the_z_dimension(z_run: Path) -> None:
    rows = list(read_series(z_run / "psf_frames.csv"))
    assert len(rows) == 22 and [int(r["t"]) for r in rows[:11]] == list(range(11))
    z = [float(r["z_um"]) for r in rows[:11]]
    assert z == pytest.approx([2000 + 0.4 * (k - 5) for k in range(11)], abs=1e-6)
    moves = [r for r in read_journal(z_run / "journal.jsonl") if r.get("type") == "move"]
    assert moves[-1]["target_um"]["z"] == pytest.approx(2000)  # back at the centre after the last z-stack
    with tifffile.TiffFile(z_run / "psf.ome.tif") as tif:
        xml = tif.ome_metadata
        assert tif.series[0].shape == (2, 11, 64, 64)
    pixels = re.search(r"<Pixels [^>]*>", xml).group(0)  # type: ignore[union-attr]
    assert 'SizeZ="11"' in pixels and 'SizeT="1"' in pixels and 'SizeC="2"' in pixels and 'PhysicalSizeZ="0.4"' in pixels
    assert re.search(r'<Plane TheZ="10" TheT="0" TheC="1"[^>]*PositionZ="2002.0"', xml)
    run = json.loads((z_run / "run.json").read_text())
    assert run["protocol"]["plan"]["stacks"]["psf"]["z_planes"] == 11
    assert run["protocol"]["plan"]["optics"] == {"na": 0.75, "immersion_index": 1.0}
    info = bioformats_info(z_run / "psf.ome.tif")
    assert bioformats_value(info, "SizeZ") == "11" and bioformats_value(info, "SizeC") == "2"


def test_a_killed_z_stack_run_is_recovered_with_the_same_shape(tmp_path: Path) -> None:
    protocol = tmp_path / "z.yaml"
    protocol.write_text(HEAD + STACK.replace("ZSTACK", "{step: 0.4 um, extent: 4 um}"))
    out = _run(tmp_path, protocol, station_variant(tmp_path, {}), kill_at="acquisition:frame@15")
    assert out.returncode != 0
    (folder,) = list((tmp_path / "runs").iterdir())
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "MICROSCOPE_QC_DB": f"sqlite:///{(tmp_path / 'db.sqlite').as_posix()}"}
    rec = subprocess.run([sys.executable, "-m", "harness", "recover", str(folder)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rec.returncode in (0, 1), rec.stdout + rec.stderr
    with tifffile.TiffFile(folder / "psf.ome.tif") as tif:
        xml = tif.ome_metadata
    pixels = re.search(r"<Pixels [^>]*>", xml).group(0)  # type: ignore[union-attr]
    # 15 frames: one complete z-stack of 488 and 4 planes of 561; the rest of 561's z-stack is "not acquired"
    assert 'SizeZ="11"' in pixels and 'SizeC="2"' in pixels and 'SizeT="1"' in pixels, pixels
    assert len(re.findall(r"<Plane ", xml)) == 22
    assert bioformats_value(bioformats_info(folder / "psf.ome.tif"), "SizeZ") == "11"


def test_mistakes_in_beads_and_z_stacks_name_file_line_and_field() -> None:
    text = HEAD + "  - specimen: {sample: bead_slide, bead_diameter: 100 nm, emission: {488: 515}}\n  - acquire: {stack: s, z_stack: {step: fast}}\n"
    with pytest.raises(UserError) as err:
        read_protocol_text(text, "z.yaml")
    message = str(err.value)
    assert "z.yaml:5: protocol: steps[0].specimen.emission[488]: wavelength needs a unit" in message
    assert "z.yaml:6: protocol: steps[1].acquire.z_stack.step: 'nyquist' or a distance between planes such as '0.2 um' (got 'fast')" in message
    with pytest.raises(UserError, match="bead_diameter and emission describe a bead_slide"):
        read_protocol_text(HEAD + "  - specimen: {sample: uniform_slide, bead_diameter: 100 nm}\n", "z.yaml")


def test_a_simulated_objective_whose_na_is_not_below_its_immersion_index_is_refused_in_one_line(tmp_path: Path) -> None:
    from harness.run.station_facts import read_station_file

    station = station_variant(tmp_path, {"instrument": {"objectives": [{"id": "o", "nominal_magnification": 60, "lens_na": 1.4, "immersion": "Oil"}],
                                                        "objective_in_use": "o"},
                                         "simulation": {"optics": {"immersion_index": 1.33}}})
    with pytest.raises(UserError, match=r"station\.yaml:\d+: station: simulation\.optics\.immersion_index: the simulated objective's NA 1\.4 "
                                         r"must be below its immersion index 1\.33"):
        read_station_file(station)


def test_z_stack_distances_are_bounded_like_moves() -> None:
    with pytest.raises(UserError, match=r"acquire\.z_stack: 1500 mm is over the 1000 mm limit"):
        _plan("{step: 1 um, extent: 1500 mm}", None)
    with pytest.raises(UserError, match="at least 1 nm"):
        _plan("{step: 0.0004 um, extent: 1 um}", None)


def test_a_z_stack_outside_the_drive_travel_is_refused_before_it_moves_and_the_lasers_go_off(tmp_path: Path) -> None:
    protocol = tmp_path / "z.yaml"
    protocol.write_text(HEAD + STACK.replace("ZSTACK", "{step: 0.5 um, extent: 10 um}").replace("move: {z: 2000 um}", "move: {z: 9998 um}"))
    out = _run(tmp_path, protocol, station_variant(tmp_path, {}))
    assert out.returncode != 0
    (folder,) = list((tmp_path / "runs").iterdir())
    run = json.loads((folder / "run.json").read_text())
    assert "z.yaml:10: protocol: acquire.z_stack: the z-stack around 9998 um reaches 9988 .. 10003 um" in run["reason"], run["reason"]
    assert "outside the Z drive ZDrive's travel 0 .. 10000 um" in run["reason"]
    ends = [r for r in read_journal(folder / "journal.jsonl") if r.get("type") == "safe_state"]
    assert ends and ends[-1]["confirmed"]


def test_the_xml_of_a_killed_file_maps_alternating_channels_to_their_pages(tmp_path: Path) -> None:
    """Before finalize (a kill), the file's XML is the plan's: one TiffData per run of one channel's
    consecutive frames, in acquisition order; here 488 and 561 z-stacks alternate."""
    text = HEAD + """  - specimen: {sample: bead_field}
  - move: {z: 2000 um}
  - repeat: 2
    do:
      - for_each: {line: [488, 561]}
        do:
          - laser: {line: $line, setpoint: 20 %, emission: on}
          - acquire: {stack: psf, exposure: 20 ms, centre_roi: [64, 64], z_stack: {step: 0.5 um, extent: 4 um}}
          - laser: {line: $line, emission: off}
"""
    protocol = tmp_path / "z.yaml"
    protocol.write_text(text)
    out = _run(tmp_path, protocol, station_variant(tmp_path, {}), kill_at="acquisition:frame@12")
    assert out.returncode != 0
    (folder,) = list((tmp_path / "runs").iterdir())
    with tifffile.TiffFile(folder / "psf.ome.tif") as tif:
        xml = tif.pages[0].description
    tags = re.findall(r"<TiffData [^>]*>", xml)
    blocks = [tuple(int(re.search(f'{k}="(\\d+)"', tag).group(1)) for k in ("IFD", "FirstC", "FirstT", "FirstZ", "PlaneCount"))  # type: ignore[union-attr]
              for tag in tags]
    assert blocks == [(0, 0, 0, 0, 9), (9, 1, 0, 0, 9), (18, 0, 1, 0, 9), (27, 1, 1, 0, 9)], tags
    assert 'DimensionOrder="XYZTC"' in xml


def test_a_stack_of_z_stacks_is_not_taken_for_a_flat_field() -> None:
    from harness.analyses.flat_field.analysis import ANALYSIS

    run = {"protocol": {"plan": {"stacks": {"s": {"channels": ["dark", "488"], "frames": {"dark": 11, "488": 11}, "z_planes": 11}}}}}
    assert not ANALYSIS.applies(Path("."), run, "s.ome.tif", {"kind": "ome_tiff", "stack": "s"})
    run["protocol"]["plan"]["stacks"]["s"].pop("z_planes")
    assert ANALYSIS.applies(Path("."), run, "s.ome.tif", {"kind": "ome_tiff", "stack": "s"})
