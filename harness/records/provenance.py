"""What a run was made with: software versions (the tool and its git commit when run from a
checkout, Python, packages, MMCore and its device interface), host, OS, operator, file hashes.

File hashes (``sha256_file``) are computed once per process for each content of a file: a run
asks for the hash of a stack when it lists its files in run.json, when analysis checks that the
files are still what the run recorded, and when the manifest is written; the file is read once
(and once more after the QC annotations changed it). A digest is reused only while the file's
``stat`` is exactly what it was when it was hashed (device, inode, size, mtime_ns and ctime_ns: a
write, a rename over it, ``touch`` or ``chmod`` changes one of them; on Linux and macOS ctime is
the time of the last change, which no user can set). A write within the same tick of the file
system's clock as the one before could leave them all unchanged, so a digest is kept only when the
file's last change lies more than a tick (a few ms) before the read began, and a file changed
within the last tick is read once the tick is over (git's "racy clean" rule): any later write then
shows in mtime or ctime. Never kept (read at every call): a file that changed while it was read,
files whose timestamps are whole seconds (file systems with coarse timestamps) or lie in the
future (a network file system whose clock is ahead of ours). Not seen: on Windows, where ctime is
the creation time, a write of the same size that then puts the old mtime back. The digests live
in the process's memory (at most 4096 paths); a new process, such as ``recover`` after a crash,
reads every file anew.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import __version__

PACKAGES = (
    "microscope-qc-harness", "pymmcore-plus", "pymmcore", "mm-test-adapters", "pyvisa", "pyvisa-py",
    "numpy", "tifffile", "pyyaml", "pydantic", "ome-types", "lxml",
)


def _sha256_read(path: Path) -> str:
    """The one place a file is read for its hash (the tests count calls to it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tick_ns() -> int:
    """How far a file timestamp can lag the clock: the coarse clock's resolution on Linux (file
    times come from it), else 20 ms (Windows' tick is 15.6 ms); plus 1 ms."""
    try:
        res = time.clock_getres(5) if sys.platform.startswith("linux") else 0.02  # 5: CLOCK_REALTIME_COARSE
    except OSError:
        res = 0.02
    return int(min(max(res, 1e-6), 0.1) * 1e9) + 1_000_000


_TICK_NS = _tick_ns()
_HASHES: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()
_HASHES_MAX = 4096
_HASHES_LOCK = threading.Lock()


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_file(path: Path) -> str:
    """sha256 of the file's content (hex); the file is read once per content per process (see the
    module's doc for when a digest is reused)."""
    name = os.path.abspath(path)
    key = _stat_key(os.stat(path))
    with _HASHES_LOCK:
        hit = _HASHES.get(name)
        if hit is not None and hit[0] == key:
            _HASHES.move_to_end(name)
            return hit[1]
    changed = max(key[3], key[4])
    cacheable = changed % 1_000_000_000 != 0  # whole seconds: a file system with coarse timestamps
    wait = changed + _TICK_NS - time.time_ns()
    if cacheable and 0 < wait <= _TICK_NS:  # changed within the last tick: wait it out (at most a few ms)
        time.sleep(wait / 1e9)
    start = time.time_ns()
    digest = _sha256_read(Path(path))
    if cacheable and changed + _TICK_NS <= start and _stat_key(os.stat(path)) == key:
        with _HASHES_LOCK:
            _HASHES[name] = (key, digest)
            _HASHES.move_to_end(name)
            while len(_HASHES) > _HASHES_MAX:
                _HASHES.popitem(last=False)
    return digest


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_commit() -> dict[str, Any] | None:
    """The commit of the checkout the tool runs from (None when installed from a wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def software(core: Any) -> dict[str, Any]:
    return {
        "tool": "microscope-qc-harness",
        "version": __version__,
        "git": git_commit(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "mmcore": core.getVersionInfo(),
        "device_interface": core.getAPIVersionInfo(),
    }


def host() -> dict[str, str]:
    return {"hostname": platform.node(), "os": platform.platform(), "machine": platform.machine()}


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (service accounts)
        return "unknown"
