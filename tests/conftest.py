"""Shared fixtures: the shipped simulated station, and variants of it written to temporary files."""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# the tests never touch the user's own results database or station locks (runs started by the
# CLI record into the store and lock the station; child processes inherit these)
_PRIVATE = Path(tempfile.mkdtemp(prefix="qc-tests-userdata-"))
os.environ["XDG_DATA_HOME"] = str(_PRIVATE)
os.environ["MICROSCOPE_QC_DB"] = f"sqlite:///{(_PRIVATE / 'results.sqlite').as_posix()}"

from harness.station.station import Station  # noqa: E402 (after the environment above: harness modules read it)
from tests.pg_server import PgMissing, PgServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIMULATED = ROOT / "configs" / "simulated.yaml"
DEMO = ROOT / "configs" / "demo-micromanager.yaml"


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def station_variant(tmp_path: Path, extra: dict[str, Any], name: str = "station.yaml") -> Path:
    """The simulated station with ``extra`` merged in, written to ``tmp_path``."""
    data = merge(yaml.safe_load(SIMULATED.read_text()), extra)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


FAST = {}


@pytest.fixture(scope="module")
def sim_station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    """The shipped simulated station, its clock sped up for tests."""
    station = Station.load(station_variant(tmp_path_factory.mktemp("sim"), FAST))
    yield station
    station.close()


@pytest.fixture
def make_station(tmp_path: Path) -> Iterator[Any]:
    opened: list[Station] = []

    def _make(extra: dict[str, Any]) -> Station:
        # a camera serial of its own: a camera cannot be open in two stations at once
        serial = {"devices": {"Camera": {"simulation": {"serial": f"SIMVAR{len(opened)}"}}}}
        station = Station.load(station_variant(tmp_path, merge(merge(FAST, serial), extra), f"station{len(opened)}.yaml"))
        opened.append(station)
        return station

    yield _make
    for station in opened:
        station.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throw-away PostgreSQL server for this test process (tests/pg_server.py); no server binaries
    is a failure, not a skip (.ci/run installs them)."""
    try:
        server = PgServer().start()
    except PgMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.destroy()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` (pyproject's default) with the modules that share the shipped protocols'
    runs (tests/shipped_runs.py) as one unit, so one worker makes each of those runs once."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    from tests.shipped_runs import SHARED_MODULES

    class SharedRunsScope(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "shipped-runs" if Path(module).name in SHARED_MODULES else str(super()._split_scope(nodeid))

    return SharedRunsScope(config, log)
