"""The process that owns something (a station lock, a run folder) and whether it is still there, and
the operating-system file lock that guards a look at an owner.

An owner is named by three facts: its pid, the create time of that process (so that a pid reused by
a later process is not taken for the owner) and the host it runs on (a process of another host
cannot be seen from here). They are written as ``{"pid", "create_time", "hostname"}``: in a station
lock file and in run.json's ``process`` field.

Contract:
- ``this_process()``: the owner record of the calling process (``as_dict()`` is what is written).
- ``liveness(pid, create_time, hostname)``: ``(ALIVE | GONE | OTHER_HOST, why)``. GONE: the pid is not
  running on this host, is a zombie, or belongs to a process whose create time differs by more than
  ``CREATE_TIME_TOLERANCE_S`` (defined here only). A process we may not inspect counts as ALIVE.
  Never raises for a vanished process.
- ``try_lock(fd)`` / ``unlock(fd)``: a non-blocking exclusive OS lock on an open file (``flock`` on
  POSIX, ``msvcrt.locking`` of its first byte on Windows); the kernel drops it when the process dies,
  so it never goes stale. ``try_lock`` is False when another process holds it; other ``OSError`` are raised.
- ``folder_lock(folder)``: a context manager, True while this process alone holds ``folder``'s lock
  (``flock`` on the folder itself, POSIX only; on Windows always True: not guarded).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

CREATE_TIME_TOLERANCE_S = 0.5
"""Create times of one process read at two moments differ by less than this (clock rounding)."""
ALIVE, GONE, OTHER_HOST = "alive", "gone", "other host"


@dataclass(frozen=True)
class ProcessOwner:
    """pid, the process's create time (seconds since the epoch) and the host name."""

    pid: int
    create_time: float
    hostname: str

    def as_dict(self) -> dict[str, Any]:
        """What run.json's ``process`` field and a lock file hold."""
        return {"pid": self.pid, "create_time": self.create_time, "hostname": self.hostname}


def hostname() -> str:
    """This host's name, as owners record it."""
    return socket.gethostname()


def same_host(name: str | None) -> bool:
    """True if an owner's recorded host is this one (host names compare without case)."""
    return isinstance(name, str) and name.casefold() == hostname().casefold()


def create_time_of(pid: int) -> float:
    """The create time of process ``pid`` (raises ``psutil.NoSuchProcess`` if there is none)."""
    return psutil.Process(pid).create_time()


def this_process() -> ProcessOwner:
    """The owner record of the calling process."""
    pid = os.getpid()
    return ProcessOwner(pid, create_time_of(pid), hostname())


def liveness(pid: int, create_time: float | None, host: str | None) -> tuple[str, str]:
    """Whether the owner ``pid`` (started at ``create_time``, None: not known) on ``host`` is still
    running: ``(ALIVE | GONE | OTHER_HOST, a sentence saying why)``."""
    if not same_host(host):
        return OTHER_HOST, f"owned by pid {pid} on host {host}, whose processes cannot be seen from here"
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return GONE, f"pid {pid} has exited"
        started = process.create_time()
    except psutil.NoSuchProcess:
        return GONE, f"pid {pid} is no longer running"
    except psutil.AccessDenied:  # alive, and we cannot check it: assume it is the owner
        return ALIVE, f"pid {pid} is running (not ours to inspect)"
    if create_time is not None and abs(started - create_time) > CREATE_TIME_TOLERANCE_S:
        return GONE, f"pid {pid} now belongs to another process (started at a different time)"
    return ALIVE, f"pid {pid} is still running"


if sys.platform == "win32":
    import msvcrt

    def try_lock(fd: int) -> bool:
        """Lock the file ``fd`` without waiting; False if another process holds it."""
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as error:  # EACCES: held by another process
            if error.errno in (errno.EACCES, errno.EDEADLK, getattr(errno, "EDEADLOCK", errno.EDEADLK)):
                return False
            raise
        return True

    def unlock(fd: int) -> None:
        """Release the lock ``try_lock`` took."""
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Lock the file ``fd`` without waiting; False if another process holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(fd: int) -> None:
        """Release the lock ``try_lock`` took."""
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[bool]:
    """True while this process alone holds ``folder`` (POSIX: ``flock`` on the folder; Windows cannot
    open a folder for locking: always True, two holders at once are not guarded there)."""
    if sys.platform == "win32":
        yield True
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        yield try_lock(fd)
    finally:
        os.close(fd)  # releases the lock
