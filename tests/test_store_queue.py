"""The offline queue: a run whose results database is unreachable when it ends is queued on this
computer and recorded later, exactly once. The main test stops a real PostgreSQL server while a real
simulated run (``microscope-qc run`` as a process) is measuring: the run ends as itself (completed,
exit status 0), its folder complete, its record queued; with the server back, ``import --pending``
records it. Also: the next successful record delivers the queue by itself; a user mistake (a bad
URL, a database that does not exist) is an error, not queued; the queue never holds a password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from benchmarks.store_writers import clone_runs
from harness.cli import commands as cli
from harness.common.errors import UserError
from harness.finishing.runner import FinishingRunner
from harness.station.station import Station
from harness.store.pending import pending_dir
from harness.store.results_store import ResultsStore, metrics, record_run
from tests.conftest import ROOT, station_variant
from tests.pg_server import PgServer, free_port
from tests.test_results_store import PROTOCOL


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    """A server of this module's own: the tests stop and start it."""
    server = PgServer().start()
    yield server
    server.destroy()


@pytest.fixture(autouse=True)
def private_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MICROSCOPE_QC_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "xdg"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("queue-run")
    (base / "p.yaml").write_text(PROTOCOL)
    with Station.load(station_variant(base, {})) as station:
        outcome = FinishingRunner(station, base / "p.yaml", runs_dir=base / "runs", quiet=True).run()
    assert outcome.status == "completed"
    return outcome.folder


def queued() -> list[dict[str, str]]:
    return [json.loads(p.read_text()) for p in sorted(pending_dir().glob("*.json"))]


def qc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    messages: list[str] = []
    code = cli.run(list(args), out=messages.append)
    return code, capsys.readouterr().out, "\n".join(messages)


def metric_count(url: str) -> int:
    with ResultsStore(url) as store, store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(metrics)).scalar_one())


def test_a_run_whose_database_went_down_is_queued_and_recorded_later(server: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = server.new_database("queue")
    runs_dir = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "power-stability-short", "--runs-dir", str(runs_dir), "-q", "-y", "--db", url],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        # the run registers itself as running, then measures: stop the server once its journal shows steps
        deadline = time.monotonic() + 300
        running = []
        while time.monotonic() < deadline and proc.poll() is None:
            journals = list(runs_dir.glob("*/journal.jsonl"))
            if journals and journals[0].read_text().count('"type":"step"') >= 2:
                with ResultsStore(url) as store:
                    running = [r for r in store.history() if r.status == "running"]
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the server could be stopped"
        server.stop()
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
        if not (server.data / "postmaster.pid").exists():
            server.start()
    [folder] = runs_dir.iterdir()
    assert [r.folder for r in running] == [str(folder.resolve())]  # it was in the database as running
    assert proc.returncode == 0, err  # the run's own exit status: it completed
    assert out.strip() == f"completed: {folder}"
    assert f"results store: queued: will be recorded when {url} is reachable (results database {url}: not reachable" in err
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "completed" and (folder / "MANIFEST.sha256").is_file() and (folder / "results.json").is_file()
    [entry] = queued()
    assert (entry["folder"], entry["database"], entry["run_id"]) == (str(folder.resolve()), url, run["run_id"])

    code, out, _ = qc(capsys, "history", "--db", url)  # the server is back: the run is still "running" there, and the note says why
    assert code == 0 and " running " in out.splitlines()[2]
    assert out.splitlines()[-1] == ("note: 1 run queued on this computer waits to be recorded in this database "
                                    "(it was unreachable when they ended): microscope-qc import --pending")
    code, out, err = qc(capsys, "import", "--pending", "--db", url)
    assert (code, out) == (0, f"imported: {folder.resolve()} (queued)\n"), err
    assert queued() == []
    with ResultsStore(url) as store:
        [rec] = store.history()
        assert (rec.run_id, rec.status, rec.folder) == (run["run_id"], "completed", str(folder.resolve()))
    results = json.loads((folder / "results.json").read_text())
    assert metric_count(url) == sum(len(r["metrics"]) for r in results["results"])
    code, out, _ = qc(capsys, "import", "--pending", "--db", url)
    assert (code, out) == (0, "")  # nothing left


def test_the_next_record_delivers_the_queue(server: PgServer, real_run: Path, tmp_path: Path) -> None:
    url = server.new_database("next")
    first, second = clone_runs([real_run], tmp_path / "runs", 2)
    server.stop()
    try:
        said = record_run(first, url)
        assert said.startswith(f"queued: will be recorded when {url} is reachable (results database {url}: not reachable while opening it")
        assert record_run(first, url).startswith("queued: ")  # queued again: still one entry
        assert [e["folder"] for e in queued()] == [str(first.resolve())]
    finally:
        server.start()
    assert record_run(second, url) == "imported; 1 queued run delivered"
    assert queued() == []
    with ResultsStore(url) as store:
        assert sorted(r.folder for r in store.history()) == sorted(str(f.resolve()) for f in (first, second))
    assert record_run(first, url) == "already present"


def test_user_mistakes_are_not_queued(server: PgServer, real_run: Path) -> None:
    with pytest.raises(UserError, match=r"results database nosuchdb://x: .*\nthe run is safe on disk; record it later with: microscope-qc import "):
        record_run(real_run, "nosuchdb://x")
    with pytest.raises(UserError, match='database "no_such_database" does not exist'):
        record_run(real_run, server.url("no_such_database"))
    assert queued() == []


def test_the_queue_holds_no_password(real_run: Path) -> None:
    port = free_port()
    said = record_run(real_run, f"postgresql://qc:s3cret@127.0.0.1:{port}/qc")
    assert said.startswith(f"queued: will be recorded when postgresql://qc:***@127.0.0.1:{port}/qc is reachable") and "s3cret" not in said
    [path] = pending_dir().glob("*.json")
    assert "s3cret" not in path.read_text() and json.loads(path.read_text())["database"] == f"postgresql+psycopg://qc:***@127.0.0.1:{port}/qc"
