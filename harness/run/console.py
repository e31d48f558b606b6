"""The run's console, injected into the runner: the operator prompt and the progress display.

- ``TerminalConsole(assume_yes)`` is the ``Console`` of ``harness.run.steps.base``: ``confirm`` asks on
  the terminal (``input``) when standard input is a terminal and ``assume_yes`` is not set; else it
  returns False at once (an unattended run).
- ``ProgressFactory``: builds the progress display for a run of ``total_s`` station seconds
  (``Progress`` of ``harness.run.progress``, or anything with ``update(done_s, text)`` and ``close()``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol


class ProgressDisplay(Protocol):
    def update(self, done_s: float, step: str) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[float], ProgressDisplay]


class TerminalConsole:
    def __init__(self, assume_yes: bool = False) -> None:
        self.assume_yes = assume_yes

    def confirm(self, prompt: str) -> bool:
        if sys.stdin.isatty() and not self.assume_yes:
            input(prompt)
            return True
        return False
