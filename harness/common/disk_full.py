"""A full disk is a documented ending, not a crash.

Contract:
- ``is_disk_full(exc)``: the exception (or one it was raised from or during) is ``ENOSPC`` or
  ``EDQUOT`` (a quota is a full disk for the user).
- ``DiskFull``: an ``OSError`` (``ENOSPC``) that names the file that could not be written; the
  journal, the series CSVs and the runner raise it so that the message can say which file.
- ``message(path, folder)``: the one line a user sees:
  ``disk full: <path>: no space left on device; data so far kept in <folder>``.
- ``append_whole(fd, data)``: appends ``data`` to a file opened for appending, all of it or none
  of it: a write cut short by a full disk is cut off again (``ftruncate``, which needs no space),
  so that a line written after space was freed never lands on a fragment (readers would drop the
  merged line as partial).
- ``check_room(path, need)``: raises ``DiskFull`` before a large write (an image page) that would
  not fit, so that a full disk seldom cuts a page short.
- ``SpaceReserve``: a few MB held in the run folder (``.space-reserve``) while the run writes;
  released when the run ends, so that its ending (journal, run.json, analysis, manifest) can still
  be written when the data filled the disk. A leftover reserve (a killed run) is removed by
  recovery (``remove_leftover``) and never listed in the manifest.

How a run ends on a full disk (``runner.py``): the measurement stops, devices go to their safe state,
the reserve is released, and the run ends ``failed`` with the reason ``disk full: ...`` (exit 4);
every reading and frame on disk is kept. If even then a file cannot be finished (a page cut short, an
XML that did not fit, run.json), ``run.json`` keeps saying ``running`` and the run process ends:
``microscope-qc recover`` finishes the folder once space is freed (its journal's ``run_end`` says
``failed``, disk full). A run that could not create its folder, journal or run.json is ``not
started`` (exit 5) and leaves no folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path
from typing import TextIO

FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 8 * 1024 * 1024  # run.json, journal lines, results, report and manifest of a run fit in this
PAGE_MARGIN_BYTES = 1024 * 1024  # free space kept beyond an image page before it is written


class DiskFull(OSError):
    """No space left for ``path``; ``str()`` is the message without the folder."""

    def __init__(self, path: str | Path, detail: str = "no space left on device") -> None:
        super().__init__(errno.ENOSPC, detail, str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        return f"disk full: {self.path}: {self.strerror}"


def is_disk_full(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def full_path(exc: BaseException, default: str | Path | None = None) -> Path | None:
    """The file a disk-full error names (or ``default``)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DiskFull):
            return e.path
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS and e.filename:
            return Path(e.filename)
        e = e.__cause__ or e.__context__
    return Path(default) if default is not None else None


def message(path: str | Path | None, folder: str | Path | None = None) -> str:
    text = f"disk full: {path if path is not None else '(a file)'}: no space left on device"
    return text + (f"; data so far kept in {folder}" if folder is not None else "")


def append_whole(fd: int, data: bytes, size: int) -> int:
    """Append ``data`` at ``size`` (the file's length); the new length. On an error the file is cut
    back to ``size`` and the error raised."""
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.ENOSPC, "no space left on device")
            view = view[n:]
    except OSError:
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass
        raise
    return size + len(data)


def free_bytes(path: str | Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def check_room(path: Path, need: int) -> None:
    """``DiskFull`` for ``path`` unless ``need`` bytes and a margin are free where it is written."""
    free = free_bytes(path.parent)
    if free is not None and free < need + PAGE_MARGIN_BYTES:
        raise DiskFull(path, f"no space left on device ({free} bytes free, {need} needed)")


class SpaceReserve:
    """Space held for a run's ending (see the module's doc)."""

    def __init__(self, folder: Path, size: int = RESERVE_BYTES) -> None:
        self.path = folder / RESERVE_NAME
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except (AttributeError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
                    raise
                append_whole(fd, b"\0" * size, 0)  # no fallocate here: real zeros hold the space
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise DiskFull(self.path) from None
        os.close(fd)

    def release(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def remove_leftover(folder: Path) -> bool:
    """Remove the reserve a killed run left in ``folder``; True if there was one."""
    path = folder / RESERVE_NAME
    if path.is_file():
        path.unlink()
        return True
    return False


def show_unwritten(runner: object, stream: TextIO | None = None) -> None:
    """Say on stderr what a run's journal could not write (the disk stayed full): the record is
    then at least in the log of whoever ran it."""
    journal = getattr(runner, "journal", None)
    lines = list(getattr(journal, "unwritten", []) or [])
    if not lines:
        return
    out = stream or sys.stderr
    print(f"journal records that could not be written to {getattr(journal, 'path', '?')} (disk full):", file=out)
    for line in lines:
        print(f"  {line}", file=out)
