"""The ``Runner`` with this finishing pipeline as its finisher: what ``microscope-qc run`` (and so the
schedule service, which runs it) and the tests use to run a protocol to its end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.finishing.pipeline import finish, register_start
from harness.run.finisher import Finisher
from harness.run.runner import Runner, RunOutcome

FINISHER: Finisher = finish  # the pipeline is what the runner expects of a finisher (checked by mypy)


class FinishingRunner(Runner):
    """``Runner(..., finisher=finish)``: analysis, report, store record (with ``store``), final status
    and manifest after the acquisition; with ``store`` the run is in the results store as ``running``
    from its start (``pipeline.register_start``); everything else as ``harness.run.runner.Runner``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("finisher", FINISHER)
        super().__init__(*args, **kwargs)
        self.registered = ""  # what the results store said at the run's start

    def run(self, on_folder: Callable[[Path], None] | None = None, restore_signals: bool = True) -> RunOutcome:
        def started(folder: Path) -> None:
            self.registered = register_start(folder, self.store, self.db_url)
            if on_folder:
                on_folder(folder)

        return super().run(started, restore_signals)
