"""Device operations with the protocol's retries, and the count of readings/frames missing.

- ``Retrier(rule, journal, clock, now)(what, fn)``: ``(fn(), attempt)``; every ``DeviceError`` is
  journaled (``device_error``, synced); a retryable one is tried again after ``rule.delay`` (station
  time) up to ``rule.attempts`` tries; the last error, or the first not retryable, is raised.
- ``MissingCount(max_missing).add(what, exc)``: one more missing; ``TooManyMissing`` past the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from devices.errors import DeviceError
from harness.protocol.protocol_file import RetryRule
from harness.records.journal import Journal

T = TypeVar("T")


class TooManyMissing(Exception):
    pass


class Retrier:
    def __init__(self, rule: RetryRule, journal: Journal, clock: Any, now: Callable[[], float]) -> None:
        self.rule, self.journal, self.clock, self.now = rule, journal, clock, now

    def __call__(self, what: str, fn: Callable[[], T]) -> tuple[T, int]:
        rule = self.rule
        for attempt in range(1, rule.attempts + 1):
            try:
                return fn(), attempt
            except DeviceError as exc:
                self.journal.write("device_error", self.now(), sync=True, operation=what, attempt=attempt, device=exc.device,
                                   error=type(exc).__name__, message=exc.detail, retryable=exc.retryable)
                if not exc.retryable or attempt == rule.attempts:
                    raise
                self.clock.sleep(rule.delay)
        raise AssertionError("unreachable")


class MissingCount:
    def __init__(self, max_missing: int) -> None:
        self.max_missing = max_missing
        self.missing = 0

    def add(self, what: str, exc: DeviceError) -> None:
        self.missing += 1
        if self.missing > self.max_missing:
            raise TooManyMissing(f"{what} failed ({exc}); {self.missing} missing, more than the protocol's max_missing of {self.max_missing}")
