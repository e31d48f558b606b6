"""Live progress on the terminal: a bar, percent, ETA (real time, from the pace so far) and the
current step. Quiet mode prints nothing; a non-terminal gets a plain line every 10 %."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _hms(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total_s: float, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.total_s = max(total_s, 1e-9)
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, done_s: float, step: str) -> None:
        if self.quiet:
            return
        fraction = min(max(done_s / self.total_s, 0.0), 1.0)
        now = time.monotonic()
        elapsed = now - self._t0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.001 else float("nan")
        eta_text = _hms(eta) if eta == eta else "--:--:--"
        if self.tty:
            if now - self._last_draw < 0.1 and fraction < 1:
                return
            self._last_draw = now
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\r[{bar:<30}] {fraction * 100:5.1f}%  ETA {eta_text}  {step[:60]:<60}")
            self.stream.flush()
        else:
            decile = int(fraction * 10)
            if decile > self._last_decile:
                self._last_decile = decile
                self.stream.write(f"{fraction * 100:5.1f}%  ETA {eta_text}  {step}\n")
                self.stream.flush()

    def close(self) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\n")
            self.stream.flush()
