"""Run a protocol on a station: execute the plan on the station's clock, record everything, and end
cleanly however the run ends.

Contract:
- Before anything moves, the plan is preflighted against the loaded station (``harness.run.preflight``):
  a protocol that cannot run raises ``PreflightFailed`` with every problem, and no run folder is made.
- Every action is journaled as it happens; readings go to series CSVs and frames to OME-TIFF
  stacks as they arrive.
- A retryable device error (timeout, garbled reply, late frame) is retried as the protocol's
  ``retries`` allow; a reading or frame that still fails is recorded as missing at its own index,
  and the run fails once more than ``max_missing`` are missing. Any other device error fails the run.
- Ctrl-C (SIGINT) or SIGTERM aborts the run.
- Whatever happens, devices go to their safe state, files are finalized (OME-XML matching the
  frames on disk), the journal gets ``run_end`` and ``run.json`` says ``finishing`` with the
  acquisition's status and reason; then the finisher its caller handed in (``finisher``, see
  ``harness.run.finisher``; the finishing pipeline ``harness.finishing``: analysis, results store
  with ``store``, final status, ``MANIFEST.sha256`` over every file) runs, with Ctrl-C and SIGTERM
  ignored. Without a finisher, run.json stays ``finishing``. A kill during finishing is completed
  by ``recover``.
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
import json
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from devices.errors import DeviceError
from harness.common import kill_points
from harness.common.disk_full import DiskFull, SpaceReserve, check_room, full_path, is_disk_full
from harness.common.disk_full import message as disk_full_message
from harness.common.errors import UserError
from harness.common.process_owner import this_process
from harness.common.safe_paths import inside
from harness.protocol.plan import Action, Plan, expand
from harness.protocol.protocol_file import ProtocolFile, read_protocol_file
from harness.records.endings import FINISHING
from harness.records.image_records import FRAME_COLUMNS, ChannelInfo, InstrumentInfo, PlaneInfo
from harness.records.journal import Journal
from harness.records.manifest import frame_log_entry, series_entry, stack_entry
from harness.records.provenance import default_operator, host, sha256_file, sha256_text, software
from harness.records.run_folder import RunFolder
from harness.records.run_record import write_run
from harness.records.series_writer import SeriesWriter
from harness.run.finisher import Finisher
from harness.run.instrument_info import instrument_info
from harness.run.preflight import check_plan, device_label, station_facts
from harness.run.progress import Progress
from harness.station.roles import device_call
from harness.station.station import Station

if TYPE_CHECKING:
    from harness.records.ome_writer import OmeTiffStack

T = TypeVar("T")
LATE_FRACTION = 0.1  # a sample more than 10 % of its interval behind its deadline is late


class Terminated(BaseException):
    """SIGTERM: the run is aborted like Ctrl-C."""


class TooManyMissing(Exception):
    pass


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
        from harness.records.endings import outcome

        return outcome(self.status, self.safe_state_confirmed, bool(self.analysis_error))


@dataclass
class _State:
    setpoints_mw: dict[str, float] = field(default_factory=dict)
    emitting: set[str] = field(default_factory=set)
    meter_wavelength_nm: float | None = None
    averaging: int | None = None
    marks: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: int = 0


def slug(text: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    return "-".join(p for p in out.split("-") if p)[:40] or "station"


class Runner:
    def __init__(
        self,
        station: Station,
        protocol_path: str | Path,
        runs_dir: str | Path = "runs",
        operator: str | None = None,
        quiet: bool = False,
        assume_yes: bool = False,
        progress_stream: Any = None,
        store: bool = False,
        db_url: str | None = None,
        job_tag: dict[str, Any] | None = None,
        finisher: Finisher | None = None,
    ) -> None:
        self.station = station
        self.protocol: ProtocolFile
        self.protocol, self.doc = read_protocol_file(protocol_path)
        self.protocol_path = Path(protocol_path)
        lines = sorted(station.lasers, key=float)
        self.plan: Plan = expand(self.protocol, self.doc, lines)
        self.runs_dir = Path(runs_dir)
        # everything that can be known before anything moves (harness.run.preflight); all problems at once
        self.facts = station_facts(station)
        self.preflight = check_plan(self.protocol, self.doc, self.plan, self.facts, self.runs_dir)
        self.preflight.raise_if_failed()
        self.operator = operator or default_operator()
        self.quiet = quiet
        self.assume_yes = assume_yes
        self.progress_stream = progress_stream
        self.clock = station.clock
        self.state = _State()
        self.series: dict[str, SeriesWriter] = {}
        self.stacks: dict[str, OmeTiffStack] = {}
        self.frame_logs: dict[str, SeriesWriter] = {}
        self.run_id = str(uuid.uuid4())
        self.folder: Path | None = None
        self.journal: Journal | None = None
        self.results: dict[str, Any] | None = None
        self.analysis_error = ""
        self.store, self.db_url, self.job_tag = store, db_url, job_tag
        self.finisher = finisher  # None: run.json is left `finishing`, for `recover`
        self.stored = "not recorded"
        self.safe_state: dict[str, Any] = {"confirmed": None, "failures": []}
        self.reserve: SpaceReserve | None = None
        self.torn: set[str] = set()  # stacks whose last page a full disk may have cut short
        self.left_for_recovery = False  # a full disk kept a file from being finished: `recover` ends the run
        self._held = 0  # inside _whole_record: Ctrl-C/SIGTERM wait for the record's end
        self._pending_signal: BaseException | None = None

    # --- the run ----------------------------------------------------------------------------------
    def _make_folder(self) -> Path:
        stamp = self.clock.utc().strftime("%Y%m%dT%H%M%SZ")
        folder = inside(self.runs_dir, f"{stamp}_{self.protocol.protocol}_{slug(self.station.name)}_{self.run_id[:8]}")
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            if is_disk_full(exc):
                from harness.station.run_guard import PreconditionFailed

                raise PreconditionFailed(f"{disk_full_message(folder)}; the run was not started") from None
            raise UserError(f"cannot create the run folder {folder}: {exc}") from None
        return folder

    def run(self, on_folder: Callable[[Path], None] | None = None, restore_signals: bool = True) -> RunOutcome:
        """The whole run, finishing included (the ``finisher``: analysis, store record with ``store``,
        manifest). Ctrl-C and SIGTERM are ignored from the end of the acquisition until finishing is
        done; with ``restore_signals=False`` they stay ignored (the caller has more to finish: its
        outcome file), else the previous handlers come back."""
        self.folder = self._make_folder()
        try:
            self.reserve = SpaceReserve(self.folder)
            self.journal = Journal(RunFolder(self.folder).journal)
            self.software = software(self.station.core)
            self.info = self._instrument_info()
            self.t0 = self.clock.now()
            self.started_utc = self.clock.utc(self.t0)  # station time: the wall clock on hardware, the scheduler's time on a virtual one
            self._write_run_json("running", "")
            self.journal.write("run_start", 0.0, sync=True, run_id=self.run_id, protocol=self.protocol.protocol, station=self.station.name,
                               actions=len(self.plan.actions), estimate_s=self.plan.estimate_s)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._not_started(exc)
        if on_folder:
            on_folder(self.folder)
        kill_points.reached("acquisition:started")
        progress = Progress(self.plan.estimate_s, quiet=self.quiet, stream=self.progress_stream)
        status, reason = "completed", ""
        previous = self._install_signals()
        gc.collect()
        gc.freeze()  # what exists now never needs collecting: fewer, shorter pauses while sampling
        done = 0.0
        try:
            for index, action in enumerate(self.plan.actions):
                self.journal.write("step", self.now(), index=index, kind=action.kind, line=action.line, context=action.context)
                self._execute(action, progress, done)
                done += action.estimate_s
                progress.update(done, action.describe())
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
                self.journal.write("error", self.now(), traceback=traceback.format_exc())
        finally:
            self._ignore_signals()
            gc.unfreeze()
            progress.close()
            self._finish(status, reason)
            if restore_signals:
                self._restore_signals(previous)
        return RunOutcome(self.folder, self.status, self.reason, self.safe_state["confirmed"] is not False, self.analysis_error)

    def now(self) -> float:
        return self.clock.now() - self.t0

    # --- a full disk (disk_full.py) ----------------------------------------------------------------
    def _not_started(self, exc: BaseException) -> None:
        """No room for the run's own records: nothing was done, no folder is left."""
        import shutil

        from harness.station.run_guard import PreconditionFailed

        path = full_path(exc, self.folder)
        if self.journal is not None:
            self.journal.tolerant = True
            self.journal.close()
        shutil.rmtree(self.folder, ignore_errors=True)  # type: ignore[arg-type]
        raise PreconditionFailed(f"{disk_full_message(path)}; the run was not started") from None

    def _disk_full(self, exc: BaseException) -> str:
        """The reason of a run the disk filled under; the error journaled once the reserve is freed."""
        reason = disk_full_message(full_path(exc), self.folder)
        if self.reserve is not None:
            self.reserve.release()
        assert self.journal is not None
        self.journal.tolerant = True
        self.journal.write("error", self.now(), sync=True, disk_full=True, message=reason)
        return reason

    def _page(self, stack: OmeTiffStack, write: Callable[[], None], nbytes: int) -> None:
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
        assert self.journal is not None
        for name in self.torn:
            writer = getattr(self.stacks[name], "_writer", None)
            with contextlib.suppress(Exception):
                writer._fh.close()  # type: ignore[union-attr]  # not TiffWriter.close: it would write more
        reason = (reason + "; " if reason else "") + f"{', '.join(sorted(self.torn))} left for `microscope-qc recover` once space is freed"
        self.journal.write("run_end", self.now(), sync=True, status=status, reason=reason, missing=self.state.missing,
                           safe_state_confirmed=not failures)
        self.journal.close()
        self.left_for_recovery = True
        self.status, self.reason = status, reason
        return True

    # --- signals ---------------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: Any) -> None:
            exc: BaseException = KeyboardInterrupt() if signum == signal.SIGINT else Terminated()
            if self._held:
                self._pending_signal = self._pending_signal or exc  # raised when the record is whole
                return
            raise exc

        previous = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.getsignal(signal.SIGTERM)}
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        return previous

    @contextlib.contextmanager
    def _whole_record(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM arriving inside is raised only at its end: a frame's page and its frame-log
        row (or a sample and its CSV row) are written both or neither."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held and self._pending_signal is not None:
            exc, self._pending_signal = self._pending_signal, None
            raise exc

    def _ignore_signals(self) -> None:
        """While files are finalized, a second Ctrl-C must not cut that short."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, lambda s, f: None)
            signal.signal(signal.SIGTERM, lambda s, f: None)

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

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
        protocol_text = self.protocol_path.read_text(encoding="utf-8")
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
                         "stacks": {n: {"channels": s.channels, "frames": s.frames_per_channel} for n, s in self.plan.stacks.items()}},
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
        write_run(self.folder, data)

    # --- metadata ---------------------------------------------------------------------------------
    def _instrument_info(self) -> InstrumentInfo:
        st, git = self.station, self.software["git"]
        return instrument_info(st, run={
            "RunId": self.run_id, "Protocol": self.protocol.protocol, "ProtocolTitle": self.protocol.title,
            "ProtocolVersion": self.protocol.version, "ProtocolSHA256": sha256_file(self.protocol_path),
            "Station": st.name, "StationSHA256": sha256_file(st.path), "ToolVersion": self.software["version"],
            "GitCommit": git["commit"] if git else "", "Operator": self.operator,
        })

    # --- device operations with retries -------------------------------------------------------------
    def _retry(self, what: str, fn: Callable[[], T]) -> tuple[T, int]:
        rule = self.protocol.retries
        assert self.journal is not None
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

    def _count_missing(self, what: str, exc: DeviceError) -> None:
        self.state.missing += 1
        if self.state.missing > self.protocol.max_missing:
            raise TooManyMissing(
                f"{what} failed ({exc}); {self.state.missing} missing, more than the protocol's max_missing of {self.protocol.max_missing}"
            )

    # --- actions ---------------------------------------------------------------------------------
    def _execute(self, action: Action, progress: Progress, done: float) -> None:
        handler = getattr(self, f"_do_{action.kind}")
        handler(action, progress, done)

    def _do_laser(self, action: Action, progress: Progress, done: float) -> None:
        p = action.params
        targets = sorted(self.station.lasers, key=float) if p.line == "all" else [p.line]
        for key in targets:
            line = self.station.lasers[key]
            if p.setpoint is not None:
                mw = p.setpoint.to_mw(line.nominal_mw())
                self._retry(f"set point {key} nm", lambda: line.set_setpoint_mw(mw))
                self.state.setpoints_mw[key] = mw
                self.journal.write("setting", self.now(), device=line.label, line=key, setpoint_mW=mw, requested=str(p.setpoint))
            if p.emission is not None:
                on = p.emission == "on"
                self._retry(f"emission {key} nm", lambda: line.set_emission(on))
                (self.state.emitting.add if on else self.state.emitting.discard)(key)
                self.journal.write("setting", self.now(), sync=True, device=line.label, line=key, emission=p.emission)

    def _do_meter(self, action: Action, progress: Progress, done: float) -> None:
        p = action.params
        meter = self.station.power_meter
        assert meter is not None
        if p.zero:
            lit = sorted(self.state.emitting)
            for key in lit:
                self._retry("emission off for zeroing", lambda k=key: self.station.lasers[k].set_emission(False))
            self._retry("zero", lambda: meter.zero())
            for key in lit:
                self._retry("emission back on", lambda k=key: self.station.lasers[k].set_emission(True))
            self.journal.write("setting", self.now(), device=meter.label, zeroed=True, lines_off_during_zero=lit)
        if p.wavelength is not None:
            nm = self.station.lasers[p.wavelength].wavelength_nm if isinstance(p.wavelength, str) else float(p.wavelength)
            self._retry("meter wavelength", lambda: meter.set_wavelength_nm(nm))
            self.state.meter_wavelength_nm = nm
            self.journal.write("setting", self.now(), device=meter.label, wavelength_nm=nm)
        if p.averaging is not None:
            self._retry("meter averaging", lambda: meter.set_averaging(int(p.averaging)))
            self.state.averaging = int(p.averaging)
            self.journal.write("setting", self.now(), device=meter.label, averaging=int(p.averaging))

    def _do_wait(self, action: Action, progress: Progress, done: float) -> None:
        end = self.clock.now() + float(action.params)
        # progress every 1 % of the wait, and (in real time) at least every quarter of a real second
        step = max(float(action.params) / 100, 0.25 * (self.clock.time_scale or 0.0))
        while (left := end - self.clock.now()) > 0:
            self.clock.sleep(min(left, step))
            progress.update(done + float(action.params) - max(end - self.clock.now(), 0), f"wait {action.params:g} s")

    def _do_mark(self, action: Action, progress: Progress, done: float) -> None:
        self.state.marks[action.params] = self._position()
        self.journal.write("mark", self.now(), name=action.params, position_um=self.state.marks[action.params])

    def _position(self) -> dict[str, float]:
        pos: dict[str, float] = {}
        if self.station.xy_stage is not None:
            x, y = self.station.xy_stage.position_um()
            pos.update(x=x, y=y)
        if self.station.z_drive is not None:
            pos["z"] = self.station.z_drive.position_um()
        return pos

    def _do_move(self, action: Action, progress: Progress, done: float) -> None:
        p = action.params
        here = self._position()
        target = dict(here)
        if p.to is not None:
            if p.to not in self.state.marks:
                raise UserError(f"{self.protocol_path}:{action.line}: protocol: move: no position marked {p.to!r} before this step")
            target.update(self.state.marks[p.to])
        elif p.along is not None:
            sign = 1.0 if p.along[0] == "+" else -1.0
            target[p.along[1]] = here[p.along[1]] + sign * float(p.by)
        else:
            for axis in "xyz":
                value = getattr(p, axis)
                if value is not None:
                    target[axis] = (here[axis] + float(value)) if p.relative else float(value)
        if p.approach != "any" and p.overtravel > 0:
            sign = -1.0 if p.approach == "positive" else 1.0
            pre = dict(target)
            for axis in self._approach_axes(p, target, here):
                pre[axis] = target[axis] + sign * p.overtravel
            self._move_to(pre, here)
            here = pre
        self._move_to(target, here)
        self.journal.write("move", self.now(), target_um=target, approach=p.approach, context=action.context)

    @staticmethod
    def _approach_axes(p: Any, target: dict[str, float], here: dict[str, float]) -> list[str]:
        """The axes an approach over-travels: ``approach_axes`` if given; else those that move; when
        the stage already sits at the target, the axes the step names (``along``'s axis, a mark's axes)."""
        if p.approach_axes is not None:
            return [a for a in "xyz" if a in p.approach_axes and a in target]
        moving = [a for a in "xyz" if a in target and target[a] != here.get(a)]
        if moving:
            return moving
        if p.along is not None:
            return [p.along[1]]
        named = [a for a in "xyz" if getattr(p, a, None) is not None]
        return [a for a in (named or list(target)) if a in target]

    def _move_to(self, target: dict[str, float], here: dict[str, float]) -> None:
        st = self.station
        if st.xy_stage is not None and (target.get("x"), target.get("y")) != (here.get("x"), here.get("y")):
            self._retry("XY move", lambda: st.xy_stage.move_to(target["x"], target["y"]))  # type: ignore[union-attr]
        if st.z_drive is not None and "z" in target and target["z"] != here.get("z"):
            self._retry("Z move", lambda: st.z_drive.move_to(target["z"]))  # type: ignore[union-attr]

    def _lit_context(self) -> dict[str, Any]:
        on = sorted(self.state.emitting, key=float)
        return {
            "lines_on": "+".join(on) or "none",
            "setpoint_mW": "+".join(f"{self.state.setpoints_mw.get(k, 0):.6g}" for k in on),
            "setpoint_pct_nominal": "+".join(
                f"{100 * self.state.setpoints_mw.get(k, 0) / n:.6g}" if (n := self.station.lasers[k].nominal_mw()) else "" for k in on
            ),
        }

    def _do_sample(self, action: Action, progress: Progress, done: float) -> None:
        p = action.params
        meter = self.station.power_meter
        assert meter is not None
        name = p.series
        writer = self.series.get(name)
        if writer is None:
            writer = self.series[name] = SeriesWriter(RunFolder(self.folder).series(name))  # type: ignore[operator]
        every, duration = float(p.every), float(p.duration)
        n = int(round(duration / every))
        fixed = {
            **self._lit_context(), "meter_wavelength_nm": self.state.meter_wavelength_nm, "averaging": self.state.averaging,
            "location": meter.location,
        }
        t_start = self.clock.now()
        for k in range(n):
            deadline = t_start + k * every
            self.clock.sleep_until(deadline)
            t = self.clock.now()
            lateness = t - deadline
            late = lateness > LATE_FRACTION * every
            row: dict[str, Any] = {
                "sample": writer.rows, "deadline_s": f"{deadline - self.t0:.6f}", "time_s": f"{t - self.t0:.6f}",
                "lateness_s": f"{lateness:.6f}", "late": int(late), "utc": self.clock.utc(t).isoformat(timespec="microseconds"), **fixed,
            }
            try:
                watts, attempts = self._retry(f"reading {name}[{k}]", meter.read_w)
            except DeviceError as exc:
                row.update(status="missing", error=str(exc), attempts=self.protocol.retries.attempts if exc.retryable else 1)
                with self._whole_record():
                    writer.write(row)
                    self.journal.write("reading_missing", t - self.t0, sync=True, series=name, sample=row["sample"], error=str(exc))
                self._count_missing(f"reading {name}[{k}]", exc)
                continue
            row.update(power_W=f"{watts:.9e}", status="ok", attempts=attempts)
            with self._whole_record():
                try:
                    self.journal.write("reading", t - self.t0, series=name, sample=row["sample"], power_W=watts, late=late, lateness_s=lateness)
                except OSError:  # a full disk: the journal keeps the record for later; the CSV gets the row
                    writer.write(row)
                    raise
                if late:
                    self.journal.write("log", t - self.t0, level="warning", message=f"sample {name}[{k}] late by {lateness:.4f} s")
                writer.write(row)
            kill_points.reached("acquisition:reading")
            progress.update(done + (k + 1) * every, f"sample {name} {k + 1}/{n}")

    def _stack(self, name: str) -> OmeTiffStack:
        stack = self.stacks.get(name)
        if stack is None:
            plan = self.plan.stacks[name]
            from harness.records.ome_writer import OmeTiffStack  # the OME model costs about a second of start-up: loaded only where an image stack is handled

            stack = self.stacks[name] = OmeTiffStack(RunFolder(self.folder).stack(name), plan, self.info, self.station.clock.utc(self.t0))  # type: ignore[operator]
            self.frame_logs[name] = SeriesWriter(RunFolder(self.folder).frame_log(name), FRAME_COLUMNS)  # type: ignore[operator]
        return stack

    def _do_acquire(self, action: Action, progress: Progress, done: float) -> None:
        p = action.params
        cam = self.station.camera
        assert cam is not None
        core = self.station.core
        if p.binning is not None:
            self._retry("binning", lambda: device_call(cam.label, lambda: core.setProperty(cam.label, "Binning", p.binning)))
        self._retry("ROI", lambda: device_call(cam.label, lambda: self._apply_roi(p)))
        if p.exposure is not None:
            self._retry("exposure", lambda: cam.set_exposure_ms(float(p.exposure) * 1000))
        exposure_s = cam.exposure_ms() / 1000
        stack = self._stack(p.stack)
        log = self.frame_logs[p.stack]
        lit = sorted(self.state.emitting, key=float)
        if p.dark:
            for key in lit:
                self._retry("emission off for dark frames", lambda k=key: self.station.lasers[k].set_emission(False))
        try:
            channel = ChannelInfo(
                action.channel, {k: self.state.setpoints_mw[k] for k in lit if k in self.state.setpoints_mw and not p.dark},
                gain_db=_float_or_none(core, cam.label, "Gain"), offset=_float_or_none(core, cam.label, "Offset"),
                binning=int(_float_or_none(core, cam.label, "Binning") or 1),
            )
            for i, (c, t) in enumerate(action.frames):
                pos = self._position()
                t_frame = self.clock.now()
                row = {"frame": log.rows, "stack": p.stack, "channel": action.channel, "c": c, "t": t, "time_s": f"{t_frame - self.t0:.6f}",
                       "exposure_s": exposure_s, "x_um": pos.get("x"), "y_um": pos.get("y"), "z_um": pos.get("z"), "tag": p.tag,
                       "gain_db": channel.gain_db, "offset": channel.offset, "binning": channel.binning,
                       "context": json.dumps(action.context), **self._lit_context()}
                plane = PlaneInfo(c, t, -1, t_frame - self.t0, exposure_s, pos.get("x"), pos.get("y"), pos.get("z"))
                try:
                    image, attempts = self._retry(f"frame {p.stack}[c={c},t={t}]", cam.snap)
                except DeviceError as exc:
                    with self._whole_record():
                        self._page(stack, lambda error=str(exc): stack.write_missing(plane, error), (stack.shape[0] * stack.shape[1] * 2) if stack.shape else 0)
                        log.write({**row, "status": "missing", "error": str(exc), "ifd": plane.ifd if plane.ifd >= 0 else None})
                    self.journal.write("frame_missing", t_frame - self.t0, sync=True, stack=p.stack, c=c, t=t, error=str(exc))
                    self._count_missing(f"frame {p.stack}[c={c},t={t}]", exc)
                    continue
                with self._whole_record():
                    self._page(stack, lambda: stack.write(image, plane, channel), image.size * 2)
                    log.write({**row, "status": "ok", "ifd": plane.ifd, "attempts": attempts})
                self.journal.write("frame", t_frame - self.t0, stack=p.stack, c=c, t=t, ifd=plane.ifd, attempts=attempts,
                                   mean=float(image.mean()), max=int(image.max()), context=action.context, tag=p.tag)
                progress.update(done + (i + 1) * action.estimate_s / len(action.frames), f"acquire {p.stack} {i + 1}/{len(action.frames)}")
        finally:
            if p.dark:
                for key in lit:
                    self._retry("emission back on", lambda k=key: self.station.lasers[k].set_emission(True))

    def _apply_roi(self, p: Any) -> None:
        core, label = self.station.core, self.station.camera.label  # type: ignore[union-attr]
        core.clearROI()
        if p.roi is not None:
            core.setROI(label, *p.roi)
        elif p.centre_roi is not None:
            w, h = p.centre_roi
            full_w, full_h = core.getImageWidth(), core.getImageHeight()
            if w > full_w or h > full_h:
                raise UserError(f"{self.protocol_path}: acquire: centre_roi {w}x{h} is larger than the camera's {full_w}x{full_h}")
            core.setROI(label, (full_w - w) // 2, (full_h - h) // 2, w, h)

    def _do_specimen(self, action: Action, progress: Progress, done: float) -> None:
        p = action.params
        st = self.station
        if st.sim is not None:
            st.sim.world.mount_sample(p.sample)
            how = "mounted on the simulated station"
        elif sys.stdin.isatty() and not self.assume_yes:
            input(f"\nPlease prepare the specimen: {p.sample}. {p.instructions}\nPress Enter when ready (Ctrl-C aborts) ")
            how = "confirmed by the operator"
        else:
            how = "assumed ready (unattended run)"
        self.journal.write("specimen", self.now(), sync=True, sample=p.sample, how=how)
        self.info.nbo["Specimen"] = p.sample

    def _do_set_property(self, action: Action, progress: Progress, done: float) -> None:
        p = action.params
        label = self._device_label(p.device, action)
        self._retry(f"{label}.{p.property}", lambda: device_call(label, lambda: self.station.core.setProperty(label, p.property, p.value)))
        self.journal.write("setting", self.now(), device=label, property=p.property, value=p.value)

    def _device_label(self, name: str, action: Action) -> str:
        f = self.facts
        label = device_label(name, f.role_labels, {k: line.label for k, line in f.lines.items()}, f.devices)
        if label is None:
            raise UserError(f"{self.protocol_path}:{action.line}: protocol: set_property: no device or role {name!r} on station {f.name}")
        return label


# per-frame context of a stack (what no OME element holds), one row per planned frame


def _float_or_none(core: Any, label: str, prop: str) -> float | None:
    try:
        return float(core.getProperty(label, prop)) if core.hasProperty(label, prop) else None
    except (ValueError, RuntimeError):
        return None
