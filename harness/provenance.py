"""What a run was made with: software versions (the tool and its git commit when run from a
checkout, Python, packages, MMCore and its device interface), host, OS, operator, file hashes."""

from __future__ import annotations

import getpass
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = (
    "microscope-qc-harness", "pymmcore-plus", "pymmcore", "mm-test-adapters", "pyvisa", "pyvisa-py",
    "numpy", "tifffile", "pyyaml", "pydantic", "ome-types", "lxml",
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_commit() -> dict[str, Any] | None:
    """The commit of the checkout the tool runs from (None when installed from a wheel)."""
    root = Path(__file__).resolve().parents[1]
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
