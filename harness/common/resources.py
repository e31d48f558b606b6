"""Where the shipped data lives (station files, protocols, Micro-Manager adapters)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from harness.common.errors import UserError

MM_TEST_ADAPTERS = "mm-test-adapters"


def shipped_config(name: str) -> Path:
    return Path(str(resources.files("configs").joinpath(name)))


def default_station() -> Path:
    """The embedded simulated station."""
    return shipped_config("simulated.yaml")


def adapter_folder(entry: str, relative_to: Path) -> Path:
    """An adapter folder named in a station file; ``mm-test-adapters`` is the PyPI package's."""
    if entry == MM_TEST_ADAPTERS:
        try:
            import mm_test_adapters  # optional: only a station that names its adapters needs the package
        except ImportError:
            raise UserError("the station needs the 'mm-test-adapters' package: pip install mm-test-adapters") from None
        return Path(mm_test_adapters.device_adapter_path())
    path = Path(entry)
    return path if path.is_absolute() else (relative_to / path)
