"""The results store on a real PostgreSQL server (tests/pg_server.py): bounded waits (a table lock held
by another connection, a statement cut short, a server that does not answer) end in one message naming
the database, what waited and what to do; ``postgresql://`` means psycopg 3; no driver, one message
naming the extra. The store's own behaviour on PostgreSQL is tests/test_results_store.py's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness.common.errors import UserError
from harness.store.connection import CONNECT_TIMEOUT_VAR, LOCK_TIMEOUT_VAR, STATEMENT_TIMEOUT_VAR, Timeouts
from harness.store.results_store import ResultsStore, register_start
from tests.pg_server import PgServer, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder: the short two-line power protocol of tests/test_results_store.py on the simulated station."""
    from harness.finishing.runner import FinishingRunner
    from harness.station.station import Station
    from tests.conftest import station_variant
    from tests.test_results_store import PROTOCOL

    base = tmp_path_factory.mktemp("pgrun")
    (base / "p.yaml").write_text(PROTOCOL)
    with Station.load(station_variant(base, {})) as station:
        outcome = FinishingRunner(station, base / "p.yaml", runs_dir=base / "runs", quiet=True).run()
    assert outcome.status == "completed"
    return outcome.folder


@pytest.fixture
def url(pg_server: PgServer) -> str:
    url = pg_server.new_database("pg")
    ResultsStore(url).close()  # the schema, before anything locks it
    return url


@pytest.fixture
def locked(pg_server: PgServer, url: str) -> Iterator[psycopg.Connection]:
    """Another connection holding ``LOCK TABLE runs IN ACCESS EXCLUSIVE MODE`` until the test ends."""
    conn = psycopg.connect(host="127.0.0.1", port=pg_server.port, user="postgres", dbname=url.rsplit("/", 1)[1], application_name="the lock holder")
    conn.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
    yield conn
    conn.rollback()
    conn.close()


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``microscope-qc`` as a process; the timeout only proves it did not hang."""
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_a_table_lock_held_elsewhere_ends_history_and_import_with_one_message(url: str, locked: psycopg.Connection, run_folder: Path) -> None:
    for args in (["history"], ["import", str(run_folder)]):
        done = cli(*args, "--db", url, **{LOCK_TIMEOUT_VAR: "2"})
        assert done.returncode == 2 and done.stdout == "", done
        message = done.stderr.strip()
        assert "\n" not in message and message.startswith(f"error: results database {url}: ")
        assert "waited 2 s for a lock and gave up" in message and LOCK_TIMEOUT_VAR in message
        assert "(pid " in message and "the lock holder" in message and "holds a lock on table runs (AccessExclusiveLock)" in message
    assert "reading the run history waited" in cli("history", "--db", url, **{LOCK_TIMEOUT_VAR: "1"}).stderr
    assert "recording run " in cli("import", str(run_folder), "--db", url, **{LOCK_TIMEOUT_VAR: "1"}).stderr


def test_a_statement_cut_short(url: str, locked: psycopg.Connection) -> None:
    done = cli("history", "--db", url, **{LOCK_TIMEOUT_VAR: "30", STATEMENT_TIMEOUT_VAR: "1"})
    assert done.returncode == 2 and "\n" not in done.stderr.strip()
    assert "reading the run history ran longer than 1 s and was cancelled" in done.stderr and STATEMENT_TIMEOUT_VAR in done.stderr


def test_after_the_lock_is_released_all_is_well(url: str, pg_server: PgServer, run_folder: Path) -> None:
    with psycopg.connect(host="127.0.0.1", port=pg_server.port, user="postgres", dbname=url.rsplit("/", 1)[1]) as conn:
        conn.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        conn.rollback()
    done = cli("import", str(run_folder), "--db", url)
    assert (done.returncode, done.stdout) == (0, f"imported: {run_folder}\n"), done.stderr


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a server that hangs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def test_a_server_that_does_not_answer(silent_server: int, run_folder: Path) -> None:
    url = f"postgresql://qc:s3cret@127.0.0.1:{silent_server}/qc"
    done = cli("history", "--db", url, **{CONNECT_TIMEOUT_VAR: "2"})
    assert done.returncode == 2 and "\n" not in done.stderr.strip() and "s3cret" not in done.stderr
    assert f"results database postgresql://qc:***@127.0.0.1:{silent_server}/qc: not reachable while opening it" in done.stderr
    assert "waited at most 2 s" in done.stderr and CONNECT_TIMEOUT_VAR in done.stderr
    said = register_start(run_folder, url)  # a run's start waits a few seconds at most, whatever the variables say
    assert said.startswith("not registered: ") and "not reachable while opening it" in said
    assert "waited at most 3 s" in said and "s3cret" not in said  # its cap, not the 10 s default


def test_a_vanished_host_is_noticed_by_tcp_keepalives(url: str) -> None:
    """libpq's keepalives and tcp_user_timeout on every connection: a host that vanishes mid-statement
    ends the wait within seconds instead of the operating system's hours."""
    names = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout")
    with ResultsStore(url, Timeouts(statement_s=30)) as store, store.engine.connect() as conn:
        params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    assert {k: params.get(k) for k in names} == {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
                                                 "keepalives_count": "3", "tcp_user_timeout": "30000"}
    with ResultsStore(url + "?keepalives_idle=30", Timeouts(statement_s=30)) as store, store.engine.connect() as conn:
        assert conn.connection.dbapi_connection.info.get_parameters()["keepalives_idle"] == "30"  # type: ignore[union-attr]  # the URL's own wins


def test_connection_refused(run_folder: Path) -> None:
    url = f"postgresql://qc@127.0.0.1:{free_port()}/qc"
    with pytest.raises(UserError, match=r"not reachable while opening it \(.*(refused|failed)"):
        ResultsStore(url)
    assert register_start(run_folder, url).startswith("not registered: ")


def test_postgresql_urls_mean_psycopg_3(url: str) -> None:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with ResultsStore(plain) as store:
        assert store.engine.dialect.driver == "psycopg" and store.history() == []
        assert store.key == url  # the same database, however it is spelt
    with ResultsStore(url.replace("postgresql+psycopg://", "postgres://")) as store:
        assert store.engine.dialect.driver == "psycopg"


def test_without_the_driver_one_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails, as without the extra
    with pytest.raises(UserError, match=r'^results database postgresql://qc@db.example/qc: PostgreSQL needs the psycopg driver: '
                                        r'pip install "microscope-qc-harness\[postgres\]"$'):
        ResultsStore("postgresql://qc@db.example/qc")


def test_bad_timeout_variables_are_named(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_VAR, "soon")
    with pytest.raises(UserError, match=f"^{LOCK_TIMEOUT_VAR}='soon': not a number of seconds above 0$"):
        ResultsStore(url)
