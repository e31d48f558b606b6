"""Argument types and cross-option checks of the command line: a value out of range, or an option
that has no effect without another, is refused (one message, exit status 2) before anything is
touched, instead of being ignored or reaching a device.

Each type is a callable for ``add_argument(type=...)``: argparse shows its message as
``argument --exposure-ms: must be > 0, got 0``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.common.errors import UserError


def _number(text: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: a finite number is needed")
    return value


def finite(text: str) -> float:
    return _number(text)


def positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def utc_datetime(text: str) -> datetime:
    """An ISO 8601 date-time with its offset, e.g. ``2026-12-05T20:00:00+01:00``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time (e.g. 2026-12-05T20:00:00+01:00)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time of day and its offset from UTC (e.g. 2026-12-05T20:00:00+01:00 or ...Z)")
    if not EARLIEST_CLOCK_START <= value <= LATEST_CLOCK_START:
        raise argparse.ArgumentTypeError(f"{text!r}: a date-time between {EARLIEST_CLOCK_START:%Y-%m-%d} and {LATEST_CLOCK_START:%Y-%m-%d} is needed")
    return value


# a station clock starts in these years: run folders and dates stay four-digit, and a run of up to
# a few years of station time stays inside what Python's dates can hold
EARLIEST_CLOCK_START = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_CLOCK_START = datetime(2200, 1, 1, tzinfo=timezone.utc)


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def at_least(minimum: int) -> Callable[[str], int]:
    def whole(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return whole


def needs(args: argparse.Namespace, option: str, *dependents: str) -> None:
    """Refuse the ``dependents`` (dest names, default None) that were given although ``option`` was
    not: without it they would do nothing."""
    if getattr(args, option) in (None, False, []):
        for dest in dependents:
            if getattr(args, dest) is not None and getattr(args, dest) is not False:
                raise UserError(f"{_flag(dest)} only applies together with {_flag(option)}")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def output_file(text: str) -> Path:
    """A file the command writes: not an existing folder, in a folder that exists."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist (create it first, or give another path)")
    return path


def output_folder(text: str) -> Path:
    """A folder the command writes into (created if missing): not an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    return path


def excludes(args: argparse.Namespace, option: str, *others: str) -> None:
    """Refuse the ``others`` given together with ``option`` (a flag): with it they would do nothing."""
    if getattr(args, option):
        for dest in others:
            if getattr(args, dest) is not None:
                raise UserError(f"{_flag(dest)} has no effect with {_flag(option)}")
