"""The run launcher: everything the service loop does outside its own state. It starts a job's run
in its own process (``microscope-qc run``) and reads how it ended, recovers interrupted runs, waits
for a run a previous service left running, and brings a station into its safe state.

The loop (``scheduler.Scheduler``) is given a launcher (``RunLauncher``); ``ProcessLauncher`` is the
real one, tests give scripted ones.

Contract of ``RunLauncher`` (every method is called from the loop's thread, one at a time, except
``terminate``, which may come from a signal handler while ``launch`` runs):
- ``launch(job, attempt, wait_s, interlock)``: one attempt of ``job``; blocks until its run process
  has ended. Returns how it ended: ``{"status", "folder", "verdict", "reason", "stored"}`` (and
  ``"user_error": True`` for a mistake in the job's files), status one of ``completed``,
  ``analysis failed``, ``unsafe``, ``failed``, ``aborted``, ``interrupted``, ``not started``.
  ``attempt`` (None: not tagged) tags the run folder (run.json ``scheduled``, see ``attempt_tag``).
  On a virtual clock the clock is advanced by the station time the run took. A tagged run on a
  simulated station gets its own seed (``run --seed``, see ``run_seed``): a month of nightly runs has
  a month of different noise, and the same schedule replayed gives the same data. Never raises for a
  run that failed; raises ``OSError`` if the run process cannot be started.
- ``recover()``: recover (and record) the interrupted runs of the runs folder; the reports of the
  runs recovered now. Never raises: a failure is said.
- ``outlive(folder)``: how the run of ``folder`` (started by a service that ended) ended, waiting
  for its process up to a limit and recovering it once its process is gone; None if it still runs.
- ``safe_state(station, why)``: bring the station up (its devices go into their safe state) and down
  under its lock: True confirmed, False NOT confirmed, None not tried (busy, or it did not come up).
  Raises ``UserError`` for a station file that cannot be read.
- ``terminate()``: ask a running run process to abort (it ends cleanly); a no-op without one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from harness.common.errors import EXIT_ANALYSIS_FAILED, EXIT_PRECONDITION, EXIT_UNSAFE, EXIT_USER, UserError
from harness.common.process_owner import ALIVE
from harness.common.safe_paths import inside
from harness.common.yaml_source import load_yaml, validate
from harness.records.endings import ANALYSIS_FAILED, COMPLETED, FINISHING, RUNNING, UNSAFE, of_folder
from harness.records.journal import read_journal
from harness.records.run_folder import RunFolder
from harness.records.run_record import read_results, read_run, run_from_json
from harness.recovery.recover import RecoveryReport, owner_state
from harness.station.run_guard import held_station, station_name
from harness.station.station_file import StationFile
from harness.station.station_lock import LockDirError, StationBusy
from harness.store.results_store import ENV_VAR
from harness.unattended.process_ties import end_with_parent, windows_end_with_parent
from harness.unattended.recover_and_record import recover_and_record
from harness.unattended.schedule_file import Job, Schedule
from harness.unattended.schedule_state import Pending
from simulators.clock import Clock

ORPHAN_WAIT_S = 900.0  # how long a restarted service waits for a run its predecessor started and that is still finishing
Result = dict[str, Any]


class RunLauncher(Protocol):
    """What the service loop needs beyond its state (see the module's contract)."""

    def launch(self, job: Job, attempt: Pending | None, wait_s: float, interlock: bool) -> Result: ...

    def recover(self) -> list[RecoveryReport]: ...

    def outlive(self, folder: Path) -> Result | None: ...

    def safe_state(self, station: Path, why: str) -> bool | None: ...

    def terminate(self) -> None: ...


def attempt_tag(schedule: Schedule, job: str, due: str, attempt: int, started: str = "") -> dict[str, Any]:
    """What a run process of an attempt is told to keep in its run.json (``scheduled``); ``started``
    tells apart two runs of one attempt (one stopped with the service, then its repeat)."""
    return {"schedule": schedule.spec.schedule, "job": job, "due": due, "attempt": attempt, "started": started}


def run_seed(station_seed: int, schedule: str, job: str, due: str, attempt: int) -> int:
    """The seed of one scheduled run on a simulated station (0 .. 2**31 - 1): a digest of the station
    file's ``simulation.seed``, the schedule's name, the job, the due time (ISO text) and the attempt.
    Every run of a schedule differs; the same schedule over the same dates gives the same seeds."""
    digest = hashlib.sha256(f"{station_seed}|{schedule}|{job}|{due}|{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def simulation_seed(station: Path) -> int | None:
    """A station file's ``simulation.seed``; None for real hardware, or a file that cannot be read
    (the run process reports that itself)."""
    try:
        spec: StationFile = validate(load_yaml(station), StationFile, "station")  # type: ignore[assignment]
    except (UserError, OSError):
        return None
    return spec.simulation.seed if spec.simulation is not None else None


def folder_of(runs_dir: Path, tag: dict[str, Any]) -> Path | None:
    """The run folder whose run.json is tagged with ``tag`` (None: the run never made one)."""
    needle = json.dumps(tag["due"])
    for folder in sorted((p for p in runs_dir.iterdir() if p.is_dir()), reverse=True) if runs_dir.is_dir() else []:
        try:
            text = RunFolder(folder).run_json.read_text(encoding="utf-8")
            if needle not in text:
                continue
            if run_from_json(json.loads(text)).scheduled == tag:
                return folder
        except (OSError, ValueError, AttributeError):
            continue
    return None


def folder_result(folder: Path) -> Result | None:
    """How a run ended, from its run folder alone (as ``launch`` reports it); None while the run is
    still running or finishing, or without a readable run.json."""
    try:
        run = read_run(folder).as_dict()
    except (OSError, ValueError):
        return None
    if not isinstance(run, dict) or run.get("status") in (RUNNING, FINISHING):
        return None
    try:
        results = read_results(folder).as_dict()
    except (OSError, ValueError):
        results = None
    word = of_folder(run, results)
    status = word if word in (COMPLETED, ANALYSIS_FAILED, UNSAFE, "aborted", "interrupted") else "failed"
    reason = str(run.get("reason") or "")
    if status == ANALYSIS_FAILED and results and results.get("analysis_error"):
        reason = (reason + "; " if reason else "") + f"analysis failed: {results['analysis_error']}"
    stored = ""
    for record in read_journal(RunFolder(folder).journal, missing_ok=True):
        if record.get("type") == "finishing" and record.get("step") == "recorded":
            stored = str(record.get("stored") or "")
    verdict = (results or {}).get("verdict") if run.get("status") == COMPLETED else "not judged"
    return {"status": status, "folder": str(folder), "verdict": verdict, "reason": reason, "stored": stored}


class ProcessLauncher:
    """The real launcher: run processes (``python -m harness run``), recovery, station safe state.

    ``popen`` starts the process (``subprocess.Popen`` unless a test gives another);
    ``on_started(job, process, attempt)`` is called once the run process has started."""

    def __init__(self, schedule: Schedule, clock: Clock, env: dict[str, str] | None = None,
                 out: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
                 on_started: Callable[[Job, subprocess.Popen, int], None] | None = None,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> None:
        self.schedule = schedule
        self.clock = clock
        self.env = env
        self.out = out
        self.on_started = on_started
        self.popen = popen
        self._child: subprocess.Popen | None = None

    def launch(self, job: Job, attempt: Pending | None, wait_s: float, interlock: bool) -> Result:
        runs_dir = self.schedule.runs_dir
        outcome_file = inside(self.schedule.state_dir, f"outcome-{job.name}-{os.getpid()}.json")
        outcome_file.unlink(missing_ok=True)
        tag = attempt_tag(self.schedule, job.name, attempt.due, attempt.attempt, attempt.started) if attempt is not None else None
        cmd = [sys.executable, "-m", "harness", "run", str(self.schedule.protocol_of(job)), "--station", str(self.schedule.station_of(job)),
               "--runs-dir", str(runs_dir), "--quiet", "--yes", "--wait-for-station", f"{wait_s:g}", "--outcome", str(outcome_file)]
        if tag:
            cmd += ["--job-tag", json.dumps(tag)]
            base = simulation_seed(self.schedule.station_of(job))
            if base is not None:
                cmd += ["--seed", str(run_seed(base, self.schedule.spec.schedule, job.name, tag["due"], tag["attempt"]))]
        if self.clock.virtual:  # the run's station clock starts at the service's (virtual) time: one time line
            cmd += ["--clock-start", self.clock.utc().isoformat()]
        if interlock:
            cmd.append("--check-interlock")
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.schedule.spec.database:  # by environment, never in argv: a password in the URL would show in the process list
            env[ENV_VAR] = self.schedule.spec.database
        before = set(runs_dir.iterdir())
        proc = self.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=end_with_parent())
        windows_end_with_parent(proc, self.out)
        self._child = proc
        if self.on_started and attempt is not None:
            self.on_started(job, proc, attempt.attempt)
        try:
            _, stderr = proc.communicate()
        finally:
            self._child = None
        rc = proc.returncode
        result: Result = json.loads(outcome_file.read_text(encoding="utf-8")) if outcome_file.is_file() else {}
        outcome_file.unlink(missing_ok=True)
        if rc == EXIT_PRECONDITION:
            return {"status": "not started", "reason": result.get("reason") or _last_lines(stderr)}
        if rc == EXIT_USER and result.get("status") == "not started":  # refused by its preflight: touched nothing
            return {"status": "not started", "reason": result.get("reason") or _last_lines(stderr), "user_error": True}
        if rc == EXIT_USER and not result:  # a mistake in a file: the run never started
            return {"status": "failed", "folder": None, "reason": f"the run could not start: {_last_lines(stderr)}", "user_error": True}
        if not result:  # the process died before it could say (killed, crashed): its run folder tells
            return self._judged_by_folder(sorted(set(runs_dir.iterdir()) - before), tag, rc, stderr)
        if result.get("folder"):
            self.clock.advance(_station_seconds(Path(result["folder"])))
        word = result.get("outcome") or {EXIT_UNSAFE: UNSAFE, EXIT_ANALYSIS_FAILED: ANALYSIS_FAILED}.get(rc, "")
        status = word if word in (UNSAFE, ANALYSIS_FAILED) else {"completed": "completed", "aborted": "aborted"}.get(result.get("status", ""), "failed")
        reason = result.get("reason") or ("" if status == "completed" else _last_lines(stderr))
        if status == ANALYSIS_FAILED and result.get("analysis_error"):
            reason = (reason + "; " if reason else "") + str(result["analysis_error"])
        return {"status": status, "folder": result.get("folder"), "verdict": result.get("verdict"), "reason": reason, "stored": result.get("stored", "")}

    def _judged_by_folder(self, new: list[Path], tag: dict[str, Any] | None, rc: int, stderr: str) -> Result:
        """A run process that ended without its outcome file: recover, then read its run folder."""
        reports = self.recover()
        found = folder_of(self.schedule.runs_dir, tag) if tag else None
        folder = str(found) if found else next((str(r.folder) for r in reports if r.folder in new), str(new[-1]) if new else None)
        how = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        truth = folder_result(Path(folder)) if folder else None
        if truth is not None and truth["status"] != "interrupted":  # it had ended; only its report to us was cut off
            truth["reason"] = ((truth["reason"] + "; " if truth["reason"] else "")
                               + f"the run process ended ({how}) after its run had ended; outcome from its run folder")
            if truth.get("folder"):
                self.clock.advance(_station_seconds(Path(truth["folder"])))
            return truth
        return {"status": "interrupted" if folder else "failed", "folder": folder,
                "reason": f"the run process ended without finishing ({how}){': ' + _last_lines(stderr) if stderr.strip() else ''}",
                "stored": (truth or {}).get("stored", "")}

    def recover(self) -> list[RecoveryReport]:
        try:
            reports = recover_and_record(self.schedule.runs_dir, db_url=self.schedule.spec.database, say=self.out)
        except Exception as exc:  # recovery must not stop the schedule; say it
            self.out(f"recovery failed: {type(exc).__name__}: {exc}")
            return []
        return [r for r in reports if r.outcome == "recovered"]

    def outlive(self, folder: Path, limit_s: float = ORPHAN_WAIT_S) -> Result | None:
        """A run a service that ended had started, whose folder is not final yet: its process may still
        be finishing (it ignores SIGTERM from the end of its measurement until it has recorded it).
        Wait for it (real time: it is a real process) up to ``limit_s``; once its owner is gone, finish
        the folder by recovery. How the run ended, or None if it is still going after ``limit_s``."""
        deadline = time.monotonic() + limit_s
        said = False
        while True:
            truth = folder_result(folder)
            if truth is not None:
                return truth
            try:
                run = read_run(folder).as_dict()
            except (OSError, ValueError):
                run = None
            if not (isinstance(run, dict) and owner_state(run)[0] == ALIVE):
                recover_and_record(folders=[folder], db_url=self.schedule.spec.database, say=self.out)
                return folder_result(folder)
            if time.monotonic() > deadline:
                return None
            if not said:
                self.out(f"{folder}: its run process (started by a service that ended) is still finishing: waiting for it")
                said = True
            time.sleep(0.5)

    def safe_state(self, station: Path, why: str) -> bool | None:
        name = station_name(station)  # a station file that cannot be read is raised, not taken for a failed safe state
        try:
            with held_station(station, f"safe state ({why})", name=name,
                              wait_s=self.schedule.spec.preconditions.station_free_within) as loaded:
                failures = loaded.safe_state()
        except LockDirError:
            raise  # the lock folder cannot be used: not a station's failure
        except StationBusy as exc:
            self.out(f"safe state skipped ({exc}): the run holding the station is responsible for it")
            return None
        except Exception as exc:  # a station that cannot come up is reported, the schedule goes on
            self.out(f"safe state ({why}) failed: {type(exc).__name__}: {exc}")
            return None
        self.out(f"safe state ({why}): {'confirmed' if not failures else 'NOT confirmed: ' + '; '.join(failures)}")
        return not failures

    def terminate(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()


def _last_lines(text: str, limit: int = 600) -> str:
    """The end of a process's error output, whole lines only."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    out: list[str] = []
    for line in reversed(lines):
        if out and sum(len(x) + 1 for x in out) + len(line) > limit:
            break
        out.insert(0, line.strip())
    return " | ".join(out)


def _station_seconds(folder: Path) -> float:
    try:
        return float(read_run(folder).as_dict()["clock"]["elapsed_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
