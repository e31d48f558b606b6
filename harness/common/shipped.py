"""Shipped protocols and station files by name: ``run power-stability-short`` and ``--station
demo-micromanager`` find the files the package ships (``protocols/``, ``configs/``) when no file of
that name exists. A path that exists is always taken as it is; a bare name that is neither a file nor
shipped is refused with the shipped names and the closest one.

The functions are argparse types: a refusal is ``argparse.ArgumentTypeError`` (exit status 2)."""

from __future__ import annotations

import argparse
import difflib
from importlib import resources
from pathlib import Path

_SUFFIXES = (".yaml", ".yml")


def shipped(package: str, schedules: bool = True) -> dict[str, Path]:
    """Name (file name without ``.yaml``) -> file, of the YAML files a package ships; without the
    schedule files (a top-level ``schedule:`` key) and the facility policy (``policy:``) if
    ``schedules`` is false (station files only)."""
    files = {Path(f.name).stem: Path(str(f)) for f in resources.files(package).iterdir() if f.name.endswith(_SUFFIXES)}
    if not schedules:
        files = {k: f for k, f in files.items()
                 if not any(line.startswith(("schedule:", "policy:")) for line in f.read_text(encoding="utf-8").splitlines())}
    return files


def _resolve(text: str, kinds: dict[str, str]) -> Path:
    """``kinds``: package -> what its files are called in a message ("protocol"); a station file
    is never a schedule file."""
    path = Path(text)
    if path.exists() or len(path.parts) != 1:
        return path  # a path: taken as given (a missing one is reported by whoever reads it)
    name = path.stem if path.suffix in _SUFFIXES else path.name
    known: dict[str, Path] = {}
    for package in kinds:
        for stem, file in shipped(package, schedules=kinds[package] != "station file").items():
            known.setdefault(stem, file)
    if name in known:
        return known[name]
    what = " or ".join(kinds.values())
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise argparse.ArgumentTypeError(f"{text}: no such file, nor a shipped {what} of that name (shipped: {', '.join(sorted(known))}){hint}")


def protocol(text: str) -> Path:
    """A protocol file, or the name of a shipped protocol."""
    return _resolve(text, {"protocols": "protocol"})


def station(text: str) -> Path:
    """A station file, or the name of a shipped station file."""
    return _resolve(text, {"configs": "station file"})


def any_file(text: str) -> Path:
    """A protocol, station or schedule file, or the name of a shipped one (``validate``)."""
    return _resolve(text, {"protocols": "protocol", "configs": "station or schedule file"})
