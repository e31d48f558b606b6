"""The ``Runner`` with this finishing pipeline as its finisher: what ``microscope-qc run`` (and so the
schedule service, which runs it) and the tests use to run a protocol to its end."""

from __future__ import annotations

from typing import Any

from harness.finishing.pipeline import finish
from harness.run.finisher import Finisher
from harness.run.runner import Runner

FINISHER: Finisher = finish  # the pipeline is what the runner expects of a finisher (checked by mypy)


class FinishingRunner(Runner):
    """``Runner(..., finisher=finish)``: analysis, report, store record (with ``store``), final status
    and manifest after the acquisition; everything else as ``harness.run.runner.Runner``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("finisher", FINISHER)
        super().__init__(*args, **kwargs)
