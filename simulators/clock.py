"""The one clock interface shared by a station (its devices and simulators) and the scheduler.

Every clock measures *station time*: seconds since the clock started (``now()``), mapped to UTC
by ``utc()``/``at()``. Three kinds:

- ``WallClock``: real time (real hardware, the unattended service).
- ``ScaledClock``: real time run ``time_scale`` times faster (demonstrations, real-time benchmarks,
  simulated stations mixed with Micro-Manager adapters that take real time).
- ``VirtualClock``: discrete-event time. It advances only when someone waits on it (``sleep``,
  ``sleep_until``), when a device model spends modelled time (meter averaging, exposure and
  read-out, command latency: ``sleep``), and when a poller waits for a busy device (``poll``: the
  stage is asked whether its move is done, so time passes to the end of the move). A run's data then
  depend on its inputs and seed only, never on how busy the machine is. Waits return at once.

Contract shared by all three (``Clock``):

- ``now()``: station seconds; monotonic.
- ``sleep(s)`` / ``sleep_until(t, stop=None)``: wait ``s`` station seconds / until station time
  ``t`` (at once if past). ``stop`` (a ``threading.Event``) ends a real wait early.
- ``poll(t_done)``: a poller asks about something that ends at ``t_done``. A virtual clock jumps
  there (the poller is waiting for it); a real clock does nothing (time passes by itself).
- ``advance(s)``: move a virtual clock forward by ``s`` (e.g. the station time a run in another
  process took); a real clock ignores it.
- ``utc(t=None)`` / ``at(when)``: the UTC date-time of station time ``t`` (default now), and back.
- ``virtual`` (bool), ``time_scale`` (None for virtual time), ``describe()`` for people.

A virtual clock is thread-safe, but it is deterministic only if its users take turns, as the
harness and its simulated devices do (the harness waits for each device's reply).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

_SPIN_S = 0.0015
_REAL_WAIT_SLICE_S = 30.0  # an interruptible real wait wakes this often at most


@runtime_checkable
class Clock(Protocol):
    """What the harness, the scheduler and the simulators need from time (see the module contract)."""

    virtual: bool
    time_scale: float | None

    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def sleep_until(self, t: float, stop: threading.Event | None = None) -> None: ...
    def poll(self, t_done: float) -> None: ...
    def advance(self, seconds: float) -> None: ...
    def utc(self, t: float | None = None) -> datetime: ...
    def at(self, when: datetime) -> float: ...
    def describe(self) -> str: ...


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise ValueError("a clock's start time must carry a time zone")
    return when.astimezone(timezone.utc)


class ScaledClock:
    """Real time, optionally running ``time_scale`` times faster; ``start_utc`` is the UTC date-time
    of station time 0 (default: now)."""

    virtual = False

    def __init__(self, time_scale: float = 1.0, start_utc: datetime | None = None) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.time_scale: float | None = float(time_scale)
        self._scale = float(time_scale)
        self._t0 = time.monotonic()
        self.started_utc = _utc(start_utc)

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self._scale

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self._scale)

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> None:
        """To about 0.1 ms of real time: a coarse sleep, then a short spin for the last
        millisecond and a half (OS timers overshoot). With ``stop``, an interruptible wait."""
        while True:
            remaining = (t - self.now()) / self._scale
            if remaining <= 0:
                return
            if stop is not None:
                if stop.wait(min(remaining, _REAL_WAIT_SLICE_S)):
                    return
            elif remaining > _SPIN_S:
                time.sleep(remaining - _SPIN_S)

    def poll(self, t_done: float) -> None:
        """Real time passes by itself."""

    def advance(self, seconds: float) -> None:
        """Real time passes by itself."""

    def utc(self, t: float | None = None) -> datetime:
        return self.started_utc + timedelta(seconds=self.now() if t is None else t)

    def at(self, when: datetime) -> float:
        return (_utc(when) - self.started_utc).total_seconds()

    def describe(self) -> str:
        return "real time" if self._scale == 1 else f"real time x{self._scale:g}"


class WallClock(ScaledClock):
    """Real time (real hardware, the unattended service). ``now()`` is monotonic (sampling deadlines
    never jump); ``utc()``/``at()`` map through the calendar clock as it reads at the moment of the
    call, so a date-time (a job due at 02:00) stays right after the system clock is corrected."""

    def __init__(self, start_utc: datetime | None = None) -> None:
        super().__init__(1.0, start_utc)

    def utc(self, t: float | None = None) -> datetime:
        calendar = datetime.now(timezone.utc)
        return calendar if t is None else calendar + timedelta(seconds=t - self.now())

    def at(self, when: datetime) -> float:
        return self.now() + (_utc(when) - datetime.now(timezone.utc)).total_seconds()


class VirtualClock:
    """Discrete-event time: it moves only by ``sleep``, ``sleep_until``, ``poll`` and ``advance``,
    and every wait returns at once. ``on_time`` (if given) is called with the new UTC date-time
    whenever a wait or an advance moves the clock (tests change the world there)."""

    virtual = True
    time_scale: float | None = None

    def __init__(self, start_utc: datetime | None = None, on_time: Callable[[datetime], None] | None = None) -> None:
        self.started_utc = _utc(start_utc)
        self.on_time = on_time
        self._t = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._t

    def _move_to(self, t: float) -> None:
        with self._lock:
            if t <= self._t:
                return
            self._t = t
        if self.on_time is not None:
            self.on_time(self.utc())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._t += seconds
            if self.on_time is not None:
                self.on_time(self.utc())

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> None:
        self._move_to(t)

    def poll(self, t_done: float) -> None:
        self._move_to(t_done)

    def advance(self, seconds: float) -> None:
        self.sleep(max(seconds, 0.0))

    def utc(self, t: float | None = None) -> datetime:
        return self.started_utc + timedelta(seconds=self._t if t is None else t)

    def at(self, when: datetime) -> float:
        return (_utc(when) - self.started_utc).total_seconds()

    def describe(self) -> str:
        return "virtual time"
