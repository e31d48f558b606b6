"""Many writers at once (benchmarks/store_writers.py): processes recording and importing clones of real
run folders into ONE fresh database, its first use included (the schema is made once, by whichever
comes first), each run given to several writers, everything imported twice: afterwards each run is
there once with all its metrics, each was "imported" exactly once, and no writer saw an error. The
figures (writers, runs, rows, seconds) are printed (pytest -s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from benchmarks.store_writers import assignments, clone_runs, run_writers
from harness.finishing.runner import FinishingRunner
from harness.station.station import Station
from harness.store.results_store import ResultsStore, metrics, runs
from tests.conftest import ROOT, station_variant
from tests.pg_server import PgServer


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real runs on the simulated station: power-stability-short and stage-repeatability."""
    base = tmp_path_factory.mktemp("templates")
    folders = []
    with Station.load(station_variant(base, {})) as station:
        for protocol in ("power-stability-short", "stage-repeatability"):
            outcome = FinishingRunner(station, ROOT / "protocols" / f"{protocol}.yaml", runs_dir=base / "runs", quiet=True).run()
            assert outcome.status == "completed", outcome.reason
            folders.append(outcome.folder)
    return folders


def expected_metrics(folders: list[Path]) -> int:
    total = 0
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        total += sum(len(r.get("metrics") or {}) for r in results["results"])
    return total


def check(url: str, folders: list[Path], writers: int, tmp_path: Path) -> None:
    lists = assignments(folders, writers, overlap=3)
    assert all(sum(folder in one for one in lists) == 3 for folder in folders)  # each run by three writers
    figures, errors = run_writers(url, lists, passes=2, work=tmp_path)
    print("\n" + figures.line(url.split("://")[0]))
    assert errors == []
    assert figures.runs_rows == len(folders) and figures.metrics_rows == expected_metrics(folders)
    assert figures.said == {"imported": len(folders), "already present": figures.imports - len(folders)}
    with ResultsStore(url) as store, store.engine.connect() as conn:
        doubled = conn.execute(sa.select(metrics.c.run_id, metrics.c.series, metrics.c.subject, metrics.c.kind, metrics.c.metric)
                               .group_by(metrics.c.run_id, metrics.c.series, metrics.c.subject, metrics.c.kind, metrics.c.metric)
                               .having(sa.func.count() > 1)).all()
        assert doubled == []
        ids = {r[0] for r in conn.execute(sa.select(runs.c.run_id))}
        assert ids == {json.loads((f / "run.json").read_text())["run_id"] for f in folders}
        assert {r.status for r in store.history()} == {"completed"}


def test_eight_writers_into_one_new_postgresql_database(templates: list[Path], pg_server: PgServer, tmp_path: Path) -> None:
    folders = clone_runs(templates, tmp_path / "runs", 120)
    check(pg_server.new_database("writers"), folders, 8, tmp_path)


def test_four_writers_into_one_new_sqlite_file(templates: list[Path], tmp_path: Path) -> None:
    folders = clone_runs(templates, tmp_path / "runs", 60)
    check(f"sqlite:///{tmp_path / 'shared.sqlite'}", folders, 4, tmp_path)
