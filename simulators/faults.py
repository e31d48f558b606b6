"""Fault injection: decides, command by command, whether a configured fault fires now."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from .params import FaultSpec


class FaultInjector:
    """Counts the commands a simulated device serves and reports which fault (if any) fires.

    A fault is armed once its trigger is met (``after_commands`` commands served, or virtual time
    ``at_s`` reached) and then fires on each following command of a kind it applies to, ``times``
    times (0: for ever). Every firing is logged in ``fired`` for tests and ground truth.
    """

    def __init__(self, specs: Iterable[FaultSpec], now: Callable[[], float]) -> None:
        self._specs = list(specs)
        self._remaining = [s.times if s.times > 0 else -1 for s in self._specs]
        self._now = now
        self._lock = threading.Lock()
        self.commands = 0
        self.fired: list[tuple[float, int, str]] = []

    def next_command(self, kinds: Iterable[str]) -> FaultSpec | None:
        """Count one command; return the fault among ``kinds`` that fires on it, if any."""
        wanted = set(kinds)
        with self._lock:
            index = self.commands
            self.commands += 1
            t = self._now()
            for i, spec in enumerate(self._specs):
                if spec.kind not in wanted or self._remaining[i] == 0:
                    continue
                armed = (spec.after_commands is not None and index >= spec.after_commands) or (
                    spec.at_s is not None and t >= spec.at_s
                )
                if armed:
                    if self._remaining[i] > 0:
                        self._remaining[i] -= 1
                    self.fired.append((t, index, spec.kind))
                    return spec
        return None

    def arm(self, spec: FaultSpec) -> None:
        """Add a fault while the device runs; ``after_commands`` counts from now."""
        with self._lock:
            if spec.after_commands is not None:
                spec = spec.model_copy(update={"after_commands": self.commands + spec.after_commands})
            self._specs.append(spec)
            self._remaining.append(spec.times if spec.times > 0 else -1)
