"""Station files: every mistake is one message naming file, line and field; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.commands import run
from harness.common.errors import UserError
from harness.station.station import Station
from tests.conftest import DEMO, SIMULATED

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

BROKEN = """\
name: Broken station
devices:
  Meter:
    driver: thorlabs_pm100
    resource: simulated
    timout_ms: 100
  Laser488:
    driver: coherent_obis
    resource: simulated
    simulation:
      wavelength_nm: 488
      nominal_power_mw: lots
roles:
  power_meter: {device: Meter}
simulation: {seed: 1}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    return path


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, BROKEN)
    with pytest.raises(UserError) as info:
        Station.load(path)
    lines = str(info.value).splitlines()
    assert f"{path}:6: station: devices.Meter.timout_ms: unknown key (did you mean 'timeout_ms'?)" in lines
    assert any(line.startswith(f"{path}:12: station: devices.Laser488.simulation.nominal_power_mw: ") and "'lots'" in line for line in lines)
    assert len(lines) == 2


def test_missing_field_and_unknown_driver(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ndevices:\n  L:\n    driver: coherent_obis\n  C:\n    driver: acme_laser\n")
    with pytest.raises(UserError) as info:
        Station.load(path)
    text = str(info.value)
    assert f"{path}:3: station: devices.L.resource: missing (required)" in text
    assert f"{path}:6: station: devices.C" in text and "acme_laser" in text


def test_simulated_laser_needs_ground_truth(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ndevices:\n  L:\n    driver: coherent_obis\n    resource: simulated\nsimulation: {}\n")
    with pytest.raises(UserError, match=r":3: station: devices.L: .*simulation"):
        Station.load(path)


def test_yaml_syntax_error_and_duplicate_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ndevices:\n  L: [unclosed\n")
    with pytest.raises(UserError, match=rf"{path}:\d+: YAML error"):
        Station.load(path)
    path = _write(tmp_path, "name: x\nname: y\n")
    with pytest.raises(UserError, match=rf"{path}:2: YAML error: duplicate key 'name' \(first on line 1\)"):
        Station.load(path)


def test_role_naming_a_device_that_does_not_exist(tmp_path: Path) -> None:
    text = SIMULATED.read_text().replace("  camera: Camera\n", "  camera: Kamera\n")
    path = _write(tmp_path, text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "camera: Kamera" in row)
    with pytest.raises(UserError, match=rf"{path}:{line}: station: roles.camera: no device 'Kamera'"):  # found in the file, before anything loads
        Station.load(path)


def test_unreachable_instrument_names_the_device(tmp_path: Path) -> None:
    text = "name: x\ndevices:\n  Meter:\n    driver: thorlabs_pm100\n    resource: TCPIP::127.0.0.1::1::SOCKET\n    timeout_ms: 200\n"
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=rf"{path}:3: device Meter \(thorlabs_pm100\): cannot open"):
        Station.load(path)


def test_missing_vendor_sdk_says_how_to_install_it(tmp_path: Path) -> None:
    text = "name: x\ndevices:\n  Cam:\n    driver: thorlabs_tsi\n    sdk: thorlabs_tsi_sdk\n"
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=r"Cam \(thorlabs_tsi\): the Thorlabs camera SDK .* is not installed. Install ThorCam"):
        Station.load(path)


def test_cli_reports_one_message_and_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, BROKEN)
    assert run(["devices", "--station", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:6:") and "Traceback" not in err
    assert run(["validate", str(path)]) == 2


def test_shipped_stations_validate(capsys: pytest.CaptureFixture[str]) -> None:
    example = SIMULATED.parent / "example-station.yaml"
    assert run(["validate", str(SIMULATED), str(DEMO), str(example)]) == 0
    assert capsys.readouterr().out.count("valid station file") == 3
