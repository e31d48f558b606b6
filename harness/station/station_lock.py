"""One run per station at a time, across processes: a manual run and a scheduled one must not collide.

A lock is a small JSON file naming its owner (pid, the process's create time, host, purpose, start
time), created atomically with ``O_CREAT | O_EXCL``. Every look at or change of a lock file happens
under a short-lived operating-system lock on a sibling ``.guard`` file (``flock`` on POSIX,
``msvcrt.locking`` on Windows); the kernel drops it when its process dies, so it can never go stale,
and two processes can never both take over the same stale lock.

Default directory: ``platformdirs.user_data_dir("microscope-qc")/locks`` -- a path derived from the
home directory alone, so an interactive run and a scheduled one of the same user find the same file
(``user_runtime_dir`` depends on a login session, which a cron or Task Scheduler job may lack, and is
emptied at logout). Files left behind by a crash or reboot are detected as stale and taken over.

Stale: the owner ran on this host and its pid is gone (or a zombie), or the pid now belongs to a
process with a different create time (pid reuse). A lock held on another host is never stale
automatically: we cannot see that host's processes. An unreadable lock file (not our JSON) counts as
held while it is younger than ``CORRUPT_GRACE_S`` and as stale after that.

The owner record, its liveness and the OS lock are ``harness.common.process_owner``'s (shared with
recovery and run.json). ``acquire`` raises ``StationBusy`` (a live owner) or ``LockDirError`` (the
lock folder cannot be used); ``release`` never raises for a lock that is no longer ours.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import platformdirs

from harness.common.errors import UserError
from harness.common.process_owner import GONE, liveness, same_host, this_process, try_lock, unlock
from harness.common.safe_paths import inside

log = logging.getLogger(__name__)

APP_NAME = "microscope-qc"
CORRUPT_GRACE_S = 60.0
"""An unreadable lock file younger than this is treated as held, older as stale."""
GUARD_TIMEOUT_S = 10.0


class StationBusy(Exception):
    """The station is in use by another run (not a user mistake); ``str()`` is the whole message."""

    def __init__(self, message: str, station: str, owner: OwnerInfo, path: Path) -> None:
        super().__init__(message)
        self.station = station
        self.owner = owner
        self.path = path


class LockDirError(UserError):
    """The lock directory cannot be used (not writable, not creatable, a guard that never frees)."""


@dataclass(frozen=True)
class OwnerInfo:
    """Who holds a lock, as written in its file; ``readable`` is False for a corrupt file."""

    pid: int | None = None
    create_time: float | None = None
    hostname: str | None = None
    purpose: str = ""
    started: str | None = None
    station: str | None = None
    token: str | None = None
    readable: bool = True
    problem: str = ""

    def describe(self) -> str:
        """``pid N on HOST since T (purpose)``, or why the owner is unknown."""
        if not self.readable:
            return f"an unknown owner (unreadable lock file: {self.problem})"
        text = f"pid {self.pid} on {self.hostname} since {self.started or 'an unknown time'}"
        return f"{text} ({self.purpose})" if self.purpose else text


@dataclass(frozen=True)
class StaleLock:
    """A stale lock that ``acquire`` removed before taking the station; ``str()`` is a log line."""

    station: str
    path: Path
    owner: OwnerInfo
    reason: str

    def __str__(self) -> str:
        who = f"pid {self.owner.pid}" if self.owner.readable else "an unknown owner"
        return f"removed a stale lock on station '{self.station}' from {who} ({self.reason}) -- lock file {self.path}"


LOCK_DIR_ENV = "MICROSCOPE_QC_LOCK_DIR"


def default_lock_dir() -> Path:
    """``$MICROSCOPE_QC_LOCK_DIR`` if set (a folder every account that uses the microscope can
    write, so runs of different users exclude each other), else the user's data folder."""
    shared = os.environ.get(LOCK_DIR_ENV)
    if shared:
        return Path(shared)
    return Path(platformdirs.user_data_dir(APP_NAME)) / "locks"  # next to the results database


def lock_file_name(station_name: str) -> str:
    """A safe, unique file name: a readable slug plus a hash of the exact station name."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", station_name.lower()).strip("-._")[:60] or "station"
    digest = hashlib.sha256(station_name.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}.lock"


def _parse(raw: bytes) -> OwnerInfo:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return OwnerInfo(readable=False, problem="not JSON" if raw.strip() else "empty")
    if not isinstance(data, dict):
        return OwnerInfo(readable=False, problem="not a JSON object")
    pid, ctime = data.get("pid"), data.get("create_time")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return OwnerInfo(readable=False, problem="no valid pid")
    if not isinstance(data.get("hostname"), str):
        return OwnerInfo(readable=False, problem="no hostname")
    if ctime is not None and (not isinstance(ctime, (int, float)) or isinstance(ctime, bool) or not math.isfinite(ctime)):
        return OwnerInfo(readable=False, problem="invalid create_time")

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    return OwnerInfo(pid, None if ctime is None else float(ctime), data["hostname"], text("purpose") or "",
                     started=text("started"), station=text("station"), token=text("token"))


class StationLock:
    """The lock of one station. ``acquire`` it (or use ``with``), ``release`` when the run ends.

    ``with lock:`` acquires without waiting unless the lock is already held by this object, so a
    caller that wants to wait does ``lock.acquire(wait_s=..., on_wait=...)`` and then ``with lock:``.
    """

    def __init__(self, station_name: str, lock_dir: str | os.PathLike[str] | None = None, purpose: str = "") -> None:
        self.station = station_name
        self.purpose = purpose
        self.lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
        self.path = inside(self.lock_dir, lock_file_name(station_name))
        self.guard_path = self.path.with_name(self.path.name + ".guard")
        self.stale_removed: StaleLock | None = None
        self._token: str | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock (as far as it knows)."""
        return self._token is not None

    # -- acquiring -----------------------------------------------------------------------------

    def acquire(
        self,
        wait_s: float = 0.0,
        poll_s: float = 0.5,
        on_wait: Callable[[OwnerInfo], None] | None = None,
    ) -> StaleLock | None:
        """Take the lock, waiting up to ``wait_s`` seconds (``math.inf``: forever) for a live owner.

        ``on_wait(owner)`` is called once, when waiting starts. Returns the stale lock that was
        removed to take the station (also kept in ``stale_removed``), else None. Raises
        ``StationBusy`` if the station is still in use when the wait ends, ``LockDirError`` if the
        lock directory cannot be used."""
        if self.held:
            raise RuntimeError(f"station lock {self.path} is already held by this object")
        deadline = time.monotonic() + max(0.0, wait_s)
        waiting = False
        while True:
            owner = self._try_acquire()
            if owner is None:
                if self.stale_removed is not None:
                    log.warning("%s", self.stale_removed)
                return self.stale_removed
            if time.monotonic() >= deadline:
                raise self._busy(owner, waited_s=wait_s if waiting else 0.0)
            if not waiting:
                waiting = True
                if on_wait is not None:
                    on_wait(owner)
            time.sleep(max(0.01, min(poll_s, deadline - time.monotonic())))

    def _try_acquire(self) -> OwnerInfo | None:
        """One attempt: None if we now hold the lock, else the live owner."""
        self.stale_removed = None
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LockDirError(f"cannot create the lock directory {self.lock_dir}: {error.strerror or error}") from None
        with self._guard():
            while True:
                if self._create():
                    return None
                raw = self._read()
                if raw is None:  # vanished between our attempt and the read: try again
                    continue
                owner = _parse(raw)
                reason = self._stale_reason(owner)
                if reason is None:
                    return owner
                self._remove_stale()
                self.stale_removed = StaleLock(self.station, self.path, owner, reason)

    def _create(self) -> bool:
        token = uuid.uuid4().hex
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise LockDirError(f"cannot create the lock file {self.path}: {error.strerror or error}") from None
        info = {
            **this_process().as_dict(),
            "purpose": self.purpose,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "station": self.station,
            "token": token,
        }
        try:
            try:
                os.write(fd, json.dumps(info, indent=1).encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            self.path.unlink(missing_ok=True)
            raise LockDirError(f"cannot write the lock file {self.path}: {error.strerror or error}") from None
        self._token = token
        return True

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise LockDirError(f"cannot read the lock file {self.path}: {error.strerror or error}") from None

    def _stale_reason(self, owner: OwnerInfo) -> str | None:
        """Why the lock is stale, or None if it must be taken as held."""
        if not owner.readable:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return "lock file vanished"
            if abs(age) < CORRUPT_GRACE_S:
                return None
            return f"unreadable lock file ({owner.problem}), untouched for {age:.0f} s"
        assert owner.pid is not None
        state, why = liveness(owner.pid, owner.create_time, owner.hostname)
        return why if state == GONE else None  # another host's lock is never stale automatically

    def _remove_stale(self) -> None:
        """Move the stale file to a unique name, then delete it (under the guard)."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as error:
            raise LockDirError(f"cannot remove the stale lock file {self.path}: {error.strerror or error}") from None
        try:
            os.unlink(aside)
        except OSError:
            log.warning("could not delete %s (a stale station lock moved aside)", aside)

    def _busy(self, owner: OwnerInfo, waited_s: float) -> StationBusy:
        message = f"station '{self.station}' is in use by {owner.describe()} -- lock file {self.path}"
        if waited_s > 0:
            message += f" (still in use after waiting {waited_s:g} s)"
        if owner.readable and not same_host(owner.hostname):
            message += (
                f"; the lock belongs to another computer ({owner.hostname}), whose processes this one cannot "
                "check, so it is never removed automatically: if no run is going on there, delete the lock file"
            )
        elif not owner.readable:
            message += f"; it is taken over once untouched for {CORRUPT_GRACE_S:g} s, or delete it"
        return StationBusy(message, self.station, owner, self.path)

    # -- releasing -----------------------------------------------------------------------------

    def release(self) -> None:
        """Delete the lock file if it is still ours; a no-op if we do not hold the lock."""
        token, self._token = self._token, None
        if token is None:
            return
        with self._guard():
            raw = self._read()
            if raw is None or _parse(raw).token != token:
                log.warning("station lock %s is no longer ours; left as it is", self.path)
                return
            try:
                os.unlink(self.path)
            except OSError as error:
                raise LockDirError(f"cannot delete the lock file {self.path}: {error.strerror or error}") from None

    def owner(self) -> OwnerInfo | None:
        """Who holds the lock now (None if nobody)."""
        with self._guard():
            raw = self._read()
        return None if raw is None else _parse(raw)

    def __enter__(self) -> StationLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- the guard -----------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the OS lock on the guard file (for milliseconds: only while looking at the lock)."""
        try:
            fd = os.open(self.guard_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
            if os.name == "posix":
                try:  # a shared lock folder: the next account must open it too, whatever our umask
                    os.fchmod(fd, 0o666)
                except OSError:
                    pass  # created by another account: theirs to set
        except PermissionError:
            if os.name != "posix":
                raise LockDirError(f"cannot open {self.guard_path}: permission denied") from None
            try:  # flock needs no write access: another account's guard file is usable read-only
                fd = os.open(self.guard_path, os.O_RDONLY)
            except OSError as error:
                raise LockDirError(f"cannot open {self.guard_path}: {error.strerror or error}") from None
        except OSError as error:
            raise LockDirError(f"cannot open {self.guard_path}: {error.strerror or error}") from None
        try:
            deadline = time.monotonic() + GUARD_TIMEOUT_S
            while not self._try_os_lock(fd):
                if time.monotonic() > deadline:
                    raise LockDirError(
                        f"{self.guard_path} stayed locked for {GUARD_TIMEOUT_S:g} s; is a process stopped while checking the lock?"
                    )
                time.sleep(0.01)
            try:
                yield
            finally:
                unlock(fd)
        finally:
            os.close(fd)

    def _try_os_lock(self, fd: int) -> bool:
        try:
            return try_lock(fd)
        except OSError as error:
            raise LockDirError(f"cannot lock {self.guard_path}: {error.strerror or error}") from None
