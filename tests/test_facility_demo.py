"""The demo facility: truth that changes with the date (laser ageing and steps, stage wear), a seed
per run (``run --seed``, the schedule's derived seeds), and ``microscope-qc facility demo`` over a
short span through the real command: its runs in one database, a different seed per run kept in
run.json, the measured power following the simulator's truth at each run's date, and the same span
run twice giving the same values."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness.cli.commands import run as cli
from harness.common.yaml_source import load_yaml, validate
from harness.facility.facility_file import with_day_zero
from harness.station.simulation import world_params
from harness.station.station_file import StationFile
from harness.unattended.run_launcher import ProcessLauncher, run_seed
from harness.unattended.schedule_file import read_schedule_file
from harness.unattended.schedule_state import Pending
from simulators.clock import VirtualClock
from simulators.laser import LaserModel
from simulators.params import AxisParams, LaserParams, PowerStep
from simulators.stage import AxisModel
from simulators.world import World
from tests.conftest import station_variant
from tests.facility_demo import W1, SmallDemo, demo_env, run_small_demo, small_demo

__all__ = ["small_demo"]  # the session fixture, imported to be used here
DAY0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


# --- truth that changes with the date (fast) --------------------------------------------------------
@pytest.mark.fast
def test_a_laser_ages_and_steps_on_its_dates_whatever_its_runs_clock() -> None:
    p = LaserParams(wavelength_nm=488, nominal_power_mw=100, rin_rms=0.0, ageing_pct_per_day=-0.5, ageing_from_day=10,
                    power_steps=[PowerStep(day=20, step_pct=-5)])
    factors = {}
    for day in (0, 10, 16, 19.9, 20, 25):
        clock = VirtualClock(DAY0 + timedelta(days=day))  # each run has its own station clock, started on its date
        factors[day] = LaserModel("L", p, clock, np.random.default_rng(1), DAY0).output_factor()
    assert factors[0] == factors[10] == 1.0
    assert factors[16] == pytest.approx(0.97) and factors[19.9] == pytest.approx(1 - 0.005 * 9.9)
    assert factors[20] == pytest.approx(0.95 * 0.95) and factors[25] == pytest.approx(0.925 * 0.95)
    # the truth leaves the laser: the emitted power carries it
    clock = VirtualClock(DAY0 + timedelta(days=25))
    laser = LaserModel("L", p.model_copy(update={"cdrh": False}), clock, np.random.default_rng(1), DAY0)
    laser.setpoint_mw, laser.emission, laser._t_on = 50.0, True, 0.0
    assert laser.true_power_mw() == pytest.approx(laser.steady_power_mw(50.0) * 0.925 * 0.95)


@pytest.mark.fast
def test_a_run_to_run_variation_is_drawn_from_the_seed_only_when_asked_for() -> None:
    p = LaserParams(wavelength_nm=488, nominal_power_mw=100, power_up_variation_pct=0.5)
    factors = [LaserModel("L", p, VirtualClock(DAY0), np.random.default_rng(seed)).power_up_factor for seed in range(200)]
    assert np.std(factors) == pytest.approx(0.005, rel=0.2) and len(set(factors)) == 200
    assert LaserModel("L", p, VirtualClock(DAY0), np.random.default_rng(3)).power_up_factor == factors[3]
    plain = LaserParams(wavelength_nm=488, nominal_power_mw=100)
    rng = np.random.default_rng(5)
    assert LaserModel("L", plain, VirtualClock(DAY0), rng).power_up_factor == 1.0
    assert rng.normal() == np.random.default_rng(5).normal()  # no draw taken: other devices' noise unchanged


@pytest.mark.fast
def test_a_stage_axis_wears_from_its_day() -> None:
    p = AxisParams(backlash_um=0.3, repeatability_sigma_um=0.1, wear_from_day=6, backlash_growth_um_per_day=0.1,
                   repeatability_growth_um_per_day=0.01)
    early, late = (AxisModel("y", p, VirtualClock(DAY0 + timedelta(days=d)), np.random.default_rng(1), DAY0) for d in (3, 26))
    assert early.backlash_um() == 0.3 and early.repeatability_um() == 0.1
    assert late.backlash_um() == pytest.approx(2.3) and late.repeatability_um() == pytest.approx(0.3)
    late.move(100.0)
    late.move(0.0)  # approached from above: the carriage stays half the (worn) backlash above
    assert late.true_um() == pytest.approx(2.3 / 2 + late._random_um)


@pytest.mark.fast
def test_a_truth_that_changes_with_the_date_needs_a_day_zero(tmp_path: Path) -> None:
    path = station_variant(tmp_path, {"devices": {"Laser488": {"simulation": {"ageing_pct_per_day": -1.0}}}})
    assert cli(["validate", str(path)]) == 2
    fixed = path.with_name("fixed.yaml")
    fixed.write_text(with_day_zero(path.read_text(), datetime(2026, 11, 1, tzinfo=timezone.utc)))
    spec: StationFile = validate(load_yaml(fixed), StationFile, "station")  # type: ignore[assignment]
    assert spec.simulation is not None and spec.simulation.day_zero == DAY0
    shipped = (Path(__file__).parents[1] / "configs" / "facility" / "widefield-1.yaml").read_text()
    moved = with_day_zero(shipped, datetime(2027, 3, 4, 5, tzinfo=timezone.utc))
    changed = [(a, b) for a, b in zip(shipped.splitlines(), moved.splitlines()) if a != b]
    assert len(changed) == 1 and len(moved.splitlines()) == len(shipped.splitlines())  # one line changed, comments kept
    assert changed[0][1].startswith("  day_zero: 2027-03-04T05:00:00Z ")
    assert changed[0][1].endswith("# the demo sets this to its first day: the days above count from it")


def test_the_messages_about_day_zero_and_seed_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = station_variant(tmp_path, {"devices": {"XYStage": {"simulation": {"y": {"backlash_growth_um_per_day": 0.1}}}}})
    assert cli(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "devices.XYStage.simulation: this device changes with the date" in err and "simulation.day_zero" in err
    real = Path(__file__).parents[1] / "configs" / "example-station.yaml"
    code = cli(["run", "power-stability-short", "--station", str(real), "--seed", "3", "--runs-dir", str(tmp_path / "runs"), "--no-store", "-q", "-y"])
    assert code == 2 and "--seed only applies to a simulated station" in capsys.readouterr().err


# --- a seed per scheduled run (fast) -----------------------------------------------------------------
@pytest.mark.fast
def test_a_scheduled_run_on_a_simulated_station_gets_its_own_seed(tmp_path: Path) -> None:
    station = station_variant(tmp_path, {}, "station.yaml")
    schedule_path = tmp_path / "schedule.yaml"
    schedule_path.write_text(yaml.safe_dump({"schedule": "seeds", "timezone": "UTC", "station": station.name, "runs_dir": "runs",
                                             "jobs": [{"name": "power", "protocol": str(Path(__file__).parents[1] / "protocols" / "power-stability-short.yaml"),
                                                       "cron": "0 2 * * *"}]}))
    schedule = read_schedule_file(schedule_path)
    schedule.state_dir.mkdir(parents=True, exist_ok=True)
    commands: list[list[str]] = []

    class _Started:
        returncode = 0

        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            commands.append(cmd)
            Path(cmd[cmd.index("--outcome") + 1]).write_text(json.dumps({"status": "completed", "outcome": "completed", "verdict": "pass"}))

        def communicate(self) -> tuple[str, str]:
            return "", ""

    launcher = ProcessLauncher(schedule, VirtualClock(DAY0), out=lambda s: None, popen=_Started)  # type: ignore[arg-type]
    job = schedule.spec.jobs[0]
    attempts = [Pending("power", "2026-11-01T02:00:00+00:00", 1, ""), Pending("power", "2026-11-01T02:00:00+00:00", 2, ""),
                Pending("power", "2026-11-02T02:00:00+00:00", 1, "")]
    for attempt in [*attempts, attempts[0]]:
        launcher.launch(job, attempt, 0.0, False)
    launcher.launch(job, None, 0.0, False)  # an untagged run: the station file's seed
    seeds = [int(c[c.index("--seed") + 1]) if "--seed" in c else None for c in commands]
    base = 20261123  # configs/simulated.yaml simulation.seed
    assert seeds[:3] == [run_seed(base, "seeds", "power", a.due, a.attempt) for a in attempts]
    assert len(set(seeds[:3])) == 3 and seeds[3] == seeds[0] and seeds[4] is None
    assert all(0 <= s < 2**31 for s in seeds[:4] if s is not None)
    assert run_seed(base + 1, "seeds", "power", attempts[0].due, 1) != seeds[0]  # another station seed, another family


# --- the command over a short span ---------------------------------------------------------------
def _values(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT r.station, r.protocol, r.started_utc, r.verdict, m.subject, m.metric, m.value "
                                   "FROM runs r JOIN metrics m ON m.run_id = r.run_id"))


def _runs(demo: SmallDemo) -> list[dict[str, Any]]:
    folders = sorted(p.parent for p in demo.out.glob("*/*/run.json"))
    return [json.loads((f / "run.json").read_text()) | {"folder": f} for f in folders]


def test_the_demo_records_every_run_with_its_own_seed(small_demo: SmallDemo) -> None:
    runs = _runs(small_demo)
    with sqlite3.connect(small_demo.out / "facility.sqlite") as conn:
        rows = {r[0]: r[1:] for r in conn.execute("SELECT run_id, station, protocol, status, folder FROM runs")}
    # Widefield 1: every 12 h for two days (4 runs); the spinning disk: daily (2); all in the one database
    assert sorted(r["station"]["name"] for r in runs) == sorted([W1] * 4 + ["Spinning disk (room C.012)"] * 2)
    assert {r["run_id"] for r in runs} == set(rows) and all(v[2] == "completed" for v in rows.values())
    seeds = [r["station"]["seed"] for r in runs]
    assert len(set(seeds)) == len(seeds) and sorted(seeds) == sorted(small_demo.summary["seeds"])
    for run in runs:  # the seed is the schedule's for that run, and the station text run.json keeps has the demo's day zero
        tag = run["scheduled"]
        text = run["station"]["text"]
        base = yaml.safe_load(text)["simulation"]["seed"]
        assert run["station"]["seed"] == run_seed(base, tag["schedule"], tag["job"], tag["due"], tag["attempt"])
        assert "day_zero: 2026-11-02T00:00:00Z" in text
    assert "Seeds: 6 runs, 6 different seeds" in small_demo.stdout and "microscope-qc serve --db " in small_demo.stdout


def test_the_measured_power_follows_the_ageing_laser(small_demo: SmallDemo, tmp_path: Path) -> None:
    """Measured 488 nm mean power of each run against the simulator's truth at that run's date and
    with that run's seed: expected = steady power at the set point (75 mW) x transmission to the
    meter (0.35) x the laser's output factor (ageing, the fibre step, this power-up's variation) x
    the warm-up still missing during the samples (the same in every run). Tolerance 0.5 % (RIN and
    meter noise average to < 0.05 %; the warm-up's share is < 0.5 %), while the truth itself falls
    by more than 10 % over the two days."""
    seen = []
    for run in (r for r in _runs(small_demo) if r["station"]["name"] == W1):
        results = json.loads((run["folder"] / "results.json").read_text())
        measured = next(x["metrics"]["mean_mw"]["value"] for x in results["results"] if x["subject"] == "488 nm")
        station = tmp_path / f"{run['run_id']}.yaml"
        station.write_text(run["station"]["text"])  # the station file the run ran with, as run.json keeps it
        spec: StationFile = validate(load_yaml(station), StationFile, "station")  # type: ignore[assignment]
        assert spec.simulation is not None
        spec.simulation.seed = run["station"]["seed"]
        started = datetime.fromisoformat(run["started_utc"])
        world = World(world_params(spec), VirtualClock(started))
        laser = world.lasers["Laser488"]
        t = 7.5 * 60.0  # the 488 nm line (the only one) is sampled 5-10 min into the run; ageing over 5 min: < 0.02 %
        expected = laser.steady_power_mw(75.0) * 0.35 * laser.output_factor(t)
        seen.append((laser.output_factor(t), measured))
        assert measured == pytest.approx(expected, rel=0.005), (run["started_utc"], measured, expected)
    factors = [f for f, _ in seen]
    assert len(seen) == 4 and max(factors) / min(factors) > 1.10
    ratios = [m / f for f, m in seen]
    assert max(ratios) / min(ratios) < 1.002  # measured / truth: constant to 0.2 % across the days


def test_the_same_span_twice_gives_the_same_data(small_demo: SmallDemo, tmp_path: Path) -> None:
    again = run_small_demo(tmp_path)
    first, second = _values(small_demo.out / "facility.sqlite"), _values(again.out / "facility.sqlite")
    assert len(first) > 50 and first == second
    assert sorted(small_demo.summary["seeds"]) == sorted(again.summary["seeds"])
    names = sorted(p.name.rsplit("_", 1)[0] for p in small_demo.out.glob("*/*/run.json"))
    assert names and names == sorted(p.name.rsplit("_", 1)[0] for p in again.out.glob("*/*/run.json"))


def test_the_demo_refuses_a_database_with_runs_and_a_folder_in_use(small_demo: SmallDemo, tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    base = [sys.executable, "-m", "harness", "facility", "demo", "--facility", str(small_demo.facility), "--days", "1"]
    used = subprocess.run([*base, "--out", str(small_demo.out)], capture_output=True, text=True, env=env)
    assert used.returncode == 2 and "not an empty folder" in used.stderr and "Traceback" not in used.stderr
    full = subprocess.run([*base, "--out", str(tmp_path / "new"), "--db", small_demo.db_url], capture_output=True, text=True, env=env)
    assert full.returncode == 2 and "already has 6 runs" in full.stderr and "--append" in full.stderr
    assert not (tmp_path / "new").exists()  # refused: nothing written
