"""A small facility for the board's tests: two real simulated runs (power-stability-short, flat-field),
cloned into three microscopes over five weeks (run.json and results.json rewritten: ids, station,
times, a spread of values; one warning and one failure; one out-of-control point), imported into a
fresh SQLite results store, plus one running run whose journal the test grows.

``build(root)`` -> ``Facility``; about 20 s (the two real runs), once per test module.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness.common.process_owner import this_process
from harness.store.results_store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 9, 1, 8, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 10, 10, 12, 0, tzinfo=timezone.utc)  # the board's "now" in the tests
STATIONS = ("Scope A", "Scope B", "Scope C")
POLICY = """policy: test facility
checks:
  power-stability-short: {every: 7 d}
  flat-field: {every: 182 d}
  psf: {every: 30 d}
microscopes:
  Scope C:
    flat-field: {applicable: false, note: no camera port}
"""


@dataclass
class Facility:
    url: str
    runs_dir: Path
    policy: Path
    by_station: dict[str, list[str]] = field(default_factory=dict)  # station -> run ids, oldest first
    warn_run: str = ""
    fail_run: str = ""
    running_id: str = ""
    running_folder: Path = Path()
    running_journal: list[str] = field(default_factory=list)  # the whole journal the running run will have


def _real_run(protocol: str, runs_dir: Path, env: dict[str, str]) -> Path:
    before = set(runs_dir.iterdir()) if runs_dir.exists() else set()
    subprocess.run([sys.executable, "-m", "harness", "run", protocol, "--runs-dir", str(runs_dir), "-q", "-y",
                    "--clock-start", START.isoformat()], check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    (new,) = set(runs_dir.iterdir()) - before
    return new


def _clone(source: Path, dest_root: Path, station: str, started: datetime, scale: dict[str, float], verdict: str | None = None,
           overrides: dict[str, tuple[float, str]] | None = None) -> tuple[str, Path]:
    """A copy of ``source`` as another run: new id, station, times; metric values scaled; some overridden."""
    run_id = str(uuid.uuid4())
    folder = dest_root / f"{started:%Y%m%dT%H%M%SZ}_{source.name.split('_')[1]}_{station.replace(' ', '-').lower()}_{run_id[:8]}"
    shutil.copytree(source, folder)
    run = json.loads((folder / "run.json").read_text())
    duration = datetime.fromisoformat(run["ended_utc"]) - datetime.fromisoformat(run["started_utc"])
    run.update(run_id=run_id, started_utc=started.isoformat(), ended_utc=(started + duration).isoformat())
    run["station"]["name"] = station
    run["operator"] = "alice"
    (folder / "run.json").write_text(json.dumps(run))
    results = json.loads((folder / "results.json").read_text())
    results.update(run_id=run_id, station=station)
    for result in results["results"]:
        for name, m in result.get("metrics", {}).items():
            if isinstance(m.get("value"), (int, float)) and name in scale:
                m["value"] = m["value"] * scale[name]
            if overrides and name in overrides:
                m["value"], m["verdict"] = overrides[name]
                result["verdict"] = overrides[name][1]
    if verdict:
        results["verdict"] = verdict
    (folder / "results.json").write_text(json.dumps(results))
    return run_id, folder


def build(root: Path) -> Facility:
    env = {**os.environ, "XDG_DATA_HOME": str(root / "xdg"), "MICROSCOPE_QC_DB": f"sqlite:///{(root / 'real.sqlite').as_posix()}",
           "MICROSCOPE_QC_LOCK_DIR": str(root / "locks")}
    real = root / "real"
    power = _real_run("power-stability-short", real, env)
    flat = _real_run("flat-field", real, env)
    facility = Facility(f"sqlite:///{(root / 'board.sqlite').as_posix()}", root / "runs", root / "policy.yaml")
    facility.policy.write_text(POLICY)
    rng = random.Random(15)
    folders = []
    for s, station in enumerate(STATIONS):
        ids = facility.by_station.setdefault(station, [])
        count = 8 if station == "Scope C" else 12  # Scope C's power check stops early: overdue
        for k in range(count):
            started = START + timedelta(days=3 * k, hours=2 * s)
            scale = {"stability_pct": 1 + rng.gauss(0, 0.0005), "cv_pct": 1 + rng.gauss(0, 0.05), "mean_mw": 1 + rng.gauss(0, 0.002)}
            overrides, verdict = None, None
            if station == "Scope B" and k == count - 1:  # a sudden drop: out of control, and a warning
                overrides, verdict = {"stability_pct": (98.5, "warn")}, "warn"
            if station == "Scope C" and k == count - 1:
                overrides, verdict = {"stability_pct": (97.0, "fail")}, "fail"
            run_id, folder = _clone(power, facility.runs_dir, station, started, scale, verdict, overrides)
            ids.append(run_id)
            folders.append(folder)
            facility.warn_run = run_id if station == "Scope B" and overrides else facility.warn_run
            facility.fail_run = run_id if station == "Scope C" and overrides else facility.fail_run
        if station != "Scope C":
            run_id, folder = _clone(flat, facility.runs_dir, station, START + timedelta(days=10, hours=s), {})
            ids.append(run_id)
            folders.append(folder)
    with ResultsStore(facility.url) as store:
        for folder in folders:
            store.import_run(folder)
        # a running run, as the store records one while it runs: a row with status "running"
        run_id, folder = _clone(power, facility.runs_dir, "Scope A", NOW - timedelta(minutes=5), {})
        journal = (folder / "journal.jsonl").read_text().splitlines()
        facility.running_journal = [line for line in journal if json.loads(line)["type"] not in ("run_end", "finishing", "finished")]
        (folder / "results.json").unlink()
        (folder / "report.html").unlink()
        (folder / "journal.jsonl").write_text("\n".join(facility.running_journal[:3]) + "\n")
        run = json.loads((folder / "run.json").read_text())
        run["status"] = "running"
        run["host"] = {"hostname": "test"}
        run["process"] = this_process().as_dict()  # its owner is alive: this test process
        (folder / "run.json").write_text(json.dumps(run))
        assert store.register_start(folder)  # the row the run command writes when a run starts
    facility.running_id, facility.running_folder = run_id, folder
    return facility


def grow_journal(facility: Facility, lines: int) -> None:
    """Write the running run's journal up to ``lines`` records of the real one (as the run would)."""
    path = facility.running_folder / "journal.jsonl"
    have = len(path.read_text().splitlines())
    with open(path, "a") as f:  # appended, whole lines, as the journal writer does
        f.write("".join(line + "\n" for line in facility.running_journal[have:lines]))
