"""The contract of a protocol step kind, run side: its preflight checks and its execution.

A step kind's executor is one module in ``harness/run/steps/`` defining a ``StepExecutor`` under the
key of its protocol-side ``StepKind`` (``harness/protocol/steps/``), registered in
``harness/run/steps/__init__.py``.

When each part is called:
- ``check(action, check)``: by ``preflight.check_plan``, once per action of the expanded plan, in
  order, before anything moves (no device is commanded). A problem is reported with
  ``check.add(line, text)``; it raises nothing. ``check_end(check)`` once after the last action.
- ``execute(action, run)``: by the runner, once per action, after the ``step`` journal record. It
  commands devices through ``run.retry`` (``DeviceError`` after the protocol's retries), writes data
  through ``run.open_series``/``run.open_stack`` inside ``run.whole_record()``, records what it did with
  ``run.journal``, and may raise ``DeviceError``, ``UserError``, ``TooManyMissing`` (via
  ``run.count_missing``), ``DiskFull``/``OSError``; Ctrl-C arrives as ``KeyboardInterrupt`` or
  ``Terminated``. Any of these ends the run (``harness.run.runner``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from devices.errors import DeviceError
from harness.protocol.plan import Action
from harness.protocol.protocol_file import ProtocolFile
from harness.records.image_records import InstrumentInfo
from harness.records.journal import Journal
from harness.records.writers import FrameWriter, SeriesWriter
from harness.run.station_facts import StationFacts

T = TypeVar("T")

ROW_BYTES = 400  # one reading: a CSV row and its journal line
FRAME_EXTRA_BYTES = 1500  # one frame besides its pixels: frame log row, journal line, OME-XML plane
ASSUMED_SENSOR = (2048, 2048)  # for the data estimate when the camera's sensor is not known


@dataclass
class RunState:
    """What the steps have set so far in a run (the devices are not asked again)."""

    setpoints_mw: dict[str, float] = field(default_factory=dict)
    emitting: set[str] = field(default_factory=set)
    meter_wavelength_nm: float | None = None
    averaging: int | None = None
    marks: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: int = 0


class Console(Protocol):
    """The operator, if there is one."""

    def confirm(self, prompt: str) -> bool:
        """Ask and wait for the operator (True), or False at once when nobody can be asked."""
        ...


class StepRun(Protocol):
    """What a running run offers a step's ``execute`` (implemented by ``harness.run.runner.Runner``)."""

    station: Any  # harness.station.station.Station
    clock: Any  # the station's clock (real or virtual)
    state: RunState
    protocol: ProtocolFile
    protocol_path: Path  # for messages
    facts: StationFacts
    info: InstrumentInfo  # the OME instrument metadata of the run's stacks
    console: Console
    t0: float  # station time of the run's start

    @property
    def journal(self) -> Journal:
        """The run's journal (every action is recorded in it)."""
        ...

    def now(self) -> float:
        """Seconds since the run's start (station time)."""
        ...

    def retry(self, what: str, fn: Callable[[], T]) -> tuple[T, int]:
        """``fn()`` and the attempt it succeeded on; ``DeviceError`` once the protocol's retries are spent."""
        ...

    def count_missing(self, what: str, exc: DeviceError) -> None:
        """One more reading or frame missing; ``TooManyMissing`` past the protocol's ``max_missing``."""
        ...

    def whole_record(self) -> AbstractContextManager[None]:
        """Ctrl-C/SIGTERM inside are raised at its end: a record's parts are written both or neither."""
        ...

    def progress(self, done_in_step_s: float, text: str) -> None:
        """How far this step is (station seconds of its estimate), for the progress display."""
        ...

    def open_series(self, name: str) -> SeriesWriter:
        """The run's power series ``name`` (opened on first use)."""
        ...

    def open_stack(self, name: str) -> tuple[FrameWriter, SeriesWriter]:
        """The run's image stack ``name`` and its frame log (opened on first use)."""
        ...

    def page(self, stack: FrameWriter, write: Callable[[], None], nbytes: int) -> None:
        """Run ``write`` (one page of ``stack``) only if ``nbytes`` fit on the disk; else ``DiskFull``."""
        ...


class PlanCheck:
    """What preflight offers a step's ``check``: the station's facts, the problems found so far, and
    what the steps before told (marks, camera binning, data volume)."""

    def __init__(self, path: Path, facts: StationFacts, problems: list[str]) -> None:
        self.path = path  # the protocol file, for messages
        self.facts = facts
        self.problems = problems
        self.marks: set[str] = set()  # positions marked so far
        self.binning = facts.camera.binning if facts.camera else 1  # the camera binning at this point
        self.data_bytes = 0.0  # data the plan writes so far
        self.lasers = {k: lf.label for k, lf in facts.lines.items()}
        self.memo: dict[str, Any] = {}  # a step kind's own notes across the plan (keyed by its kind)
        self._seen: set[str] = set()

    def add(self, line: int, text: str) -> None:
        """One problem at ``line`` of the protocol (the same message is said once)."""
        message = f"{self.path}:{line}: protocol: {text}"
        if message not in self._seen:
            self._seen.add(message)
            self.problems.append(message)


class StepExecutor(ABC):
    """How one step kind is checked against a station and run (see the module docstring)."""

    key: ClassVar[str]  # the step's YAML key, as in harness/protocol/steps

    def check(self, action: Action, check: PlanCheck) -> None:
        """Add every problem this action would meet on the station (default: none)."""
        return None

    def check_end(self, check: PlanCheck) -> None:
        """After the plan's last action: problems gathered across actions (default: none)."""
        return None

    @abstractmethod
    def execute(self, action: Action, run: StepRun) -> None:
        """Carry out the action on the station and record it."""


def context(action: Any) -> str:
    """`` (with line=488, size=300)`` for a message about an action inside a loop."""
    return f" (with {', '.join(f'{k}={v}' for k, v in action.context.items())})" if action.context else ""


def position(station: Any) -> dict[str, float]:
    """The stage position (µm) on the axes the station has."""
    pos: dict[str, float] = {}
    if station.xy_stage is not None:
        x, y = station.xy_stage.position_um()
        pos.update(x=x, y=y)
    if station.z_drive is not None:
        pos["z"] = station.z_drive.position_um()
    return pos


def lit_context(station: Any, state: RunState) -> dict[str, Any]:
    """The lines on and their set points, as the columns of a series or frame log row."""
    on = sorted(state.emitting, key=float)
    return {
        "lines_on": "+".join(on) or "none",
        "setpoint_mW": "+".join(f"{state.setpoints_mw.get(k, 0):.6g}" for k in on),
        "setpoint_pct_nominal": "+".join(
            f"{100 * state.setpoints_mw.get(k, 0) / n:.6g}" if (n := station.lasers[k].nominal_mw()) else "" for k in on
        ),
    }


@contextmanager
def lines_off(run: StepRun, keys: list[str], purpose: str, restore_on_error: bool) -> Iterator[None]:
    """Laser lines ``keys`` switched off (each with retries) for the operation inside, and back on
    after it; after an error only with ``restore_on_error`` (else the run's safe state follows)."""
    for key in keys:
        run.retry(f"emission off for {purpose}", _switch(run, key, False))
    ok = False
    try:
        yield
        ok = True
    finally:
        if ok or restore_on_error:
            for key in keys:
                run.retry("emission back on", _switch(run, key, True))


def _switch(run: StepRun, key: str, on: bool) -> Callable[[], None]:
    return lambda: run.station.lasers[key].set_emission(on)
