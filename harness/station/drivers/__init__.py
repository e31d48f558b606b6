"""The registry of driver kinds: every ``driver:`` a station file may name.

A new driver is its module in this package (its entry model, how it is loaded, how it is
simulated: the contract is ``harness.station.drivers.base.DriverKind``) plus its registration here:
its module on the import line and its kind as one line in ``KINDS``. The station file's ``devices``
union (``harness.station.station_file.DeviceEntry``), the roles each driver may fill, the simulated
world's tables and the loading of a station all come from here.

The order of ``KINDS`` is the order of the station JSON schema's ``oneOf`` (schemas/station.schema.json).
``driver_kind`` raises ``KeyError`` for a name that is not registered (a validated station file
names registered drivers only). A kind whose entry does not match its name, or a name registered
twice, raises ``TypeError`` at import.
"""

from __future__ import annotations

from typing import Any, get_args

from harness.station.drivers import coherent_obis, micromanager, simulated_stages, thorlabs_pm100, thorlabs_tsi
from harness.station.drivers.base import DeviceEntryBase, DriverKind

KINDS: tuple[DriverKind[Any], ...] = (
    thorlabs_pm100.KIND,
    coherent_obis.KIND,
    thorlabs_tsi.KIND,
    simulated_stages.XY_KIND,
    simulated_stages.Z_KIND,
    micromanager.KIND,
)


def _checked(kinds: tuple[DriverKind[Any], ...]) -> dict[str, DriverKind[Any]]:
    """The kinds by name; a kind whose entry does not carry ``driver: Literal[name]``, or a name
    registered twice, is a programming error (``TypeError``), found at import."""
    by_name: dict[str, DriverKind[Any]] = {}
    for kind in kinds:
        field = kind.entry.model_fields.get("driver")
        if not issubclass(kind.entry, DeviceEntryBase) or field is None or get_args(field.annotation) != (kind.name,):
            raise TypeError(f"driver kind {type(kind).__name__}: its entry {kind.entry.__name__} must be a DeviceEntryBase "
                            f"with the field driver: Literal[{kind.name!r}]")
        if kind.name in by_name:
            raise TypeError(f"driver {kind.name!r} is registered twice")
        by_name[kind.name] = kind
    return by_name


_BY_NAME = _checked(KINDS)


def driver_kind(name: str) -> DriverKind[Any]:
    """The registered kind of ``driver: name`` (KeyError if none)."""
    return _BY_NAME[name]


def entry_models() -> tuple[type[DeviceEntryBase], ...]:
    """The entry models of every registered driver, in registration order."""
    return tuple(kind.entry for kind in KINDS)


def role_drivers(role: str) -> tuple[str, ...]:
    """The drivers whose devices can fill ``role`` (C++ devices, which can fill any, not included)."""
    return tuple(kind.name for kind in KINDS if kind.roles is not None and role in kind.roles)
