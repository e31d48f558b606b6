"""A scaled clock: the one time base shared by every simulated device (and by the harness).

``now()`` is virtual seconds since the clock started. With ``time_scale`` 1000 a virtual hour passes
in 3.6 real seconds; every simulated dynamic (warm-up, drift, settle, exposure, meter averaging)
reads this clock, so timestamps stay physically consistent however fast the station runs.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone


_SPIN_S = 0.0015


class ScaledClock:
    """Monotonic time, optionally running faster than real time."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self._t0 = time.monotonic()
        self.started_utc = datetime.now(timezone.utc)

    def now(self) -> float:
        """Virtual seconds since the clock started."""
        return (time.monotonic() - self._t0) * self.time_scale

    def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of virtual time."""
        if seconds > 0:
            time.sleep(seconds / self.time_scale)

    def sleep_until(self, t: float) -> None:
        """Sleep until virtual time ``t`` (returns at once if it has passed), to about 0.1 ms of
        real time: a coarse sleep, then a short spin for the last millisecond and a half."""
        while True:
            remaining = (t - self.now()) / self.time_scale
            if remaining <= 0:
                return
            if remaining > _SPIN_S:  # the last stretch is spun: OS timers overshoot
                time.sleep(remaining - _SPIN_S)

    def utc(self, t: float | None = None) -> datetime:
        """The UTC date-time that virtual time ``t`` (default: now) stands for."""
        return self.started_utc + timedelta(seconds=self.now() if t is None else t)
