"""Preflight: a protocol is checked against its station before anything moves (issue 9, section 3).

Each case was a run-time failure (exit 4, recorded as a QC failure) or passed ``validate`` before:
here each is refused by ``validate --station``, by ``run`` (exit 2, no run folder, no device
command) and by the scheduler, with every problem at once and the protocol's file:line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.finishing.runner import FinishingRunner as Runner
from harness.run.preflight import PreflightFailed
from harness.station.run_guard import PreconditionFailed
from tests.conftest import DEMO, FAST, ROOT, merge, station_variant

LINEARITY = ROOT / "protocols" / "power-linearity.yaml"


def qc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def protocol(tmp_path: Path, name: str, steps: str, requires: str = "[]") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"protocol: {name}\ntitle: {name}\nrequires: {requires}\nsteps:\n{steps}", encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


SAFE_50 = {"safety": {"max_laser_power_mw": 50}}


# --- set points against the station's limits -------------------------------------------------------
def test_linearity_above_the_safety_limit_is_refused_before_anything_moves(tmp_path: Path, make_station: Any) -> None:
    """Old: the run failed after 80 readings at the 60 % step (exit 4, a run folder, a 'failed' run)."""
    station = make_station(SAFE_50)
    world = station.sim.world
    commands: list[tuple[str, Any]] = []
    for name, laser in world.lasers.items():
        laser.set_setpoint_mw = lambda v, n=name: commands.append((n, v))  # type: ignore[method-assign]
        laser.set_emission = lambda on, n=name: commands.append((n, on))  # type: ignore[method-assign]
    before = {n: (laser.setpoint_mw, laser.emission) for n, laser in world.lasers.items()}
    runs = tmp_path / "runs"
    with pytest.raises(PreflightFailed) as info:
        Runner(station, LINEARITY, runs_dir=runs, quiet=True)
    text = str(info.value)
    step = line_of(LINEARITY, "laser: {line: $line, setpoint: $setpoint}")
    # every line, at once, at the step inside the loop, with the values of the loop variables
    for key, first in (("405", "60 %"), ("488", "40 %"), ("561", "60 %"), ("640", "60 %")):
        assert f"{LINEARITY}:{step}: protocol: laser: set point {first} = 60 mW on the {key} nm line exceeds the station's safety limit of 50 mW" in text, text
    assert "(with line=405, setpoint=60 %); 4 more set points of this step exceed it too, up to 100 mW" in text
    warm_up = line_of(LINEARITY, "setpoint: 50 %, emission: on")
    assert f"{LINEARITY}:{warm_up}: protocol: laser: set point 50 % = 75 mW on the 488 nm line" in text  # the 488 warm-up too
    assert "safety.max_laser_power_mw" in text
    # nothing moved: no command reached a laser, no run folder
    assert commands == [] and {n: (laser.setpoint_mw, laser.emission) for n, laser in world.lasers.items()} == before
    assert not runs.exists()


def test_run_refuses_with_exit_2_no_folder_and_a_not_started_outcome(tmp_path: Path) -> None:
    station = station_variant(tmp_path, merge(FAST, SAFE_50))
    runs, outcome = tmp_path / "runs", tmp_path / "outcome.json"
    out = qc("run", str(LINEARITY), "--station", str(station), "--runs-dir", str(runs), "--no-store", "-q", "--outcome", str(outcome))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: {LINEARITY}:") and "Traceback" not in out.stderr
    assert out.stderr.count("exceeds the station's safety limit of 50 mW") == 5
    assert not runs.exists()  # refused before the runs folder was touched
    result = json.loads(outcome.read_text())
    assert result["status"] == "not started" and result["user_error"] is True and "preflight" in result["reason"]


def test_a_lines_own_limit_and_the_lasers_maximum_are_checked(tmp_path: Path) -> None:
    station = station_variant(tmp_path, merge(FAST, {"roles": {"lasers": [
        {"device": "Laser405", "max_power_mw": 20}, {"device": "Laser488"}, {"device": "Laser561"}, {"device": "Laser640"}]}}))
    p = protocol(tmp_path, "limits", "  - laser: {line: 405, setpoint: 25 mW}\n  - laser: {line: 561, setpoint: 120 mW}\n", "[lasers]")
    out = qc("validate", str(p), "--station", str(station), "--runs-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"{p}:5: protocol: laser: set point 25 mW = 25 mW on the 405 nm line exceeds the line's limit of 20 mW (roles.lasers[0].max_power_mw" in out.stderr
    assert f"{p}:6: protocol: laser: set point 120 mW = 120 mW on the 561 nm line exceeds the laser's maximum of 100 mW" in out.stderr


# --- marks, camera, roles --------------------------------------------------------------------------
def test_every_problem_of_every_protocol_is_listed_at_once(tmp_path: Path) -> None:
    station = station_variant(tmp_path, FAST)
    nowhere = protocol(tmp_path, "nowhere", "  - move: {x: 10 um, y: 10 um}\n  - mark: home\n  - move: {to: nowhere}\n  - move: {to: home}\n", "[xy_stage]")
    big = protocol(tmp_path, "big-roi", "  - acquire: {stack: a, exposure: 10 ms, centre_roi: [4000, 512]}\n"
                   "  - acquire: {stack: a, exposure: 10 ms, roi: [1800, 0, 200, 100]}\n"
                   "  - acquire: {stack: b, exposure: 10 ms, binning: 2, centre_roi: [1000, 500]}\n"
                   "  - acquire: {stack: c, exposure: 10 ms, centre_roi: [900, 500]}\n", "[camera]")
    out = qc("validate", str(nowhere), str(big), "--station", str(station), "--runs-dir", str(tmp_path))
    assert out.returncode == 2
    err = out.stderr
    assert f"{nowhere}:7: protocol: move: to: no position marked 'nowhere' before this step (marked so far: home)" in err
    assert f"{nowhere}:8" not in err  # home was marked before
    assert f"{big}:5: protocol: acquire: centre_roi 4000x512 is larger than the camera's 1920x1080 pixels" in err
    assert f"{big}:6: protocol: acquire: roi [1800, 0, 200, 100] (x, y, width, height) reaches 2000x100, outside the camera's 1920x1080 pixels" in err
    assert f"{big}:7: protocol: acquire: centre_roi 1000x500 is larger than the camera's 960x540 at binning 2 pixels" in err
    assert f"{big}:8: protocol: acquire: centre_roi 900x500" not in err  # binning 2 is still set: 900 x 500 fits 960 x 540


def test_binning_the_camera_does_not_allow_is_refused(tmp_path: Path) -> None:
    p = protocol(tmp_path, "binning", "  - acquire: {stack: a, exposure: 10 ms, binning: 3}\n", "[camera]")
    out = qc("validate", str(p), "--station", str(DEMO), "--runs-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"{p}:5: protocol: acquire: binning 3: the camera DCam allows 1, 2, 4, 8" in out.stderr


def test_a_role_the_station_lacks_fails_validate(tmp_path: Path) -> None:
    station = station_variant(tmp_path, merge(FAST, {"roles": {"camera": None}}))
    flat = ROOT / "protocols" / "flat-field.yaml"
    out = qc("validate", str(flat), "--station", str(station), "--runs-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"{flat}:{line_of(flat, 'requires:')}: protocol: needs the role 'camera', which station {station} does not fill" in out.stderr


# --- properties: from the loaded devices, or skipped when they cannot be reached ------------------
PROPERTIES = """\
  - set_property: {device: camera, property: Gian, value: 3}
  - set_property: {device: Meter, property: AutoRange, value: Maybe}
  - set_property: {device: camera, property: SensorWidth, value: 100}
  - set_property: {device: camera, property: Binning, value: fast}
  - set_property: {device: turret, property: State, value: 1}
  - set_property: {device: Meter, property: AutoRange, value: "Off"}
  - set_property: {device: camera, property: Gain, value: 1000000}
  - set_property: {device: camera, property: Gain, value: 12}
"""


def test_properties_are_checked_on_the_loaded_devices(tmp_path: Path) -> None:
    station = station_variant(tmp_path, FAST)
    p = protocol(tmp_path, "props", PROPERTIES)
    out = qc("validate", str(p), "--station", str(station), "--runs-dir", str(tmp_path))
    assert out.returncode == 2
    err = out.stderr
    assert f"{p}:5: protocol: set_property: device Camera has no property 'Gian' (did you mean 'Gain'?)" in err
    assert f"{p}:6: protocol: set_property: Meter.AutoRange = 'Maybe' is not allowed; allowed: On, Off" in err
    assert f"{p}:7: protocol: set_property: Camera.SensorWidth is read-only" in err
    assert f"{p}:8: protocol: set_property: Camera.Binning takes a number, not 'fast'" in err
    assert f"{p}:9: protocol: set_property: no device or role 'turret' on station" in err
    assert f"{p}:10:" not in err
    # the TSI camera's gain range, from the camera (the simulated one: 0..48 dB)
    assert f"{p}:11: protocol: set_property: Camera.Gain = 1000000 is outside its limits 0 .. 48" in err and f"{p}:12:" not in err


def test_property_limits_of_a_cpp_device(tmp_path: Path) -> None:
    p = protocol(tmp_path, "gain", "  - set_property: {device: camera, property: Gain, value: 20}\n"
                                   "  - set_property: {device: DCam, property: Gain, value: 2}\n")
    out = qc("validate", str(p), "--station", str(DEMO), "--runs-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"{p}:5: protocol: set_property: DCam.Gain = 20 is outside its limits -5 .. 8" in out.stderr and f"{p}:6:" not in out.stderr


def test_unreachable_devices_fall_back_to_the_station_file_and_say_what_was_skipped(tmp_path: Path) -> None:
    station = station_variant(tmp_path, merge(FAST, {"devices": {"Laser640": {"resource": "TCPIP0::127.0.0.1::9::SOCKET", "timeout_ms": 200}}}))
    p = protocol(tmp_path, "props", "  - set_property: {device: camera, property: Gian, value: 3}\n"
                                    "  - set_property: {device: turret, property: State, value: 1}\n")
    out = qc("validate", str(p), "--station", str(station), "--runs-dir", str(tmp_path))
    assert out.returncode == 2  # what the file can tell is still checked: no device 'turret'
    assert f"{p}:6: protocol: set_property: no device or role 'turret'" in out.stderr and "Gian" not in out.stderr
    assert "skipped: device checks (the station was not loaded): the devices could not be reached" in out.stdout and "Laser640" in out.stdout
    assert "skipped: set_property: whether the property exists and accepts the value" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_validate_with_a_station_says_what_it_checked(tmp_path: Path) -> None:
    station = station_variant(tmp_path, FAST)
    flat = ROOT / "protocols" / "flat-field.yaml"
    out = qc("validate", str(flat), str(LINEARITY), "--station", str(station), "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(rf"{re.escape(str(flat))} on {re.escape(str(station))}: preflight passed \(19 actions, about [\d.]+ min of station time, "
                        r"[\d.]+ MB of data, [\d.]+ GB free; checked against the loaded station\)", lines[0]), lines[0]
    assert lines[1].startswith(f"{LINEARITY} on {station}: preflight passed (174 actions, about ")


# --- data volume and disk ------------------------------------------------------------------------------
def test_data_that_would_not_fit_on_the_disk_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.run.preflight as preflight

    p = protocol(tmp_path, "big", "  - repeat: 10\n    do:\n      - acquire: {stack: a, exposure: 1 ms, frames: 1000}\n", "[camera]")
    facts = preflight.file_facts(station_variant(tmp_path, FAST))
    monkeypatch.setattr(preflight, "_free_bytes", lambda runs_dir: 30e9)  # 10000 full frames: 41.5 GB
    report = preflight.preflight(p, facts, tmp_path / "runs")
    assert report.problems == [] and not report.ok
    assert report.no_space == (f"{p}:1: protocol: about 41.5 GB of data would be written to {tmp_path / 'runs'}, which has 30 GB free "
                               "(needed with margin: 49.9 GB); free space, choose another --runs-dir, or acquire less")
    with pytest.raises(PreconditionFailed):  # not a mistake in the file: the run is not started (exit 5), a job is postponed
        report.raise_if_failed()
    monkeypatch.setattr(preflight, "_free_bytes", lambda runs_dir: 60e9)
    report = preflight.preflight(p, facts, tmp_path / "runs")
    assert report.ok and f"{report.data_bytes / 1e6:.0f}" == "41487"
    assert report.line().endswith("41487.0 MB of data, 60.0 GB free; checked against the station file)")


# --- station files as they will be loaded -------------------------------------------------------------
def test_station_file_roles_must_fit_their_devices(tmp_path: Path) -> None:
    station = station_variant(tmp_path, merge(FAST, {"roles": {
        "lasers": [{"device": "Laser405"}, {"device": "Laser488"}, {"device": "Laser488"}, {"device": "Laser640"}],
        "camera": "Meter", "xy_stage": "Camera", "z_drive": "Nope"}}))
    out = qc("validate", str(station))
    assert out.returncode == 2
    err = out.stderr
    assert "roles.camera: device 'Meter' (thorlabs_pm100) cannot be the camera" in err
    assert "roles.camera: device 'Meter' is already the power meter; one device fills one role" in err
    assert "roles.xy_stage: device 'Camera' (thorlabs_tsi) cannot be the xy stage" in err
    assert "roles.lasers[2].device: laser 'Laser488' is already listed as roles.lasers[1]" in err
    assert "roles.z_drive: no device 'Nope'" in err
    assert all(line.startswith(f"{station}:") and line.split(":")[1].isdigit() for line in err.removeprefix("error: ").splitlines())


def test_station_file_cfg_must_exist_and_define_the_role_devices(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text())
    data["micromanager"]["config"] = "missing.cfg"
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump(data, sort_keys=False))
    out = qc("validate", str(missing))
    assert out.returncode == 2 and f"micromanager.config: {tmp_path / 'missing.cfg'} not found" in out.stderr
    data["micromanager"]["config"] = str(ROOT / "configs" / "demo-micromanager.cfg")
    data["roles"]["xy_stage"] = "DXY"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(data, sort_keys=False))
    out = qc("validate", str(wrong))
    assert out.returncode == 2 and "roles.xy_stage: no device 'DXY' in the station file or in demo-micromanager.cfg" in out.stderr
    out = qc("validate", str(DEMO))
    assert out.returncode == 0, out.stderr


# --- schedules -----------------------------------------------------------------------------------------
def _schedule(tmp_path: Path, jobs: list[dict[str, Any]], station: Path) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump({"schedule": "preflight-test", "timezone": "UTC", "station": str(station), "runs_dir": "runs",
                                    "preconditions": {"free_disk": "1 MB", "station_free_within": "1 s"}, "jobs": jobs}, sort_keys=False))
    return path


def test_validate_schedule_preflights_every_job_and_schedule_run_refuses_to_start(tmp_path: Path) -> None:
    good = station_variant(tmp_path, FAST, "good.yaml")
    safe50 = station_variant(tmp_path, merge(FAST, SAFE_50), "safe50.yaml")
    no_load = station_variant(tmp_path, merge(FAST, {"roles": {"camera": "Nope"}}), "noload.yaml")
    path = _schedule(tmp_path, [
        {"name": "short", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "cron": "0 2 * * *"},
        {"name": "linearity", "protocol": str(LINEARITY), "station": str(safe50), "cron": "0 3 * * *"},
    ], good)
    out = qc("validate", str(path))
    assert out.returncode == 2
    assert "job 'linearity': " in out.stderr and "exceeds the station's safety limit of 50 mW" in out.stderr
    assert "job 'short'" not in out.stderr and "job 'short': " in out.stdout and "preflight passed" in out.stdout
    out = qc("schedule", "run", str(path))  # refused at once: no service loop, exit 2
    assert out.returncode == 2 and "a job cannot run" in out.stderr and "job 'linearity'" in out.stderr
    assert not (tmp_path / "runs").exists()
    # a job whose station cannot load
    path = _schedule(tmp_path, [{"name": "flat", "protocol": str(ROOT / "protocols" / "flat-field.yaml"), "cron": "0 2 * * *"}], no_load)
    out = qc("validate", str(path))
    assert out.returncode == 2 and "roles.camera: no device 'Nope'" in out.stderr


def test_the_service_rechecks_each_job_and_records_a_refused_one_as_not_started(tmp_path: Path) -> None:
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.scheduler import Pending, Scheduler
    from simulators.clock import VirtualClock

    station = station_variant(tmp_path, FAST)
    job_protocol = protocol(tmp_path, "job", "  - laser: {line: 488, setpoint: 10 mW}\n", "[lasers]")
    schedule = read_schedule_file(_schedule(tmp_path, [{"name": "job", "protocol": str(job_protocol), "cron": "0 2 * * *",
                                                        "retries": {"attempts": 3, "delay": "1 min"}}], station))
    now = datetime(2026, 12, 1, 2, tzinfo=timezone.utc)
    scheduler = Scheduler(schedule, VirtualClock(now), out=lambda s: None)
    schedule.runs_dir.mkdir(parents=True, exist_ok=True)
    runs = lambda: [p for p in schedule.runs_dir.iterdir() if not p.name.startswith(".")]  # noqa: E731  (.schedule: the service's state)
    # edited after the service started: a mark that was never made
    job_protocol.write_text(job_protocol.read_text() + "  - move: {to: nowhere}\n")
    outcome = scheduler._attempt(Pending("job", now.isoformat(), 1, now.isoformat()))
    assert outcome.outcome == "not started" and f"{job_protocol}:6: protocol: move: to: no position marked 'nowhere'" in outcome.reason
    assert outcome.reason.startswith("preflight: ")
    assert scheduler.state.pending == []  # a user error: not retried
    assert runs() == []
    # only the devices can tell (a property the camera lacks): the run process refuses, exit 2, nothing touched
    job_protocol.write_text(job_protocol.read_text().replace("  - move: {to: nowhere}\n", "  - set_property: {device: camera, property: Gian, value: 1}\n"))
    outcome = scheduler._attempt(Pending("job", now.isoformat(), 1, now.isoformat()))
    assert outcome.outcome == "not started" and "has no property 'Gian'" in outcome.reason, outcome
    assert scheduler.state.pending == [] and outcome.folder is None
    assert runs() == []
    recorded = [o["outcome"] for o in scheduler.state.outcomes()]
    assert recorded == ["not started", "not started"]


def test_preflight_module_does_not_load_micro_manager() -> None:
    code = "import sys, harness.run.preflight; print(sorted(m for m in sys.modules if m.startswith(('pymmcore', 'numpy'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_cpp_device_of_the_wrong_kind_in_a_role_is_named_when_the_station_loads(tmp_path: Path) -> None:
    """Only the loaded .cfg device tells its kind; this was a ValueError traceback."""
    data = yaml.safe_load(DEMO.read_text())
    data["micromanager"]["config"] = str(DEMO.parent / data["micromanager"]["config"])
    data["roles"]["camera"], data["roles"]["z_drive"] = "DStage", None
    station = tmp_path / "demo.yaml"
    station.write_text(yaml.safe_dump(data, sort_keys=False))
    p = protocol(tmp_path, "nothing", "  - wait: 1 s\n")
    out = qc("validate", str(p), "--station", str(station), "--runs-dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{station}:" in out.stderr and "roles.camera: device 'DStage' is a stage device; the camera needs a camera device" in out.stderr


def test_a_protocol_that_preflights_runs_and_sets_its_properties(tmp_path: Path, make_station: Any) -> None:
    station = make_station({})
    p = protocol(tmp_path, "props-ok", "  - set_property: {device: camera, property: Gain, value: 2}\n"
                 "  - set_property: {device: Meter, property: AutoRange, value: \"Off\"}\n"
                 "  - acquire: {stack: a, exposure: 5 ms, frames: 2, centre_roi: [64, 64]}\n", "[camera]")
    runner = Runner(station, p, runs_dir=tmp_path / "runs", quiet=True)
    assert runner.preflight.ok and runner.preflight.loaded and runner.preflight.data_bytes > 2 * 64 * 64 * 2
    outcome = runner.run()
    assert outcome.status == "completed", outcome.reason
    assert float(station.core.getProperty("Camera", "Gain")) == pytest.approx(2) and station.core.getProperty("Meter", "AutoRange") == "Off"


def test_schedule_run_now_of_a_job_that_does_not_preflight_exits_2(tmp_path: Path) -> None:
    station = station_variant(tmp_path, FAST)
    job_protocol = protocol(tmp_path, "job", "  - move: {to: nowhere}\n", "[xy_stage]")
    path = _schedule(tmp_path, [{"name": "job", "protocol": str(job_protocol), "cron": "0 2 * * *"}], station)
    out = qc("validate", str(path))
    assert out.returncode == 2 and f"job 'job': {job_protocol}:5: protocol: move: to: no position marked 'nowhere'" in out.stderr
    job_protocol.write_text(job_protocol.read_text().replace("{to: nowhere}", "{x: 1 um, y: 1 um}"))
    assert qc("validate", str(path)).returncode == 0
    job_protocol.write_text(job_protocol.read_text().replace("{x: 1 um, y: 1 um}", "{to: nowhere}"))  # edited afterwards
    out = qc("schedule", "run-now", str(path), "job")
    assert out.returncode == 2 and "job: not started (preflight: " in out.stdout and "no position marked 'nowhere'" in out.stdout
