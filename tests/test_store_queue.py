"""The offline queue: a run whose results database is unreachable when it ends is queued on this
computer and recorded later, exactly once. The main test stops a real PostgreSQL server while a real
simulated run (``microscope-qc run`` as a process) is measuring: the run ends as itself (completed,
exit status 0), its folder complete, its record queued; with the server back, ``import --pending``
records it. Also: the next successful record delivers the queue by itself; a user mistake (a bad
URL, a database that does not exist) is an error, not queued; the queue never holds a password; a
database newer than this software queues the record until it is upgraded; a queued run whose folder
is not there (a drive not mounted) stays queued, one whose folder is not a run is set aside; a
relative SQLite URL names one file, whatever the current folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
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
from harness.store import pending
from harness.store.connection import database_key, shown
from harness.store.migrations import HEAD
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
        # the run registers itself as running, then measures: once its journal shows steps, freeze the
        # run (SIGSTOP) so it cannot record meanwhile, check it has not recorded yet, stop the server, resume
        deadline = time.monotonic() + 300
        running = []
        while time.monotonic() < deadline and proc.poll() is None:
            journals = list(runs_dir.glob("*/journal.jsonl"))
            if journals and journals[0].read_text().count('"type":"step"') >= 2:
                proc.send_signal(signal.SIGSTOP)
                with ResultsStore(url) as store:
                    running = [r for r in store.history() if r.status == "running"]
                break
            time.sleep(0.05)
        assert proc.poll() is None and running, "the run recorded itself before it could be frozen"
        server.stop()  # the run is frozen: its record comes after this, whatever the machine's load
        proc.send_signal(signal.SIGCONT)
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
                                    "(it could not take it when it ended): microscope-qc import --pending")
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


def test_a_password_in_the_query_string_is_hidden_everywhere(real_run: Path) -> None:
    port = free_port()
    url = f"postgresql://qc@127.0.0.1:{port}/qc?password=s3cret&sslmode=disable&sslpassword=k3y"
    assert shown(url) == f"postgresql://qc@127.0.0.1:{port}/qc?sslmode=disable&password=***&sslpassword=***"
    assert database_key(url) == f"postgresql+psycopg://qc@127.0.0.1:{port}/qc?sslmode=disable&password=***&sslpassword=***"
    said = record_run(real_run, url)
    assert said.startswith(f"queued: will be recorded when {shown(url)} is reachable") and "s3cret" not in said and "k3y" not in said
    [path] = pending_dir().glob("*.json")
    assert "s3cret" not in path.read_text() and "k3y" not in path.read_text()
    bad = "postgresql://qc:s3cret@127.0.0.1:port/qc?password=s3cret"  # not a URL SQLAlchemy can read: still masked, one message
    with pytest.raises(UserError) as caught:
        ResultsStore(bad)
    assert str(caught.value).startswith("results database postgresql://qc:***@127.0.0.1:port/qc?password=***: ") and "s3cret" not in str(caught.value)


def set_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()


def test_a_database_newer_than_this_software_queues_the_record(real_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    ResultsStore(url).close()
    set_revision(url, "0099_future")  # the facility's database was upgraded by a newer station
    said = record_run(real_run, url)
    assert said.startswith(f"queued: will be recorded in {url} once this computer's microscope-qc-harness is upgraded "
                           f"(results database {url}: its schema is at revision '0099_future'")
    [entry] = queued()
    assert entry["folder"] == str(real_run.resolve()) and "0099_future" in entry["reason"] and "upgrade it" in entry["reason"]
    code, out, err = qc(capsys, "import", "--pending", "--db", url)
    assert code == 2 and "upgrade it" in err and len(queued()) == 1  # still too new: kept
    set_revision(url, str(HEAD))  # this computer's software is upgraded (it knows the database's revision now)
    code, out, err = qc(capsys, "import", "--pending", "--db", url)
    assert (code, out) == (0, f"imported: {real_run.resolve()} (queued)\n"), err
    assert queued() == []


def test_a_queued_run_whose_folder_is_not_there_stays_queued(real_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    nas, unmounted, junk = tmp_path / "nas", tmp_path / "nas-unmounted", tmp_path / "junk"
    dropped = pending_dir() / "dropped"  # where entries set aside go (harness.store.pending.dropped_dir)
    shutil.copytree(real_run, nas / "run")
    junk.mkdir()
    pending.queue(nas / "run", url, "unreachable")
    pending.queue(junk, url, "unreachable")
    nas.rename(unmounted)  # the runs' drive is not mounted now
    ResultsStore(url).close()  # the database exists (history refuses an SQLite --db that does not: a typo)
    code, out, _ = qc(capsys, "history", "--db", url)
    assert code == 0 and out.splitlines()[-1] == (
        "note: 2 runs queued on this computer wait to be recorded in this database (it could not take them when they ended): "
        "microscope-qc import --pending; 1 of them in a folder not there now (a drive or share not mounted?): recorded once back")
    code, out, err = qc(capsys, "import", "--pending", "--db", url)
    assert code == 0, err
    lines = sorted(out.splitlines())
    assert len(lines) == 2
    assert lines[0].startswith(f"dropped from the queue (set aside as {dropped}/")
    assert lines[0].endswith(f"{junk}: not a run folder (no run.json): {junk} (queued)")
    assert lines[1].startswith("kept in the queue: the folder is not there now (a drive or share not mounted?)")
    assert lines[1].endswith(f": {nas / 'run'} (queued)")
    assert [e["folder"] for e in queued()] == [str(nas / "run")]  # the missing one waits
    [aside] = [json.loads(p.read_text()) for p in dropped.glob("*.json")]  # the one that is not a run is set aside, not lost
    assert aside["folder"] == str(junk) and "not a run folder" in aside["dropped_because"]
    unmounted.rename(nas)  # mounted again
    code, out, err = qc(capsys, "import", "--pending", "--db", url)
    assert (code, out) == (0, f"imported: {nas / 'run'} (queued)\n"), err
    assert queued() == []
    with ResultsStore(url) as store:
        assert [r.folder for r in store.history()] == [str(nas / "run")]


def test_a_relative_sqlite_url_names_one_file_whatever_the_current_folder(real_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    assert database_key("sqlite:///r.sqlite") == f"sqlite:///{a / 'r.sqlite'}"
    pending.queue(real_run, "sqlite:///r.sqlite", "busy")
    monkeypatch.chdir(b)
    assert database_key("sqlite:///r.sqlite") == f"sqlite:///{b / 'r.sqlite'}"
    assert pending.waiting("sqlite:///r.sqlite") == []  # here it names another file: not the database the run was queued for
    with ResultsStore("sqlite:///r.sqlite") as store:
        assert store.deliver_pending() == [] and str(store.engine.url) == f"sqlite:///{b / 'r.sqlite'}"
    [entry] = pending.waiting(f"sqlite:///{a / 'r.sqlite'}")
    assert entry.folder == str(real_run.resolve())
