"""The console command as a user runs it: a real process, real exit status, readable output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulators.clock import ScaledClock
from simulators.laser import LaserModel
from simulators.params import LaserParams

from tests.conftest import DEMO, FAST, SIMULATED, station_variant


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
    assert "1920x1080 uint16" in out.stdout and tif.stat().st_size > 1920 * 1080 * 2
    out = qc("move", "--station", station, "1500", "-250", "--z", "20")
    assert out.returncode == 0, out.stderr
    assert "at (1500.000, -250.000) um" in out.stdout and "ZDrive: at 20.000 um" in out.stdout


def test_device_refusal_is_one_message_with_exit_status_3() -> None:
    out = qc("meter", "--line", "488", "--power-mw", "500")
    assert out.returncode == 3
    assert out.stderr.strip().startswith("device error: Laser488: set point 500 mW exceeds the station's safety limit")
    assert "Traceback" not in out.stderr


def test_unknown_line_is_a_user_error() -> None:
    out = qc("meter", "--line", "532")
    assert out.returncode == 2
    assert "no laser line '532'" in out.stderr and "405, 488, 561, 640" in out.stderr


# --- start-up: --help and validate import nothing heavy ------------------------------------------------
HEAVY = ("pymmcore_plus", "matplotlib", "scipy", "sqlalchemy", "numpy", "tifffile", "harness.analysis", "harness.runner", "harness.station")


def _imported_after(argv: list[str]) -> set[str]:
    code = ("import sys, json\nfrom harness.cli import run\n"
            "try:\n    run(json.loads(sys.argv[1]))\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["schedule", "--help"],
    ["validate", "protocols/flat-field.yaml", "protocols/stage-repeatability.yaml", "configs/simulated.yaml", "configs/schedule-simulated.yaml"],
])
def test_help_and_validate_do_not_import_devices_analysis_or_the_results_store(argv: list[str]) -> None:
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
