"""A small demo facility for tests: two microscopes of the shipped demo facility over two days of
virtual time, through the real command (``microscope-qc facility demo``), into a fresh SQLite
database. Both keep their 488 nm line only (a quick power run). Widefield 1's laser is made to age
fast (3 %/day from day 0, and -10 % on day 1.5) so that two days show the change; it checks its power
every 12 h, the spinning disk once a day.

``run_small_demo(folder, env)`` runs it (about 30-60 s on two busy cores) and returns a ``SmallDemo``;
``small_demo`` is a session fixture that runs it once (per test worker) for every test that wants a
small demo database (the board's tests too: ``from tests.facility_demo import small_demo``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FACILITY = ROOT / "configs" / "facility"
START = "2026-11-02"  # a Monday
DAYS = "2"
W1, SD = "Widefield 1 (room B.204)", "Spinning disk (room C.012)"


@dataclass(frozen=True)
class SmallDemo:
    out: Path  # the runs, stations and database
    db_url: str
    facility: Path
    stdout: str
    summary: dict[str, Any]  # demo-summary.json


def write_small_facility(folder: Path) -> Path:
    """The small facility's files in ``folder``: its facility file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("widefield-1", "spinning-disk"):  # the 488 nm line only: a power run of one line is quick
        station = yaml.safe_load((FACILITY / f"{name}.yaml").read_text())
        for label in [k for k in station["devices"] if k.startswith("Laser") and k != "Laser488"]:
            del station["devices"][label]
        station["roles"]["lasers"] = [{"device": "Laser488"}]
        station["simulation"].pop("bead_slide", None)
        station["simulation"]["optics"] = {k: ({"Laser488": v["Laser488"]} if isinstance(v, dict) else v)
                                           for k, v in station["simulation"]["optics"].items() if k != "chromatic_shift_um"}
        if name == "widefield-1":
            station["devices"]["Laser488"]["simulation"].update({
                "ageing_pct_per_day": -3.0, "ageing_from_day": 0, "power_steps": [{"day": 1.5, "step_pct": -10, "cause": "fibre coupling degraded"}]})
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(station, sort_keys=False))
    protocol = str(ROOT / "protocols" / "power-stability-short.yaml")
    for name, station, every, start in (("small-w1", "widefield-1.yaml", "12 h", "2026-01-01T02:00:00"),
                                        ("small-sd", "spinning-disk.yaml", "1 d", "2026-01-01T03:00:00")):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({
            "schedule": name, "timezone": "Europe/Berlin", "station": station,
            "preconditions": {"free_disk": "100 MB", "station_free_within": "5 min"},
            "jobs": [{"name": "power", "protocol": protocol, "every": every, "start": start}],
        }, sort_keys=False))
    facility = folder / "facility.yaml"
    facility.write_text(yaml.safe_dump({"facility": "Small test facility", "policy": str(FACILITY / "policy.yaml"),
                                        "microscopes": [{"schedule": "small-w1.yaml"}, {"schedule": "small-sd.yaml"}]}, sort_keys=False))
    return facility


def demo_env(folder: Path) -> dict[str, str]:
    """A private environment: the user's data folder, database and station locks are never touched."""
    return dict(os.environ, XDG_DATA_HOME=str(folder / "xdg"), MICROSCOPE_QC_DB=f"sqlite:///{folder / 'not-this.sqlite'}",
                MICROSCOPE_QC_LOCK_DIR=str(folder / "locks"))


def run_small_demo(folder: Path, *extra: str) -> SmallDemo:
    facility = write_small_facility(folder / "files")
    out = folder / "out"
    cmd = [sys.executable, "-m", "harness", "facility", "demo", "--facility", str(facility), "--start", START, "--days", DAYS,
           "--out", str(out), "--jobs", "2", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=demo_env(folder), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "demo-summary.json").read_text())
    return SmallDemo(out, f"sqlite:///{out / 'facility.sqlite'}", facility, done.stdout, summary)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallDemo]:
    """The small demo, run once per test session (per xdist worker): its database has runs of two
    microscopes, one of them with a laser whose power falls."""
    yield run_small_demo(tmp_path_factory.mktemp("small-demo"))
