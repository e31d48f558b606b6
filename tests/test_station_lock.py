"""The station lock: real processes contending, stale locks (killed owner, pid reuse, corrupt file)
taken over, locks of other hosts left alone, waiting, and the messages a user sees."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import platformdirs
import psutil
import pytest

from harness.common.errors import UserError
from harness.station.station_lock import (
    CORRUPT_GRACE_S,
    LockDirError,
    OwnerInfo,
    StationBusy,
    StationLock,
    default_lock_dir,
    lock_file_name,
)

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from harness.station.station_lock import StationBusy, StationLock

    station, lock_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    lock = StationLock(station, lock_dir=lock_dir, purpose="run power-stability-short")
    if mode == "race":
        go, stop = Path(sys.argv[4]), Path(sys.argv[5])
        end = time.monotonic() + 30
        while not go.exists() and time.monotonic() < end:
            time.sleep(0.002)
        try:
            stale = lock.acquire()
        except StationBusy as busy:
            print("busy", busy.owner.pid, flush=True)
            sys.exit(0)
        print("won", "stale" if stale else "fresh", flush=True)
        while not stop.exists() and time.monotonic() < end:
            time.sleep(0.01)
        lock.release()
        sys.exit(0)
    lock.acquire()
    print("locked", flush=True)
    if mode == "hold":
        sys.stdin.readline()  # a line (or the end of stdin) releases
    else:
        time.sleep(float(mode))
    lock.release()
    print("released", flush=True)
    """
)


@pytest.fixture
def spawn() -> Iterator:
    children: list[subprocess.Popen] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def _spawn(*args: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        children.append(child)
        return child

    yield _spawn
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


def _line(child: subprocess.Popen) -> str:
    assert child.stdout is not None
    return child.stdout.readline().strip()


def _write_lock(path: Path, **fields: object) -> None:
    info = {"pid": os.getpid(), "create_time": psutil.Process().create_time(), "hostname": socket.gethostname(),
            "purpose": "old run", "started": "2024-01-01T00:00:00+00:00", "station": "Scope A", "token": "x"}
    info.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not psutil.pid_exists(child.pid)
    return child.pid


# -- real processes ----------------------------------------------------------------------------


def test_a_lock_held_by_another_process_makes_the_station_busy_until_released(tmp_path: Path, spawn) -> None:
    child = spawn("Scope A", str(tmp_path), "hold")
    assert _line(child) == "locked"
    lock = StationLock("Scope A", lock_dir=tmp_path, purpose="manual")
    with pytest.raises(StationBusy) as busy:
        lock.acquire()
    assert busy.value.owner.pid == child.pid
    assert busy.value.owner.purpose == "run power-stability-short"
    assert not lock.held

    child.stdin.write("\n")
    child.stdin.flush()
    assert _line(child) == "released"
    assert lock.acquire() is None
    assert lock.held
    lock.release()
    assert not lock.path.exists()


def test_waiting_succeeds_when_the_owner_releases(tmp_path: Path, spawn) -> None:
    child = spawn("Scope A", str(tmp_path), "0.8")
    assert _line(child) == "locked"
    seen: list[OwnerInfo] = []
    lock = StationLock("Scope A", lock_dir=tmp_path)
    assert lock.acquire(wait_s=20, poll_s=0.05, on_wait=seen.append) is None  # taken within the wait (how soon: load)
    assert [owner.pid for owner in seen] == [child.pid]  # called once, with the owner
    lock.release()


def test_waiting_gives_up_with_station_busy(tmp_path: Path, spawn) -> None:
    child = spawn("Scope A", str(tmp_path), "hold")
    assert _line(child) == "locked"
    seen: list[OwnerInfo] = []
    start = time.monotonic()
    with pytest.raises(StationBusy, match=r"still in use after waiting 0\.3 s"):
        StationLock("Scope A", lock_dir=tmp_path).acquire(wait_s=0.3, poll_s=0.05, on_wait=seen.append)
    assert time.monotonic() - start >= 0.3  # it waited as long as allowed (how much longer is load, not asserted)
    assert len(seen) == 1


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_processes_racing_for_a_free_or_stale_lock_have_exactly_one_winner(tmp_path: Path, spawn, stale: bool) -> None:
    lock_path = tmp_path / lock_file_name("Scope A")
    if stale:
        _write_lock(lock_path, pid=_dead_pid())
    go, stop = tmp_path / "go", tmp_path / "stop"
    children = [spawn("Scope A", str(tmp_path), "race", str(go), str(stop)) for _ in range(4)]
    time.sleep(0.5)  # let them start up and poll for the go file
    go.touch()
    results = {child.pid: _line(child) for child in children}
    winners = [pid for pid, line in results.items() if line.startswith("won")]
    assert len(winners) == 1, results
    assert results[winners[0]] == ("won stale" if stale else "won fresh")
    for pid, line in results.items():
        if pid != winners[0]:
            assert line == f"busy {winners[0]}"
    stop.touch()
    for child in children:
        child.wait(timeout=10)
    assert not lock_path.exists()


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tmp_path: Path, spawn) -> None:
    child = spawn("Scope A", str(tmp_path), "hold")
    assert _line(child) == "locked"
    child.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no chance to release
    child.wait(timeout=10)
    lock = StationLock("Scope A", lock_dir=tmp_path)
    assert lock.path.exists()
    stale = lock.acquire()
    assert stale is not None and lock.stale_removed is stale
    assert stale.owner.pid == child.pid
    assert "no longer running" in stale.reason
    assert f"from pid {child.pid}" in str(stale)
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert [p.name for p in tmp_path.iterdir() if ".stale-" in p.name] == []
    lock.release()


# -- stale or not, from the file's contents ------------------------------------------------------


def test_a_lock_of_a_pid_that_does_not_exist_is_taken_over(tmp_path: Path) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    pid = _dead_pid()
    _write_lock(lock.path, pid=pid)
    with lock:
        assert lock.stale_removed is not None and lock.stale_removed.owner.pid == pid


def test_pid_reuse_is_detected_by_the_create_time(tmp_path: Path) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    _write_lock(lock.path, create_time=psutil.Process().create_time() - 1000)  # our pid, another process
    stale = lock.acquire()
    assert stale is not None and "another process" in stale.reason
    lock.release()


def test_a_live_owner_with_the_same_create_time_is_not_stale(tmp_path: Path) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    _write_lock(lock.path)  # our own pid and create time: alive
    with pytest.raises(StationBusy):
        lock.acquire()
    assert lock.path.exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    _write_lock(lock.path, pid=_dead_pid(), hostname="other-pc.example")
    with pytest.raises(StationBusy) as busy:
        lock.acquire(wait_s=0.1, poll_s=0.05)
    message = str(busy.value)
    assert "on other-pc.example" in message
    assert "another computer" in message and "never removed automatically" in message
    assert "delete the lock file" in message
    assert lock.path.exists()


def test_the_busy_message_names_station_owner_purpose_and_file(tmp_path: Path) -> None:
    first = StationLock("Scope A", lock_dir=tmp_path, purpose="run power-stability-short")
    first.acquire()
    started = json.loads(first.path.read_text())["started"]
    with pytest.raises(StationBusy) as busy:
        StationLock("Scope A", lock_dir=tmp_path).acquire()
    message = str(busy.value)
    assert message == (
        f"station 'Scope A' is in use by pid {os.getpid()} on {socket.gethostname()} since {started} "
        f"(run power-stability-short) -- lock file {first.path}"
    )
    assert not isinstance(busy.value, UserError)
    assert busy.value.station == "Scope A" and busy.value.path == first.path
    first.release()


def test_the_lock_file_records_the_owner(tmp_path: Path) -> None:
    with StationLock("Scope A", lock_dir=tmp_path, purpose="run flat-field") as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid()
        assert info["create_time"] == pytest.approx(psutil.Process().create_time())
        assert info["hostname"] == socket.gethostname()
        assert info["purpose"] == "run flat-field"
        assert info["station"] == "Scope A"
        assert datetime.fromisoformat(info["started"]).utcoffset().total_seconds() == 0
        owner = lock.owner()
        assert owner is not None and owner.pid == os.getpid()
    assert lock.owner() is None


# -- corrupt lock files --------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"{garbage", b"", b"[1, 2]", b'{"pid": "seven", "hostname": "x"}', b"\xff\xfe"])
def test_a_corrupt_lock_file_is_busy_while_fresh_and_taken_over_when_old(tmp_path: Path, content: bytes) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    lock.lock_dir.mkdir(exist_ok=True)
    lock.path.write_bytes(content)
    with pytest.raises(StationBusy) as busy:
        lock.acquire()
    message = str(busy.value)
    assert "unreadable lock file" in message and str(lock.path) in message
    assert "\n" not in message and "Traceback" not in message
    assert f"untouched for {CORRUPT_GRACE_S:g} s" in message
    assert not busy.value.owner.readable

    old = time.time() - CORRUPT_GRACE_S - 5
    os.utime(lock.path, (old, old))
    stale = lock.acquire()
    assert stale is not None and "unreadable lock file" in stale.reason
    assert "unknown owner" in str(stale)
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()


# -- releasing, context manager, names, directory -------------------------------------------------


def test_release_only_deletes_a_lock_that_is_still_ours(tmp_path: Path) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    lock.acquire()
    _write_lock(lock.path, token="someone-else")
    lock.release()
    assert lock.path.exists() and not lock.held
    lock.release()  # not held: a no-op


def test_the_context_manager_releases_even_on_error(tmp_path: Path) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    with pytest.raises(ZeroDivisionError):
        with lock:
            assert lock.path.exists()
            raise ZeroDivisionError("an error inside the with block")
    assert not lock.path.exists() and not lock.held


def test_acquire_with_waiting_then_with_block_does_not_acquire_twice(tmp_path: Path) -> None:
    lock = StationLock("Scope A", lock_dir=tmp_path)
    lock.acquire(wait_s=1)
    with lock:
        assert lock.held
    assert not lock.path.exists()
    with pytest.raises(RuntimeError):
        lock.acquire()
        lock.acquire()
    lock.release()


def test_lock_file_names_are_safe_and_distinct() -> None:
    names = ["Scope A", "scope-a", "../../etc/passwd", "CON", "Mikroskop Ä/B:1*?", "", "x" * 300]
    files = [lock_file_name(n) for n in names]
    assert len(set(files)) == len(files)
    for name in files:
        assert name.endswith(".lock") and len(name) < 90
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
        assert not name.startswith(".")
    assert lock_file_name("CON").lower() != "con.lock"


def test_different_stations_do_not_block_each_other(tmp_path: Path) -> None:
    with StationLock("Scope A", lock_dir=tmp_path), StationLock("Scope B", lock_dir=tmp_path):
        pass


def test_the_default_lock_dir_is_per_user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICROSCOPE_QC_LOCK_DIR", raising=False)  # the caller's shared lock folder is not the default
    lock = StationLock("Scope A")  # constructing creates nothing
    assert lock.lock_dir == default_lock_dir()
    assert lock.lock_dir == Path(platformdirs.user_data_dir("microscope-qc")) / "locks"


def test_an_unusable_lock_dir_is_a_user_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(LockDirError, match="cannot create the lock directory") as error:
        StationLock("Scope A", lock_dir=not_a_dir).acquire()
    assert isinstance(error.value, UserError)
