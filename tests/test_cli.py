"""The console command as a user runs it: a real process, real exit status, readable output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from ome_types import from_xml

from simulators.clock import ScaledClock
from simulators.laser import LaserModel
from simulators.params import LaserParams
from tests.conftest import DEMO, FAST, ROOT, SIMULATED, station_variant
from tests.omecheck import bioformats_info, bioformats_value


def qc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120)


def test_devices_on_the_simulated_station_shows_identities_read_from_devices() -> None:
    out = qc("devices")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in ("power meter", "Meter", "PM100D", "P0012345", "laser 488 nm", "OBIS 488nm 150mW LX", "488-1002",
                     "camera", "CS2100M-USB", "SIM21001", "XY stage", "Z drive", "emission off"):
        assert expected in text
    assert out.stderr == ""


def test_devices_on_the_demo_station_with_cpp_adapters_exits_cleanly() -> None:
    out = qc("devices", "--station", str(DEMO), "--json")
    assert out.returncode == 0, out.stderr  # not 134: every adapter is unloaded before exit
    devices = {d["label"]: d for d in json.loads(out.stdout)}
    assert devices["DCam"]["role"] == "camera" and devices["DCam"]["driver"] == "Micro-Manager adapter DemoCamera"
    assert devices["DXYStage"]["role"] == "XY stage"
    assert devices["Laser561"]["serial"] == "561-2002"


def test_meter_snap_and_move_commands(tmp_path: Path) -> None:
    station = str(station_variant(tmp_path, FAST))
    out = qc("meter", "--station", station, "--line", "488", "--power-mw", "20", "--averaging", "100", "--settle-s", "3000")
    assert out.returncode == 0, out.stderr
    mw = float(out.stdout.split("Meter:")[1].split("mW")[0])
    truth = yaml.safe_load(SIMULATED.read_text())
    laser = LaserParams(**truth["devices"]["Laser488"]["simulation"])
    steady = LaserModel("L", laser, ScaledClock(), np.random.default_rng()).steady_power_mw(20)
    transmission = truth["simulation"]["optics"]["transmission_to_meter"]["Laser488"]
    assert mw == pytest.approx(steady * transmission, rel=0.01)  # warmed up; drift < 0.3 %
    tif = tmp_path / "frame.tif"
    out = qc("snap", "--station", station, "--sample", "uniform_slide", "--line", "561", "--power-mw", "30", "--out", str(tif))
    assert out.returncode == 0, out.stderr
    tif = tmp_path / "frame.ome.tif"  # an OME-TIFF is named so
    assert "1920x1080 uint16" in out.stdout and f"saved {tif}" in out.stdout and tif.stat().st_size > 1920 * 1080 * 2
    out = qc("move", "--station", station, "1500", "-250", "--z", "20")
    assert out.returncode == 0, out.stderr
    assert "at (1500.000, -250.000) um" in out.stdout and "ZDrive: at 20.000 um" in out.stdout


def test_value_over_a_safety_limit_is_the_users_mistake_exit_status_2() -> None:
    """Refused before anything is sent, from the station's own limits: not a device failure (exit 3
    would be retried by a scheduler)."""
    out = qc("meter", "--line", "488", "--power-mw", "500")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: Laser488: set point 500 mW exceeds the station's safety limit")
    assert "Traceback" not in out.stderr


def test_a_reader_that_goes_away_is_no_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "validate", "protocols/flat-field.yaml", "configs/simulated.yaml"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1])
    proc.stdout.close()  # like `| head -c 0`: the first write finds no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_unknown_line_is_a_user_error() -> None:
    out = qc("meter", "--line", "532")
    assert out.returncode == 2
    assert "no laser line '532'" in out.stderr and "405, 488, 561, 640" in out.stderr


# --- start-up: --help and validate import nothing heavy ------------------------------------------------
HEAVY = ("pymmcore_plus", "matplotlib", "scipy", "sqlalchemy", "numpy", "tifffile",
         "harness.finishing.results", "harness.run.runner", "harness.station.station")


def _imported_after(argv: list[str]) -> set[str]:
    code = ("import sys, json\nfrom harness.cli.commands import run\n"
            "try:\n    run(json.loads(sys.argv[1]))\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["schedule", "--help"],
    ["validate", "protocols/flat-field.yaml", "protocols/stage-repeatability.yaml", "configs/simulated.yaml"],
])
def test_help_and_validate_do_not_import_devices_analysis_or_the_results_store(argv: list[str]) -> None:
    # (a schedule file is validated by preflighting each job on its loaded station: that is work, not start-up)
    assert _imported_after(argv) == set()


def test_verbose_logs_what_the_devices_do_and_only_then(tmp_path: Path) -> None:
    station = str(station_variant(tmp_path, FAST))
    quiet = qc("meter", "--station", station)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # not even pymmcore-plus' or pyvisa's debug chatter (pymmcore-plus sets the root logger to DEBUG)
    loud = qc("-v", "meter", "--station", station)
    assert loud.returncode == 0, loud.stderr
    assert "Meter <- *IDN?" in loud.stderr and "Meter -> Thorlabs,PM100D,P0012345" in loud.stderr  # every SCPI exchange
    assert "Laser488 (laser 488 nm): laser" in loud.stderr  # every device loaded, with its identity
    assert "DEBUG pyvisa" not in loud.stderr and "pymmcore-plus" not in loud.stderr



# --- no silently ignored option ------------------------------------------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["snap", "--exposure-ms", "0"], "argument --exposure-ms: must be > 0, got 0"),  # was: 50 ms used
    (["snap", "--exposure-ms", "nan"], "argument --exposure-ms: 'nan': a finite number is needed"),
    (["snap", "--power-mw", "5"], "--power-mw only applies together with --line"),  # was: ignored
    (["meter", "--averaging", "0"], "argument --averaging: must be at least 1, got 0"),  # was: ignored
    (["meter", "--power-mw", "5"], "--power-mw only applies together with --line"),  # was: ignored
    (["meter", "--settle-s", "5"], "--settle-s only applies together with --line"),  # was: ignored
    (["meter", "--line", "488", "--settle-s", "-1"], "argument --settle-s: must be >= 0, got -1"),
    (["meter", "--wavelength-nm", "-5"], "argument --wavelength-nm: must be > 0, got -5"),  # was: a device error, exit 3
    (["move", "nan", "0"], "argument x: 'nan': a finite number is needed"),  # was: a device error, exit 3
    # was: run failed, exit 4
    (["run", "power-stability-short", "--time-scale", "inf"], "argument --time-scale: 'inf': a finite number is needed"),
    (["run", "power-stability-short", "--wait-for-station", "-1"], "argument --wait-for-station: must be >= 0, got -1"),
    # was: OverflowError traceback
    (["run", "stage-iso230", "--clock-start", "9999-12-31T23:59:30Z"], "a date-time between 2000-01-01 and 2200-01-01 is needed"),
    # was: folder '10101T000000Z_...'
    (["run", "stage-iso230", "--clock-start", "0001-01-01T00:00Z"], "a date-time between 2000-01-01 and 2200-01-01 is needed"),
    (["run", "stage-iso230", "--clock-start", "2026-12-05"], "give a time of day and its offset from UTC"),
    # was: a run with every sample late, judged FAIL
    (["run", "power-stability-short", "--time-scale", "100000"], "--time-scale must be > 0 and at most 10000"),
    (["snap", "--out", "."], "argument --out: . is a folder; give a file name"),  # was: IsADirectoryError traceback
    (["trend", "x", "--out", "."], "argument --out: . is a folder; give a file name"),
    (["schema", "--out", "README.md"], "argument --out: README.md is a file; give a folder"),  # was: FileExistsError traceback
    (["recover", "/nonexistent"], "not a folder: /nonexistent"),  # was: exit 4, "recovery FAILED"
    (["recover", "--force"], "--force only applies to named FOLDERs"),  # was: ignored
    (["recover", "--runs-dir", "/nonexistent"], "--runs-dir /nonexistent: no such folder"),  # was: "no interrupted runs"
    (["history", "--since", "2026-12-02", "--until", "2026-12-01"], "--since 2026-12-02 is after --until 2026-12-01"),  # was: nothing matches
    (["history", "--station", "Microscope 9"], "no station 'Microscope 9' in the results database (stations: "),  # was: nothing matches
    (["history", "--protocol", "flat-feld"], "no protocol 'flat-feld' in the results database (protocols: "),  # was: nothing matches
    (["run", "power-stability-short", "--operator", " "], "argument --operator: must not be empty"),
    (["run", "power-stability-short", "--no-store", "--db", "sqlite:///x.sqlite"], "--db has no effect with --no-store"),  # was: ignored
    (["schedule", "list", "configs/schedule-simulated.yaml", "-n", "0"], "argument --count/-n: must be at least 1, got 0"),  # was: "disabled"
    (["schedule", "last", "configs/schedule-simulated.yaml", "-n", "-1"], "argument --count/-n: must be at least 1, got -1"),
    (["schedule", "last", "configs/schedule-simulated.yaml", "--job", "nightly-powr"], "no job 'nightly-powr' (jobs: nightly-power, weekly-stage)"),
])
def test_an_option_out_of_range_or_without_effect_is_refused_with_one_message(argv: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_snap_out_writes_a_valid_ome_tiff_with_pixel_size_exposure_and_instrument(tmp_path: Path) -> None:
    station = str(station_variant(tmp_path, FAST))
    out = qc("snap", "--station", station, "--exposure-ms", "20", "--line", "488", "--power-mw", "3", "--out", str(tmp_path / "snap"))
    assert out.returncode == 0, out.stderr
    path = tmp_path / "snap.ome.tif"
    assert f"saved {path}" in out.stdout
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and len(tif.pages) == 1 and tif.pages[0].shape == (1080, 1920)
        ome = from_xml(tif.pages[0].description, validate=True)  # schema-valid OME-XML
    px = ome.images[0].pixels
    assert px.physical_size_x == pytest.approx(0.252) and px.physical_size_x_unit.value == "µm"
    assert px.planes[0].exposure_time == pytest.approx(0.020) and px.planes[0].exposure_time_unit.value == "s"
    assert px.channels[0].name == "488" and px.channels[0].excitation_wavelength == 488
    inst = ome.instruments[0]
    assert inst.detectors[0].serial_number == "SIM21001" and [laser.wavelength for laser in inst.lasers] == [405, 488, 561, 640]
    keys = {m.k: m.value for a in ome.structured_annotations.map_annotations for m in a.value.ms}
    assert keys["Command"] == "microscope-qc snap" and keys["Station"] == "Simulated widefield"
    assert keys["Channel:0:0.PowerSetpoint_mW[488nm]"] == "3"
    info = bioformats_info(path)  # the reference reader agrees
    assert bioformats_value(info, "Width") == "1920" and bioformats_value(info, "Height") == "1080"


def test_snap_out_into_a_missing_folder_is_refused_before_anything_is_snapped(tmp_path: Path) -> None:
    out = qc("snap", "--out", str(tmp_path / "no" / "frame.ome.tiff"))
    assert out.returncode == 2 and f"the folder {tmp_path / 'no'} does not exist" in out.stderr
    assert "Camera:" not in out.stdout


# --- names -----------------------------------------------------------------------------------------------
def test_shipped_protocols_and_stations_can_be_named(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "validate", "power-stability-short", "flat-field.yaml", "simulated", "schedule-simulated"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)  # no such files here: the shipped ones
    assert out.returncode == 0, out.stderr
    assert "power-stability-short.yaml: valid protocol" in out.stdout and "simulated.yaml: valid station file" in out.stdout
    assert "schedule-simulated.yaml: valid schedule file" in out.stdout
    out = subprocess.run([sys.executable, "-m", "harness", "devices", "--station", "demo-micromanager", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "DCam" in {d["label"] for d in json.loads(out.stdout)}


def test_run_a_shipped_protocol_by_name(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "run", "flat-field", "--station", str(station_variant(tmp_path, FAST)),
                          "--runs-dir", str(tmp_path / "runs"), "--quiet", "--no-store"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("completed: ") and "_flat-field_" in out.stdout


def test_an_unknown_protocol_name_lists_the_shipped_ones_with_a_did_you_mean() -> None:
    out = qc("run", "power-stabilty-short")
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert "power-stabilty-short: no such file, nor a shipped protocol of that name" in last
    assert ", ".join(sorted(p.stem for p in (ROOT / "protocols").glob("*.yaml"))) in last  # every shipped protocol
    assert last.endswith("did you mean 'power-stability-short'?")
    out = qc("devices", "--station", "schedule-simulated")  # a shipped schedule is not a station file
    assert out.returncode == 2 and "(shipped: demo-micromanager, example-station, simulated); did you mean 'simulated'?" in out.stderr


def test_history_and_trend_take_a_station_file_for_the_station_it_names_and_a_protocol_file_for_its_id(tmp_path: Path) -> None:
    station = station_variant(tmp_path, FAST)
    db = f"sqlite:///{(tmp_path / 'results.sqlite').as_posix()}"
    out = qc("run", str(ROOT / "protocols" / "stage-iso230.yaml"), "--station", str(station), "--runs-dir", str(tmp_path / "runs"), "--quiet", "--db", db)
    assert out.returncode == 0, out.stderr
    for station_arg in (str(station), "Simulated widefield", "simulated"):  # the file, the name, the shipped file by name
        out = qc("history", "--station", station_arg, "--db", db)
        assert out.returncode == 0, out.stderr
        assert "1 run (database" in out.stdout and "Simulated widefield" in out.stdout, station_arg
    out = qc("history", "--protocol", str(ROOT / "protocols" / "stage-iso230.yaml"), "--db", db)
    assert out.returncode == 0 and "1 run (database" in out.stdout, out.stderr
    out = qc("trend", "bidirectional_repeatability_R_um", "--station", str(station), "--protocol", str(ROOT / "protocols" / "stage-iso230.yaml"),
             "--db", db, "--out", str(tmp_path / "trend.html"))
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout


def test_move_with_z_on_a_station_without_z_drive_is_refused_before_the_stage_moves(tmp_path: Path) -> None:
    station = str(station_variant(tmp_path, {**FAST, "roles": {"z_drive": None}}))
    out = qc("move", "--station", station, "100", "0", "--z", "5")
    assert out.returncode == 2 and "the station has no Z drive role (--z)" in out.stderr
    assert "XYStage: at" not in out.stdout  # was: the XY stage moved, then the error
