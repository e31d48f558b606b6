"""Run a protocol on a station: execute the plan on the station's clock, record everything, and end
cleanly however the run ends.

(About 440 lines: the run's ending -- safe state, files finalized, ``run.json``, the finisher --
is about 130 of them; it stays with the loop whose every exit path it serves.)

Contract:
- ``Runner(station, protocol, ...)``: ``protocol`` is a path or an already read ``ProtocolSource``
  (``load_protocol``/``protocol_from_text``: its text and path are what the run records). Each plan
  action is carried out by its step kind's executor (``harness/run/steps``); data go through the
  writers named ``frame_writer``/``series_writer`` (``harness.records.writers``). The operator prompt
  (``console``) and the progress display (``progress``) are injected (defaults: the terminal).
- Before anything moves, the plan is preflighted against the loaded station (``harness.run.preflight``):
  a protocol that cannot run raises ``PreflightFailed`` with every problem, and no run folder is made.
- Every action is journaled as it happens; readings go to series CSVs and frames to OME-TIFF
  stacks as they arrive.
- A retryable device error (timeout, garbled reply, late frame) is retried as the protocol's
  ``retries`` allow; a reading or frame that still fails is recorded as missing at its own index,
  and the run fails once more than ``max_missing`` are missing. Any other device error fails the run.
- Ctrl-C (SIGINT) or SIGTERM aborts the run (``signals.py``); a frame's page and its frame-log row
  (a sample and its CSV row) are written both or neither.
- Whatever happens, devices go to their safe state, files are finalized (OME-XML matching the
  frames on disk), the journal gets ``run_end`` and ``run.json`` says ``finishing`` with the
  acquisition's status and reason; then the finisher its caller handed in (``finisher``, see
  ``harness.run.finisher``; the finishing pipeline ``harness.finishing``: analysis, results
  store with ``store``, final status, ``MANIFEST.sha256`` over every file) runs, with Ctrl-C and
  SIGTERM ignored. A kill during finishing is completed by ``recover``.
- A completed run ends ``failed`` if its safe state is not confirmed (``run.json`` ``safe_state``:
  ``confirmed: false``, the outcome ``unsafe``, see ``endings.py``) or a file cannot be finalized
  (e.g. the disk is full): its data are then not complete.
- A full disk (``disk_full.py``) ends the run ``failed`` with the reason ``disk full: <file>: no space
  left on device; data so far kept in <folder>``; a space reserve held in the run folder is released
  for its ending. A file that still cannot be finished leaves ``run.json`` at ``running`` for
  ``recover`` (``left_for_recovery``). No room for the run folder, journal or run.json: not started
  (``PreconditionFailed``), no folder left.
- The analysis never fails the run's data: its failure is recorded in ``results.json`` (status
  ``analysis failed``) and the outcome is ``analysis failed``.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from devices.errors import DeviceError
from harness.common import kill_points
from harness.common.disk_full import DiskFull, SpaceReserve, check_room, full_path, is_disk_full
from harness.common.disk_full import message as disk_full_message
from harness.common.errors import UserError
from harness.common.process_owner import this_process
from harness.protocol.plan import Action, Plan, expand
from harness.protocol.protocol_file import ProtocolFile, ProtocolSource, load_protocol
from harness.records.endings import FINISHING
from harness.records.endings import outcome as ending_outcome
from harness.records.image_records import FRAME_COLUMNS, InstrumentInfo
from harness.records.journal import Journal
from harness.records.manifest import frame_log_entry, series_entry, stack_entry
from harness.records.provenance import default_operator, host, sha256_file, sha256_text, software
from harness.records.run_folder import RunFolder
from harness.records.run_record import write_run
from harness.records.writers import FrameWriter, SeriesWriter, frame_path, open_frame_writer, open_series_writer, series_path
from harness.run.console import ProgressDisplay, ProgressFactory, TerminalConsole
from harness.run.finisher import Finisher
from harness.run.folders import make_run_folder, run_folder_name
from harness.run.instrument_info import instrument_info, run_provenance
from harness.run.preflight import check_plan, station_facts
from harness.run.progress import Progress
from harness.run.retries import MissingCount, Retrier, TooManyMissing
from harness.run.signals import SignalGuard, Terminated
from harness.run.steps import EXECUTORS
from harness.run.steps.base import Console, RunState
from harness.station.run_guard import PreconditionFailed
from harness.station.station import Station

__all__ = ["RunOutcome", "Runner", "Terminated", "TooManyMissing"]

T = TypeVar("T")


@dataclass
class RunOutcome:
    folder: Path
    status: str  # completed | aborted | failed
    reason: str = ""
    safe_state_confirmed: bool = True
    analysis_error: str = ""

    @property
    def outcome(self) -> str:
        """One word for how it ended (``endings.py``): completed, analysis failed, failed, aborted, unsafe."""
        return ending_outcome(self.status, self.safe_state_confirmed, bool(self.analysis_error))


class Runner:
    def __init__(
        self,
        station: Station,
        protocol: str | Path | ProtocolSource,
        runs_dir: str | Path = "runs",
        operator: str | None = None,
        quiet: bool = False,
        assume_yes: bool = False,
        progress_stream: Any = None,
        store: bool = False,
        db_url: str | None = None,
        job_tag: dict[str, Any] | None = None,
        console: Console | None = None,
        progress: ProgressFactory | None = None,
        frame_writer: str = "ome-tiff",
        series_writer: str = "csv",
        finisher: Finisher | None = None,
    ) -> None:
        self.station = station
        self.source = protocol if isinstance(protocol, ProtocolSource) else load_protocol(protocol)
        self.protocol: ProtocolFile = self.source.protocol
        self.doc = self.source.doc
        self.protocol_path = self.source.path
        self.plan: Plan = expand(self.protocol, self.doc, sorted(station.lasers, key=float), station.spec.instrument.optics())
        self.runs_dir = Path(runs_dir)
        # everything that can be known before anything moves (harness.run.preflight); all problems at once
        self.facts = station_facts(station)
        self.preflight = check_plan(self.protocol, self.doc, self.plan, self.facts, self.runs_dir)
        self.preflight.raise_if_failed()
        self.operator = operator or default_operator()
        self.quiet = quiet
        self.assume_yes = assume_yes
        self.console: Console = console or TerminalConsole(assume_yes)
        self.progress_stream = progress_stream
        self.progress_factory: ProgressFactory = progress or self._terminal_progress
        self.frame_writer, self.series_writer = frame_writer, series_writer
        self.clock = station.clock
        self.state = RunState()
        self.series: dict[str, SeriesWriter] = {}
        self.stacks: dict[str, FrameWriter] = {}
        self.frame_logs: dict[str, SeriesWriter] = {}
        self.run_id = str(uuid.uuid4())
        self.folder: Path | None = None
        self._journal: Journal | None = None
        self.info: InstrumentInfo  # set when the run starts
        self.t0 = 0.0  # station time of the run's start, set when it starts
        self.results: dict[str, Any] | None = None
        self.analysis_error = ""
        self.store, self.db_url, self.job_tag = store, db_url, job_tag
        self.stored = "not recorded"
        self.safe_state: dict[str, Any] = {"confirmed": None, "failures": []}
        self.reserve: SpaceReserve | None = None
        self.torn: set[str] = set()  # stacks whose last page a full disk may have cut short
        self.left_for_recovery = False  # a full disk kept a file from being finished: `recover` ends the run
        self.finisher = finisher  # None: run.json is left `finishing`, for `recover`
        self.signals = SignalGuard()
        self.missing = MissingCount(self.protocol.max_missing)
        self._progress: ProgressDisplay | None = None
        self._done = 0.0  # station seconds of the plan's estimate done before the current action

    def _terminal_progress(self, total_s: float) -> ProgressDisplay:
        return Progress(total_s, quiet=self.quiet, stream=self.progress_stream)

    @property
    def journal(self) -> Journal:
        if self._journal is None:  # an AttributeError: getattr(runner, "journal", None) stays None
            raise AttributeError("the run has not started: no journal yet")
        return self._journal

    # --- the run ----------------------------------------------------------------------------------
    def _make_folder(self) -> Path:
        name = run_folder_name(self.clock.utc(), self.protocol.protocol, self.station.name, self.run_id)
        return make_run_folder(self.runs_dir, name)

    def run(self, on_folder: Callable[[Path], None] | None = None, restore_signals: bool = True) -> RunOutcome:
        """The whole run, finishing included (the ``finisher``: analysis, store record with ``store``,
        manifest). Ctrl-C and SIGTERM are ignored from the end of the acquisition until finishing is
        done; with ``restore_signals=False`` they stay ignored (the caller has more to finish: its
        outcome file), else the previous handlers come back."""
        self.folder = self._make_folder()
        try:
            self.reserve = SpaceReserve(self.folder)
            self._journal = journal = Journal(RunFolder(self.folder).journal)
            self.software = software(self.station.core)
            self.info = instrument_info(self.station, run_provenance(self.station, self.run_id, self.protocol, self.source.sha256, self.software,
                                                                     self.operator, sha256_file(self.station.path)))
            self.t0 = self.clock.now()
            self.started_utc = self.clock.utc(self.t0)  # station time: the wall clock on hardware, the scheduler's time on a virtual one
            self._write_run_json("running", "")
            journal.write("run_start", 0.0, sync=True, run_id=self.run_id, protocol=self.protocol.protocol, station=self.station.name,
                          actions=len(self.plan.actions), estimate_s=self.plan.estimate_s)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._not_started(exc)
        if on_folder:
            on_folder(self.folder)
        kill_points.reached("acquisition:started")
        self._progress = progress = self.progress_factory(self.plan.estimate_s)
        status, reason = "completed", ""
        previous = self.signals.install()
        gc.collect()
        gc.freeze()  # what exists now never needs collecting: fewer, shorter pauses while sampling
        try:
            for index, action in enumerate(self.plan.actions):
                journal.write("step", self.now(), index=index, kind=action.kind, line=action.line, context=action.context)
                self._execute(action)
                self._done += action.estimate_s
                progress.update(self._done, action.describe())
        except KeyboardInterrupt:
            status, reason = "aborted", "interrupted by the user (Ctrl-C)"
        except Terminated:
            status, reason = "aborted", "terminated (SIGTERM)"
        except DeviceError as exc:
            status, reason = "failed", f"device error: {exc}"
        except TooManyMissing as exc:
            status, reason = "failed", str(exc)
        except UserError as exc:
            status, reason = "failed", str(exc)
        except Exception as exc:  # a bug must still leave safe devices and readable files
            if is_disk_full(exc):
                status, reason = "failed", self._disk_full(exc)
            else:
                status, reason = "failed", f"internal error: {type(exc).__name__}: {exc}"
                journal.write("error", self.now(), traceback=traceback.format_exc())
        finally:
            self.signals.ignore()
            gc.unfreeze()
            progress.close()
            self._finish(status, reason)
            if restore_signals:
                self.signals.restore(previous)
        return RunOutcome(self.folder, self.status, self.reason, self.safe_state["confirmed"] is not False, self.analysis_error)

    def _execute(self, action: Action) -> None:
        EXECUTORS[action.kind].execute(action, self)

    # --- what a step may use (harness.run.steps.base.StepRun) ---------------------------------------
    def now(self) -> float:
        return float(self.clock.now() - self.t0)

    def retry(self, what: str, fn: Callable[[], T]) -> tuple[T, int]:
        return Retrier(self.protocol.retries, self.journal, self.clock, self.now)(what, fn)

    def count_missing(self, what: str, exc: DeviceError) -> None:
        self.missing.add(what, exc)
        self.state.missing = self.missing.missing

    def whole_record(self) -> contextlib.AbstractContextManager[None]:
        return self.signals.whole_record()

    def progress(self, done_in_step_s: float, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._done + done_in_step_s, text)

    def _folder(self) -> Path:
        assert self.folder is not None, "the run has not started"
        return self.folder

    def open_series(self, name: str) -> SeriesWriter:
        writer = self.series.get(name)
        if writer is None:
            path = series_path(self.series_writer, self._folder(), name)
            writer = self.series[name] = open_series_writer(self.series_writer, path)
        return writer

    def open_stack(self, name: str) -> tuple[FrameWriter, SeriesWriter]:
        stack = self.stacks.get(name)
        if stack is None:
            folder = self._folder()
            path = frame_path(self.frame_writer, folder, name)
            log_path = series_path(self.series_writer, folder, f"{name}_frames")
            stack = self.stacks[name] = open_frame_writer(self.frame_writer, path, self.plan.stacks[name], self.info, self.clock.utc(self.t0))
            self.frame_logs[name] = open_series_writer(self.series_writer, log_path, FRAME_COLUMNS)
        return stack, self.frame_logs[name]

    # --- a full disk (disk_full.py) ----------------------------------------------------------------
    def _not_started(self, exc: BaseException) -> None:
        """No room for the run's own records: nothing was done, no folder is left."""
        path = full_path(exc, self.folder)
        if self._journal is not None:
            self._journal.tolerant = True
            self._journal.close()
        shutil.rmtree(self._folder(), ignore_errors=True)
        raise PreconditionFailed(f"{disk_full_message(path)}; the run was not started") from None

    def _disk_full(self, exc: BaseException) -> str:
        """The reason of a run the disk filled under; the error journaled once the reserve is freed."""
        reason = disk_full_message(full_path(exc), self.folder)
        if self.reserve is not None:
            self.reserve.release()
        self.journal.tolerant = True
        self.journal.write("error", self.now(), sync=True, disk_full=True, message=reason)
        return reason

    def page(self, stack: FrameWriter, write: Callable[[], None], nbytes: int) -> None:
        """Write an image page only if it fits; a page a full disk cut short marks the stack torn."""
        check_room(stack.path, nbytes)
        try:
            write()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.torn.add(stack.plan.name)
            raise DiskFull(stack.path) from exc

    def _leave_torn(self, status: str, reason: str, failures: list[str]) -> bool:
        """A stack a full disk cut short cannot be finalized here: journal the end and leave run.json
        ``running`` for ``recover``, which rebuilds the stack from its pages once space is freed."""
        if not self.torn:
            return False
        for name in self.torn:
            self.stacks[name].abandon()
        reason = (reason + "; " if reason else "") + f"{', '.join(sorted(self.torn))} left for `microscope-qc recover` once space is freed"
        self.journal.write("run_end", self.now(), sync=True, status=status, reason=reason, missing=self.state.missing,
                           safe_state_confirmed=not failures)
        self.journal.close()
        self.left_for_recovery = True
        self.status, self.reason = status, reason
        return True

    # --- ending ----------------------------------------------------------------------------------
    def _finish(self, status: str, reason: str) -> None:
        assert self.journal is not None and self.folder is not None

        def also(text: str) -> None:
            nonlocal reason
            reason = (reason + "; " if reason else "") + text

        if self.reserve is not None:
            self.reserve.release()  # room for the ending, however full the data made the disk
        self.journal.tolerant = True  # what cannot be written stays in memory and is shown
        failures = self.station.safe_state()
        self.safe_state = {"confirmed": not failures, "failures": failures}
        self.journal.write("safe_state", self.now(), sync=True, confirmed=not failures, failures=failures)
        if failures:
            also("safe state NOT confirmed for: " + "; ".join(failures))
            if status == "completed":
                status = "failed"
        for writer in list(self.series.values()) + list(self.frame_logs.values()):
            try:
                writer.close()
            except OSError as exc:
                self.journal.write("error", self.now(), message=f"closing {writer.path.name}: {exc}")
                also(f"could not finish {writer.path.name}: {exc}")
                status = "failed" if status == "completed" else status
        for stack in self.stacks.values():
            if stack.plan.name in self.torn:
                continue
            try:
                stack.finalize()
            except Exception as exc:  # keep finalizing the others; say what went wrong
                self.journal.write("error", self.now(), message=f"finalizing {stack.path.name}: {exc}")
                also(f"could not finalize {stack.path.name}: {exc}")
                # the stack's metadata do not describe its pages: the measurement is not complete
                status = "failed" if status == "completed" else status
                if is_disk_full(exc):
                    self.torn.add(stack.plan.name)
        if self._leave_torn(status, reason, failures):
            return
        self.journal.write("run_end", self.now(), sync=True, status=status, reason=reason, missing=self.state.missing,
                           safe_state_confirmed=not failures)
        # the acquisition's outcome is recorded; the run is not `status` until its finishing is done
        self._write_run_json(FINISHING, "", acquisition={"status": status, "reason": reason})
        if self.left_for_recovery:  # a full disk kept run.json from saying so: `recover` finishes the run
            self.journal.close()
            self.status, self.reason = status, reason
            return
        if self.finisher is None:  # no pipeline handed in: `recover` finishes the run
            self.journal.close()
            self.status, self.reason = status, reason
            return
        kill_points.reached("finishing:start")
        done = self.finisher(self.folder, journal=self.journal, store=self.store, db_url=self.db_url)
        self.results, self.analysis_error, self.stored = done.results, done.analysis_error, done.stored
        self.status, self.reason = done.status, done.reason

    def _files(self) -> dict[str, Any]:
        assert self.folder is not None
        out: dict[str, Any] = {}
        for name, w in self.series.items():
            out[w.path.name] = series_entry(w.path, name, w.rows)
        for name, w in self.frame_logs.items():
            out[w.path.name] = frame_log_entry(w.path, name, w.rows)
        for name, s in self.stacks.items():
            if s.path.exists():
                real = sum(1 for p in s.planes if not p.status)
                out[s.path.name] = stack_entry(s.path, name, real, len(s.planes) - real, sum(s.plan.frames_per_channel.values()), s.finalized)
        return out

    def _write_run_json(self, status: str, reason: str, acquisition: dict[str, str] | None = None) -> None:
        assert self.folder is not None
        ended = self.clock.utc() if status != "running" else None
        if ended is not None:
            try:
                self._replace_run_json(status, reason, ended, acquisition)
            except OSError as exc:  # run.json keeps saying "running": `recover` ends the run from the journal
                if not is_disk_full(exc):
                    raise
                self.left_for_recovery = True
            return
        self._replace_run_json(status, reason, ended, acquisition)

    def _replace_run_json(self, status: str, reason: str, ended: datetime | None, acquisition: dict[str, str] | None = None) -> None:
        st = self.station
        spec = st.spec
        cfg = None
        if spec.micromanager.config:
            cfg_path = Path(spec.micromanager.config)
            cfg_path = cfg_path if cfg_path.is_absolute() else st.path.parent / cfg_path
            cfg = {"path": str(cfg_path), "sha256": sha256_file(cfg_path) if cfg_path.is_file() else None}
        protocol_text = self.source.text
        station_text = st.path.read_text(encoding="utf-8")
        data = {
            "run_id": self.run_id,
            "status": status,
            "reason": reason,
            "protocol": {
                "id": self.protocol.protocol, "title": self.protocol.title, "version": self.protocol.version,
                "path": str(self.protocol_path.resolve()), "sha256": sha256_text(protocol_text), "text": protocol_text,
                "resolved": self.protocol.model_dump(mode="json", by_alias=True),
                "plan": {"actions": len(self.plan.actions), "estimate_s": self.plan.estimate_s, "lines": self.plan.lines,
                         "optics": self.plan.optics.as_dict() if self.plan.optics else None,
                         "stacks": {n: {"channels": s.channels, "frames": s.frames_per_channel,
                                        **({"z_planes": s.z_planes, "z_step_um": s.z_step_um} if s.z_planes > 1 else {})}
                                    for n, s in self.plan.stacks.items()}},
            },
            "station": {
                "name": st.name, "path": str(st.path.resolve()), "sha256": sha256_text(station_text), "text": station_text,
                "micromanager_config": cfg, "simulated": st.sim is not None,
                "seed": st.sim.world.seed if st.sim else None,
            },
            "clock": {"mode": "virtual" if self.clock.virtual else "real", "time_scale": self.clock.time_scale, "elapsed_s": self.now()},
            "software": self.software,
            "host": host(),
            "operator": self.operator,
            "devices": {label: {"role": st.role_of(label), **ident.as_dict()} for label, ident in st.identities.items()},
            "started_utc": self.started_utc.isoformat(),
            "ended_utc": ended.isoformat() if ended else None,
            "missing": self.state.missing,
            "safe_state": self.safe_state,
            "files": self._files(),
            # the owner, so that `recover` can tell a run whose process died (kill -9, power loss) from a live one
            "process": this_process().as_dict(),
        }
        if acquisition is not None:
            data["acquisition"] = acquisition
        if self.job_tag:
            data["scheduled"] = self.job_tag  # which job and due time of a schedule this run is (the service reconciles with it)
        write_run(self._folder(), data)
