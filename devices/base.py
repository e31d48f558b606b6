"""The contract every driver adds to its Micro-Manager device class: who it is (``identity``) and how
to make it harmless (``safe_state``: emission off, acquisition stopped), called on every exit path.

``QCDriver`` is an abstract base class: a driver class that does not define both methods cannot be
instantiated (``TypeError`` naming the missing methods), so no driver inherits a ``safe_state`` that
does nothing. The pymmcore-plus device classes are ABCs too, so the two combine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from .identity import DeviceIdentity

T = TypeVar("T")


def constant(value: T) -> Callable[[], T]:
    """A getter that always returns ``value`` (for read-only identity properties)."""
    return lambda: value


class QCDriver(ABC):
    """Mixin for drivers. Subclasses also derive from a pymmcore-plus unicore device class."""

    @abstractmethod
    def identity(self) -> DeviceIdentity:
        """Identity read from the device (model, serial, firmware)."""

    @abstractmethod
    def safe_state(self) -> None:
        """Put the device into a state that cannot harm anyone or anything. Must not raise for a
        device that is already safe; may raise ``DeviceError`` if the device cannot be reached."""

    def add_property(
        self,
        name: str,
        kind: type,
        getter: Callable[[], Any] | None = None,
        setter: Callable[[Any], None] | None = None,
        *,
        default: Any = None,
        pre_init: bool = False,
        allowed: list[Any] | None = None,
    ) -> None:
        """Register a Micro-Manager property backed by plain callables."""
        self.register_property(  # type: ignore[attr-defined]
            name,
            default_value=default,
            getter=(lambda dev: getter()) if getter else None,
            setter=(lambda dev, v: setter(v)) if setter else None,
            is_read_only=setter is None and getter is not None,
            is_pre_init=pre_init,
            property_type=kind,
            allowed_values=allowed,
        )
