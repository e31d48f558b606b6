"""One run of each shipped protocol on the shipped simulated station, made once per test process and
shared by the modules that check it (``SHARED_MODULES``): on virtual time the same protocol on the
same station gives the same data, so a second run would only repeat the work.

Contract: ``shipped_run(name, tmp_path_factory)`` runs ``protocols/<name>.yaml`` on
``configs/simulated.yaml`` the first time it is asked for in this process and returns the same
``ShippedRun`` after that (folder, the runner, the simulated world after the run, the run's start on
the station clock). The run must complete and leave no laser on. Tests read a shared run and never
change its folder (a test that alters one copies it first). ``conftest.pytest_xdist_make_scheduler``
sends ``SHARED_MODULES`` to one xdist worker as one unit, so each run is made once per session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station
from tests.conftest import ROOT, station_variant

SHARED_MODULES = frozenset({"test_protocol_runs.py", "test_focus_analysis.py", "test_psf_analysis.py", "test_coregistration.py",
                            "test_camera_characterization.py", "test_power_warmup_noise.py"})


@dataclass(frozen=True)
class ShippedRun:
    folder: Path
    runner: Runner
    world: Any
    t0: float

    def results(self, kind: str | None = None) -> list[dict[str, Any]]:
        """results.json's results (of one analysis kind)."""
        results: list[dict[str, Any]] = json.loads((self.folder / "results.json").read_text())["results"]
        return [r for r in results if kind is None or r["kind"] == kind]


_RUNS: dict[str, ShippedRun] = {}


def shipped_run(name: str, tmp_path_factory: pytest.TempPathFactory) -> ShippedRun:
    if name not in _RUNS:
        base = tmp_path_factory.mktemp(f"shipped-{name}")
        with Station.load(station_variant(base, {}, f"{name}.yaml")) as station:
            runner = Runner(station, ROOT / "protocols" / f"{name}.yaml", runs_dir=base / "runs", quiet=True)
            outcome = runner.run()
            assert outcome.status == "completed", f"{name}: {outcome.reason}"
            assert station.sim is not None
            lasers_on = [label for label, laser in station.sim.world.lasers.items() if laser.emission]
            assert not lasers_on, f"{name} left lasers on: {lasers_on}"
            _RUNS[name] = ShippedRun(outcome.folder, runner, station.sim.world, runner.t0)
    return _RUNS[name]
