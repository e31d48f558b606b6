"""The one process-owner helper of the station lock, recovery and run.json: who owns something, whether
that process is still there, and the OS lock on a folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.common.process_owner import ALIVE, CREATE_TIME_TOLERANCE_S, GONE, OTHER_HOST, folder_lock, liveness, this_process

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast


def test_this_process_is_alive_and_a_reused_pid_or_another_host_is_not_taken_for_it() -> None:
    me = this_process()
    assert set(me.as_dict()) == {"pid", "create_time", "hostname"}
    assert liveness(me.pid, me.create_time, me.hostname)[0] == ALIVE
    assert liveness(me.pid, None, me.hostname.upper())[0] == ALIVE  # host names compare without case
    state, why = liveness(me.pid, me.create_time - 10 * CREATE_TIME_TOLERANCE_S - 60, me.hostname)
    assert state == GONE and "another process" in why
    assert liveness(me.pid, me.create_time, "elsewhere.example")[0] == OTHER_HOST


def test_an_ended_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    state, why = liveness(child.pid, None, this_process().hostname)
    assert state == GONE and str(child.pid) in why


@pytest.mark.skipif(sys.platform == "win32", reason="a folder cannot be locked on Windows")
def test_a_folder_lock_is_held_by_one_holder_at_a_time(tmp_path: Path) -> None:
    with folder_lock(tmp_path) as first:
        assert first
        with folder_lock(tmp_path) as second:  # another open file: flock excludes it even in this process
            assert not second
    with folder_lock(tmp_path) as again:
        assert again
