"""The results store's schema by migration, on SQLite and PostgreSQL: a new database gets exactly the
tables the code describes, with a version; a database made by the code before migrations (commit
a6f82d4: tests/data/store, see its README) is upgraded in place keeping every row and read by the
new code; many processes opening one new database at once make the schema once, without error; a
database newer than the code is refused with one message and left alone."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from harness.cli import commands as cli
from harness.common.errors import UserError
from harness.store.migrations import BASELINE, HEAD, _config
from harness.store.results_store import ResultsStore, metadata, metrics, runs
from tests.pg_server import PgServer

DATA = Path(__file__).parent / "data" / "store"
MAIN_SQLITE, MAIN_SQL = DATA / "main-a6f82d4.sqlite", DATA / "main-a6f82d4.postgresql.sql"
ROOT = Path(__file__).resolve().parents[1]


def version(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def schema_differences(store: ResultsStore) -> list[Any]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def rows(url: str, table: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            key = "run_id" if table == "runs" else "id"
            return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {key}"))]
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fresh_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        return server.new_database("migr")
    return f"sqlite:///{tmp_path / 'new.sqlite'}"


def main_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database as commit a6f82d4 made it (the fixtures of tests/data/store)."""
    if kind == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.new_database("main")
        server.execute(MAIN_SQL.read_text(encoding="utf-8"), database=url.rsplit("/", 1)[1])
        return url
    path = tmp_path / "main.sqlite"
    shutil.copyfile(MAIN_SQLITE, path)
    return f"sqlite:///{path}"


def test_a_new_database_gets_the_schema_by_migration(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = fresh_url(kind, request, tmp_path)
    with ResultsStore(url) as store:
        assert schema_differences(store) == []  # exactly the tables, columns and indexes the code describes
        assert store.history() == []
    assert version(url) == [HEAD]
    with ResultsStore(url) as store:  # opening again changes nothing
        assert schema_differences(store) == []
    assert version(url) == [HEAD]


def test_a_database_made_before_migrations_is_upgraded_in_place(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = main_database(kind, request, tmp_path)
    before_runs, before_metrics = rows(url, "runs"), rows(url, "metrics")
    assert len(before_runs) == 3 and len(before_metrics) == 128 and "seed" not in before_runs[0]
    assert not sa.inspect(sa.create_engine(url)).has_table("alembic_version")
    with ResultsStore(url) as store:
        assert schema_differences(store) == []
        history = store.history()
        assert [r.protocol for r in history] == ["power-stability-short", "power-stability-short", "stage-repeatability"]
        assert {r.status for r in history} == {"completed"} and all(r.seed is None for r in history)
        assert [p.value for p in store.series("Simulated widefield", "stability_pct", subject="488 nm")]
    assert version(url) == [HEAD]
    after_runs, after_metrics = rows(url, "runs"), rows(url, "metrics")
    assert [{k: v for k, v in r.items() if k != "seed"} for r in after_runs] == before_runs  # every row, every value
    assert after_metrics == before_metrics and all(r["seed"] is None for r in after_runs)
    with ResultsStore(url) as store, store.engine.begin() as conn:  # the upgraded table takes new rows (its sequence too)
        run_id = before_runs[0]["run_id"]
        conn.execute(sa.insert(metrics).values(run_id=run_id, subject="x", kind="k", metric="m", value=1.0, verdict="pass"))
        assert conn.execute(sa.select(sa.func.count()).select_from(metrics)).scalar() == 129
        conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(seed=2**40))


def test_many_processes_opening_a_new_database_at_once(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """12 processes open one new database at the same moment (a start file releases them)."""
    for attempt in range(1):
        url = fresh_url(kind, request, tmp_path / str(attempt))
        (tmp_path / str(attempt)).mkdir(exist_ok=True)
        go = tmp_path / str(attempt) / "go"
        code = ("import os, sys, time\n"
                "from harness.store.results_store import ResultsStore\n"
                f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
                f"with ResultsStore({url!r}) as s: print(len(s.history()))\n")
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(12)]
        try:
            go.touch()
            results = [p.communicate(timeout=300) for p in procs]
        finally:
            for p in procs:
                p.kill()
        failed = [(p.returncode, err) for p, (out, err) in zip(procs, results) if p.returncode != 0]
        assert failed == [] and [out for out, err in results] == ["0\n"] * 12
        assert version(url) == [HEAD]


def test_a_database_newer_than_the_code_is_refused(kind: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = fresh_url(kind, request, tmp_path)
    ResultsStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_future'"))
    engine.dispose()
    with pytest.raises(UserError, match=r"its schema is at revision '0099_future', made by a newer microscope-qc-harness .*upgrade it"):
        ResultsStore(url)
    messages: list[str] = []
    assert cli.run(["history", "--db", url], out=messages.append) == 2
    assert len(messages) == 1 and "\n" not in messages[0] and "upgrade it" in messages[0]
    assert version(url) == ["0099_future"]  # left alone


def _structure(path: Path) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        out: list[Any] = []
        for table in ("runs", "metrics"):
            out.append(sorted((r[1], r[2], r[3], r[5]) for r in conn.execute(f"PRAGMA table_info({table})")))
            out.append(sorted((r[1], r[2], [c[2] for c in conn.execute(f"PRAGMA index_info({r[1]})")]) for r in conn.execute(f"PRAGMA index_list({table})")))
            out.append(sorted(tuple(r[2:6]) + (r[6],) for r in conn.execute(f"PRAGMA foreign_key_list({table})")))
        return out
    finally:
        conn.close()


def test_the_baseline_is_the_schema_of_a6f82d4(tmp_path: Path) -> None:
    """The first revision makes what the code of a6f82d4 made: same tables, columns, types, keys and indexes."""
    path = tmp_path / "baseline.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.upgrade(_config(conn), BASELINE)
    engine.dispose()
    assert _structure(path) == _structure(MAIN_SQLITE)
    assert ("ix_runs_started_utc", 0, ["started_utc"]) in _structure(path)[1]
