"""Ctrl-C (SIGINT) and SIGTERM during a run.

- ``SignalGuard.install()`` (main thread only; elsewhere it does nothing): SIGINT raises
  ``KeyboardInterrupt``, SIGTERM ``Terminated`` in the acquisition; returns the previous handlers.
- ``whole_record()``: a signal arriving inside is raised only at its end (nesting allowed), so a
  frame's page and its frame-log row (a sample and its CSV row) are written both or neither.
- ``ignore()``: from the end of the acquisition on, both are ignored (files are being finalized);
  ``restore(previous)`` puts the earlier handlers back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(BaseException):
    """SIGTERM: the run is aborted like Ctrl-C."""


class SignalGuard:
    def __init__(self) -> None:
        self._held = 0  # inside whole_record: Ctrl-C/SIGTERM wait for the record's end
        self._pending: BaseException | None = None

    def install(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: Any) -> None:
            exc: BaseException = KeyboardInterrupt() if signum == signal.SIGINT else Terminated()
            if self._held:
                self._pending = self._pending or exc  # raised when the record is whole
                return
            raise exc

        previous: dict[int, Any] = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.getsignal(signal.SIGTERM)}
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        return previous

    @contextmanager
    def whole_record(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM arriving inside is raised only at its end: a frame's page and its frame-log
        row (or a sample and its CSV row) are written both or neither."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held and self._pending is not None:
            exc, self._pending = self._pending, None
            raise exc

    @staticmethod
    def ignore() -> None:
        """While files are finalized, a second Ctrl-C must not cut that short."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, lambda s, f: None)
            signal.signal(signal.SIGTERM, lambda s, f: None)

    @staticmethod
    def restore(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
