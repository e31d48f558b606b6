"""The unattended service: run a schedule's jobs when they are due, one at a time, each in its own
process (``microscope-qc run``), so that a crash of a run or of a vendor library never takes the
service down, and a killed run is found and recovered.

Contract:
- At start: interrupted runs in the runs folder are recovered (marked ``interrupted``, files
  finalized); the station is put into its safe state; times missed while the service was not
  running are handled per job (``missed: run_once``: one run now; ``skip``: recorded as missed and
  notified as skipped).
- An attempt first preflights the job's files as they are now (``harness.run.preflight``, without the
  devices): a job that no longer preflights is recorded as ``not started`` with the reason, notified
  as skipped and not retried (a user error; the next due time tries again). It checks free disk space here; the run process itself waits for the station lock and
  checks the laser interlocks, and exits without touching anything if one fails (exit code 5).
  A failed precondition postpones the job by ``retries.delay`` while attempts last (or skips it at
  once with ``on_precondition_failure: skip``); when attempts are spent the job is skipped. A
  failed or killed run is retried the same way, and the station is put into its safe state.
- Every attempt goes to ``outcomes.jsonl`` in the schedule's state folder, with what was notified;
  ``state.json`` keeps each job's last handled time and pending retries, so a restart neither
  repeats nor forgets a job.
- The service's record agrees with the run folders. Before a run process starts, its attempt is
  saved in ``state.json`` as started, and the run is tagged (``--job-tag``, run.json ``scheduled``:
  schedule, job, due, attempt). A run process that dies without its outcome file is judged by its
  run folder (after recovery): a run that had ended (only its report to the service was cut off)
  keeps its folder's outcome. At start, a started attempt (the service died during it) is settled
  from its tagged run folder: recorded once, notified and retried per that outcome, never run twice;
  one with no run folder runs again. A run recovered at start gets its outcome line and
  notification (``interrupted``).
- The results database URL (which may hold a password) goes to the run process in its environment
  (``MICROSCOPE_QC_DB``), never in its argv.
- Notifications (schedule's ``notify``): verdict ``fail``/``warn``, ``run_failed``,
  ``analysis_failed``, ``interrupted``, ``skipped``, and ``unsafe`` (always sent).
- Endings (from the run's outcome file and exit status, see ``endings.py``): ``completed`` (the
  verdict is data: fail/warn notified); ``analysis failed`` (exit 6: the data are complete, the
  analysis failed: notified, not retried, since measuring again does not mend an analysis);
  ``failed``/``aborted``/``interrupted`` (safe state, retried while attempts last, notified).
- ``unsafe`` (exit 7, or the service's own safe-state check after a failure is not confirmed): the
  most serious ending. It is notified at once (``unsafe``, whatever ``on:`` says) and not retried;
  the service tries the safe state again at once, and again before every later job on that station
  and at every start. Until the safe state is confirmed, the station is marked unsafe in
  ``state.json`` and its jobs are skipped (recorded and notified as ``skipped``), never run blindly.

The clock is injected (``simulators.clock``, the one clock interface of stations and the service):
``WallClock`` for the service, ``VirtualClock`` for tests, where a week passes in seconds. On a
virtual clock a run's station clock starts at the service's time (``run --clock-start``) and the
service's clock then advances by the station time the run took: a virtual week and the runs inside
it share one time line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from harness.common import kill_points
from harness.common.atomic_files import replace_json
from harness.common.errors import EXIT_ANALYSIS_FAILED, EXIT_PRECONDITION, EXIT_UNSAFE, EXIT_USER
from harness.common.safe_paths import inside
from harness.records.journal import read_journal
from harness.records.run_folder import RunFolder
from harness.records.run_record import read_results, read_run, run_from_json
from harness.unattended.notify import Notifier
from harness.unattended.schedule_file import Job, Schedule
from simulators.clock import Clock, WallClock

log = logging.getLogger(__name__)
DONE = ("completed", "analysis failed", "unsafe")  # outcomes after which a due time is never run again
REAL_WAKE_S = 60.0  # on the wall clock the service looks at the calendar at least this often
ORPHAN_WAIT_S = 900.0  # how long a restarted service waits for a run its predecessor started and that is still finishing


# --- state ----------------------------------------------------------------------------------------
@dataclass
class Pending:
    job: str
    due: str  # ISO UTC
    attempt: int
    not_before: str  # ISO UTC
    note: str = ""
    started: str = ""  # ISO UTC: the run process of this attempt was started (its run folder is tagged with job, due, attempt)


@dataclass
class Outcome:
    job: str
    due: str
    attempt: int
    outcome: str  # completed | analysis failed | failed | interrupted | unsafe | not started | skipped | missed | stopped
    time: str
    verdict: str | None = None
    folder: str | None = None
    reason: str = ""
    retry_at: str | None = None
    notified: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = ""
    station: str = ""
    stored: str = ""  # what the results store said


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


class ScheduleState:
    """``state.json`` (last handled due time per job, pending attempts) and ``outcomes.jsonl``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = inside(folder, "state.json")
        self.outcomes_path = inside(folder, "outcomes.jsonl")
        self.problem = ""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
            self.last_due: dict[str, str] = {str(k): str(v) for k, v in data.get("last_due", {}).items()}
            known = set(Pending.__dataclass_fields__)
            self.pending: list[Pending] = [Pending(**{k: v for k, v in p.items() if k in known}) for p in data.get("pending", [])]
            # stations whose safe state was not confirmed: {station file: {"since": ISO UTC, "reason": ...}}
            self.unsafe: dict[str, dict[str, str]] = {str(k): dict(v) for k, v in data.get("unsafe", {}).items()}
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(f"state.json.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
            self.path.replace(aside)
            self.problem = f"{self.path} could not be read ({type(exc).__name__}: {exc}); kept as {aside.name}, starting afresh"
            self.last_due, self.pending, self.unsafe = {}, [], {}

    def save(self) -> None:
        replace_json(self.path, {"last_due": self.last_due, "pending": [asdict(p) for p in self.pending], "unsafe": self.unsafe})

    def record(self, outcome: Outcome) -> None:
        with open(self.outcomes_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(outcome)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def outcomes(self) -> list[dict[str, Any]]:
        if not self.outcomes_path.is_file():
            return []
        out = []
        for line in self.outcomes_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a power loss
        return out


# --- the service ----------------------------------------------------------------------------------
class Scheduler:
    def __init__(
        self,
        schedule: Schedule,
        clock: Clock | None = None,
        on_started: Callable[[Job, subprocess.Popen, int], None] | None = None,
        env: dict[str, str] | None = None,
        out: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    ) -> None:
        self.schedule = schedule
        self.clock = clock or WallClock()
        self.on_started = on_started
        self.env = env
        self.out = out
        self.stop = threading.Event()
        self.state = ScheduleState(schedule.state_dir)
        self.notifier = Notifier(schedule.spec.notify, env) if schedule.spec.notify else None
        self._child: subprocess.Popen | None = None
        self._manual = False

    # -- start ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover interrupted runs, safe state, missed times."""
        self.schedule.runs_dir.mkdir(parents=True, exist_ok=True)
        if self.state.problem:
            self.out(self.state.problem)
        enabled = {j.name for j in self.schedule.spec.jobs if j.enabled}
        for p in [p for p in self.state.pending if p.job not in enabled]:
            self.state.pending.remove(p)
            self.out(f"{p.job}: pending attempt dropped (the job is no longer in the schedule, or is disabled)")
        self._reconcile(self._recover())
        for station, confirmed in (self._safe_state("service start") or {}).items():
            if confirmed is False and station not in self.state.unsafe:
                now = self.clock.utc()
                self.state.unsafe[station] = {"since": _iso(now), "reason": "safe state not confirmed at service start"}
                self._finish(Outcome("(service start)", _iso(now), 0, "unsafe", _iso(now), station=station, reason=(
                    "the safe state was NOT confirmed at service start; runs on this station are skipped until it is "
                    "(tried again before each of its jobs); check the lasers by hand")), notify="unsafe")
        if self.notifier:
            for problem in self.notifier.check():
                self.out(f"notifications: {problem}")
        now = self.clock.utc()
        for job in self.schedule.spec.jobs:
            if not job.enabled:
                continue
            last = self.state.last_due.get(job.name)
            if last is None:
                self.state.last_due[job.name] = _iso(now)
                continue
            missed = self.schedule.missed(job, _dt(last), now)
            if not missed:
                continue
            self.state.last_due[job.name] = _iso(missed[-1])
            what = f"{len(missed)} time{'s' if len(missed) > 1 else ''} missed while the service was not running ({_local(missed[0], self.schedule)} .. {_local(missed[-1], self.schedule)})"
            if job.missed == "run_once":
                if self._queue(job, missed[-1], note=what + "; running once now"):
                    self.out(f"{job.name}: {what}; running once now")
            else:
                self._finish(Outcome(job.name, _iso(missed[-1]), 0, "missed", _iso(now), reason=what + "; skipped (missed: skip)"), notify="skipped")
        self.state.save()

    # -- loop ----------------------------------------------------------------------------------------
    def run(self, until: datetime | None = None) -> None:
        """Until stopped (SIGTERM, Ctrl-C) or, with a virtual clock, until ``until``."""
        self.start()
        while not self.stop.is_set():
            now = self.clock.utc()
            if until is not None and now >= until:
                break
            self._queue_due(now)
            ready = sorted((p for p in self.state.pending if _dt(p.not_before) <= now), key=lambda p: (p.not_before, p.due))
            if ready:
                self._attempt(ready[0])
                continue
            wake = self._next_wake(now)
            if until is not None:
                wake = min(wake, until)
            if not self.clock.virtual:  # look at the calendar again at least every minute (a corrected system clock)
                wake = min(wake, now + timedelta(seconds=REAL_WAKE_S))
            self.clock.sleep_until(self.clock.at(wake), self.stop)

    def _next_wake(self, now: datetime) -> datetime:
        times = [_dt(p.not_before) for p in self.state.pending]
        for job in self.schedule.spec.jobs:
            if job.enabled:
                times.append(self.schedule.next_due(job, _dt(self.state.last_due.get(job.name, _iso(now)))))
        return min(times) if times else now + timedelta(days=1)

    def _queue_due(self, now: datetime) -> None:
        for job in self.schedule.spec.jobs:
            if not job.enabled:
                continue
            last = _dt(self.state.last_due.get(job.name, _iso(now)))
            if self.schedule.next_due(job, last) <= now:
                dues = self.schedule.missed(job, last, now)
                due = dues[-1]  # the latest time; earlier ones passed while the station was busy
                self.state.last_due[job.name] = _iso(due)
                if len(dues) > 1:
                    self._finish(Outcome(job.name, _iso(dues[0]), 0, "missed", _iso(now),
                                         reason=f"{len(dues) - 1} time(s) from {_local(dues[0], self.schedule)} passed while earlier work ran; running the latest only"),
                                 notify="skipped")
                if any(p.job == job.name for p in self.state.pending):
                    self._finish(Outcome(job.name, _iso(due), 0, "skipped", _iso(now), reason=f"an earlier time of this job ({_local(_dt(next(p.due for p in self.state.pending if p.job == job.name)), self.schedule)}) is still pending"), notify="skipped")
                else:
                    self._queue(job, due)
                self.state.save()

    def _queue(self, job: Job, due: datetime, note: str = "") -> bool:
        """An attempt of ``due``; never again for a due time ``outcomes.jsonl`` says was done (a state.json
        that was lost, restored or rolled back must not run a completed time twice)."""
        if any(o.get("job") == job.name and o.get("due") == _iso(due) and o.get("outcome") in DONE for o in self.state.outcomes()):
            self.out(f"{job.name}: {_local(due, self.schedule)} was done already (outcomes.jsonl): not run again")
            return False
        self.state.pending.append(Pending(job.name, _iso(due), 1, _iso(max(due, self.clock.utc())), note))
        return True

    # -- one attempt --------------------------------------------------------------------------------
    def run_now(self, name: str) -> Outcome:
        """One attempt of one job now (``schedule run-now``); no retry is queued."""
        job = self.schedule.job(name)
        self.schedule.runs_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        now = self.clock.utc()
        self._manual = True  # a person is there: no notifications; the service's state.json is not touched
        return self._attempt(Pending(job.name, _iso(now), 1, _iso(now), "run now"), retry=False)

    def _attempt(self, p: Pending, retry: bool = True) -> Outcome:
        if p in self.state.pending:
            self.state.pending.remove(p)
        job = self.schedule.job(p.job)
        pre = self.schedule.preconditions_of(job)
        now = self.clock.utc()
        base = dict(protocol=str(self.schedule.protocol_of(job)), station=str(self.schedule.station_of(job)))
        station_key = str(self.schedule.station_of(job))
        if station_key in self.state.unsafe:
            # never run blindly on a station that may have a laser on: try its safe state again first
            confirmed = self._safe_state(f"before {job.name}: the station's safe state was not confirmed", [self.schedule.station_of(job)]) or {}
            if confirmed.get(station_key) is True:
                self.out(f"{job.name}: safe state of {Path(station_key).name} confirmed again; runs resume")
                self.state.unsafe.pop(station_key, None)
                if not self._manual:
                    self.state.save()
            else:
                since = self.state.unsafe[station_key].get("since", "")
                self.out(f"{job.name}: skipped: the station's safe state is still NOT confirmed (since {since})")
                return self._finish(Outcome(job.name, p.due, p.attempt, "skipped", _iso(now), reason=(
                    f"station unsafe: its safe state has not been confirmed since {since} ({self.state.unsafe[station_key].get('reason', '')}); "
                    "runs on this station are skipped until it is (check the lasers by hand)"), **base), notify="skipped")
        problem, no_space = self._preflight_problem(job)
        if problem:  # a file edited since the service started: the user's to fix, not retried
            return self._refused(job, p, problem, base)
        if no_space:
            return self._not_started(job, p, no_space, retry, base)
        problem = self._disk_problem(pre.free_disk)
        if problem:
            return self._not_started(job, p, problem, retry, base)
        self.out(f"{_local(now, self.schedule)} {job.name}: attempt {p.attempt} (due {_local(_dt(p.due), self.schedule)}{'; ' + p.note if p.note else ''})")
        if not self._manual:  # durably, before the run: this due time is being handled by the run folder tagged with it
            p.started = _iso(now)
            self.state.pending.append(p)
            self.state.save()
        result = self._run_process(job, p, pre.station_free_within, pre.interlock_closed)
        kill_points.reached("service:after_run")
        if p in self.state.pending:
            self.state.pending.remove(p)
        return self._conclude(job, p, result, retry, base)

    def _conclude(self, job: Job, p: Pending, result: dict[str, Any], retry: bool, base: dict[str, str]) -> Outcome:
        """Record, notify and retry per how the attempt's run ended (``result``: from its process, or
        from its run folder)."""
        now = self.clock.utc()
        if result["status"] == "not started":
            if result.get("user_error"):
                return self._refused(job, p, result.get("reason", ""), base)
            return self._not_started(job, p, result.get("reason", ""), retry, base)
        status = result["status"]
        outcome = Outcome(job.name, p.due, p.attempt, status, _iso(now), verdict=result.get("verdict"), folder=result.get("folder"),
                          reason=result.get("reason", ""), stored=result.get("stored", ""), **base)
        self.out(f"{_local(now, self.schedule)} {job.name}: {status}{', verdict ' + outcome.verdict if outcome.verdict else ''}"
                 f"{' (' + outcome.reason + ')' if outcome.reason else ''}; {outcome.folder or 'no run folder'}; results store: {outcome.stored or 'n/a'}")
        if status == "completed":
            verdict = outcome.verdict or "not judged"
            return self._finish(outcome, notify=verdict if verdict in ("fail", "warn") else None)
        if status == "analysis failed":
            # the measurement is complete and kept: measuring again would not mend the analysis
            outcome.reason = (outcome.reason + "; " if outcome.reason else "") + "not retried: the data are complete; after a fix: microscope-qc analyze FOLDER"
            return self._finish(outcome, notify="analysis_failed")
        if status == "unsafe":
            return self._unsafe(job, outcome)
        if status == "aborted" and self.stop.is_set():
            # the service was stopped (SIGTERM, Ctrl-C): the run ended cleanly; the same attempt is due again at the next start
            outcome.outcome, outcome.reason = "stopped", "the service was stopped during the run; the job is tried again at the next start"
            self.state.pending.append(Pending(job.name, p.due, p.attempt, _iso(now), "again after the service was stopped"))
            self.state.save()
            return self._finish(outcome)
        # failed, aborted or interrupted: the station goes to its safe state; retry while attempts last
        confirmed = self._safe_state(f"after {status} run of {job.name}", [self.schedule.station_of(job)]) or {}
        if confirmed.get(str(self.schedule.station_of(job))) is False:
            outcome.outcome = "unsafe"
            outcome.reason = (outcome.reason + "; " if outcome.reason else "") + "the service's safe state after the run was NOT confirmed"
            return self._unsafe(job, outcome, tried=True)
        if retry and p.attempt < job.retries.attempts and not result.get("user_error"):
            at = now + timedelta(seconds=job.retries.delay)
            outcome.retry_at = _iso(at)
            self.state.pending.append(Pending(job.name, p.due, p.attempt + 1, _iso(at), f"retry after {status}"))
            self.state.save()
        return self._finish(outcome, notify="interrupted" if status == "interrupted" else "run_failed")

    def _unsafe(self, job: Job, outcome: Outcome, tried: bool = False) -> Outcome:
        """The safe state was not confirmed: no retry; try the safe state again now; if still not
        confirmed, mark the station unsafe (its jobs are skipped until a later try confirms it)."""
        station = self.schedule.station_of(job)
        key = str(station)
        confirmed = None if tried else (self._safe_state(f"after the unsafe end of {job.name}", [station]) or {}).get(key)
        if confirmed is True:
            outcome.reason += "; the service's safe state afterwards was confirmed: later runs go ahead"
            self.state.unsafe.pop(key, None)
        else:
            self.state.unsafe.setdefault(key, {"since": outcome.time, "reason": outcome.reason[:500]})
            outcome.reason += ("; the safe state is still NOT confirmed: runs on this station are skipped until it is "
                               "(tried again before each of its jobs and at every service start); check the lasers by hand")
        if not self._manual:  # `run-now` leaves the service's state alone (it still notifies)
            self.state.save()
        self.out(f"URGENT {job.name}: safe state NOT confirmed; {outcome.reason}")
        return self._finish(outcome, notify="unsafe")

    def _not_started(self, job: Job, p: Pending, reason: str, retry: bool, base: dict[str, str]) -> Outcome:
        now = self.clock.utc()
        if retry and job.on_precondition_failure == "postpone" and p.attempt < job.retries.attempts:
            at = now + timedelta(seconds=job.retries.delay)
            self.state.pending.append(Pending(job.name, p.due, p.attempt + 1, _iso(at), f"postponed: {reason}"))
            self.state.save()
            self.out(f"{job.name}: not started ({reason}); postponed to {_local(at, self.schedule)}")
            return self._finish(Outcome(job.name, p.due, p.attempt, "not started", _iso(now), reason=reason, retry_at=_iso(at), **base))
        self.out(f"{job.name}: skipped ({reason})")
        return self._finish(Outcome(job.name, p.due, p.attempt, "skipped", _iso(now), reason=f"precondition failed: {reason}", **base), notify="skipped")

    def _refused(self, job: Job, p: Pending, reason: str, base: dict[str, str]) -> Outcome:
        """The job's files do not preflight: nothing was touched; no retry (the next due time tries again)."""
        now = self.clock.utc()
        self.out(f"{job.name}: not started, refused by preflight ({reason})")
        return self._finish(Outcome(job.name, p.due, p.attempt, "not started", _iso(now), reason=reason, **base), notify="skipped")

    def _preflight_problem(self, job: Job) -> tuple[str, str]:
        """The job's protocol and station files, as they are now, checked without the devices (the
        run process checks again with them): (mistakes, data that would not fit on the disk)."""
        from harness.common.errors import UserError
        from harness.run.preflight import file_facts, preflight

        try:
            report = preflight(self.schedule.protocol_of(job), file_facts(self.schedule.station_of(job)), self.schedule.runs_dir)
        except UserError as exc:
            return f"preflight: {exc}", ""
        return ("preflight: " + "; ".join(report.problems)) if report.problems else "", report.no_space

    def _finish(self, outcome: Outcome, notify: str | None = None) -> Outcome:
        if notify and self.notifier and self.notifier.wants(notify) and (not self._manual or notify == "unsafe"):
            deliveries = self.notifier.send(notify, self._subject(outcome, notify), self._body(outcome), details=asdict(outcome))
            outcome.notified = [asdict(d) | {"event": notify} for d in deliveries]
        self.state.record(outcome)
        if not self._manual:
            self.state.save()
        return outcome

    # -- pieces ----------------------------------------------------------------------------------------
    def _disk_problem(self, need: float | None) -> str:
        if need is None:
            return ""
        free = shutil.disk_usage(self.schedule.runs_dir).free
        return f"only {free / 1e9:.2f} GB free in {self.schedule.runs_dir}, {need / 1e9:.2f} GB needed" if free < need else ""

    def _run_process(self, job: Job, p: Pending, wait_s: float, interlock: bool) -> dict[str, Any]:
        outcome_file = inside(self.schedule.state_dir, f"outcome-{job.name}-{os.getpid()}.json")
        outcome_file.unlink(missing_ok=True)
        tag = self._tag(job.name, p.due, p.attempt, p.started) if p is not None else None
        cmd = [sys.executable, "-m", "harness", "run", str(self.schedule.protocol_of(job)), "--station", str(self.schedule.station_of(job)),
               "--runs-dir", str(self.schedule.runs_dir), "--quiet", "--yes", "--wait-for-station", f"{wait_s:g}", "--outcome", str(outcome_file)]
        if tag:
            cmd += ["--job-tag", json.dumps(tag)]
        if self.clock.virtual:  # the run's station clock starts at the service's (virtual) time: one time line
            cmd += ["--clock-start", self.clock.utc().isoformat()]
        if interlock:
            cmd.append("--check-interlock")
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.schedule.spec.database:  # by environment, never in argv: a password in the URL would show in the process list
            from harness.store.results_store import ENV_VAR

            env[ENV_VAR] = self.schedule.spec.database
        before = set(self.schedule.runs_dir.iterdir())
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_end_with_parent())
        _windows_end_with_parent(proc, self.out)
        self._child = proc
        if self.on_started:
            self.on_started(job, proc, p.attempt)
        try:
            stdout, stderr = proc.communicate()
        finally:
            self._child = None
        rc = proc.returncode
        result: dict[str, Any] = json.loads(outcome_file.read_text(encoding="utf-8")) if outcome_file.is_file() else {}
        outcome_file.unlink(missing_ok=True)
        if rc == EXIT_PRECONDITION:
            return {"status": "not started", "reason": result.get("reason") or _last_lines(stderr)}
        if rc == EXIT_USER and result.get("status") == "not started":  # refused by its preflight: touched nothing
            return {"status": "not started", "reason": result.get("reason") or _last_lines(stderr), "user_error": True}
        if rc == EXIT_USER and not result:  # a mistake in a file: the run never started
            return {"status": "failed", "folder": None, "reason": f"the run could not start: {_last_lines(stderr)}", "user_error": True}
        if not result:  # the process died before it could say (killed, crashed): its run folder tells
            new = sorted(set(self.schedule.runs_dir.iterdir()) - before)
            reports = self._recover()
            found = self._folder_of(tag) if tag else None
            folder = str(found) if found else next((str(r.folder) for r in reports if r.folder in new), str(new[-1]) if new else None)
            how = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
            truth = folder_result(Path(folder)) if folder else None
            if truth is not None and truth["status"] != "interrupted":  # it had ended; only its report to us was cut off
                truth["reason"] = (truth["reason"] + "; " if truth["reason"] else "") + f"the run process ended ({how}) after its run had ended; outcome from its run folder"
                if truth.get("folder"):
                    self.clock.advance(_station_seconds(Path(truth["folder"])))
                return truth
            return {"status": "interrupted" if folder else "failed", "folder": folder,
                    "reason": f"the run process ended without finishing ({how}){': ' + _last_lines(stderr) if stderr.strip() else ''}",
                    "stored": (truth or {}).get("stored", "")}
        if result.get("folder"):
            self.clock.advance(_station_seconds(Path(result["folder"])))
        from harness.records.endings import ANALYSIS_FAILED, UNSAFE

        word = result.get("outcome") or {EXIT_UNSAFE: UNSAFE, EXIT_ANALYSIS_FAILED: ANALYSIS_FAILED}.get(rc, "")
        status = word if word in (UNSAFE, ANALYSIS_FAILED) else {"completed": "completed", "aborted": "aborted"}.get(result.get("status", ""), "failed")
        reason = result.get("reason") or ("" if status == "completed" else _last_lines(stderr))
        if status == ANALYSIS_FAILED and result.get("analysis_error"):
            reason = (reason + "; " if reason else "") + str(result["analysis_error"])
        return {"status": status, "folder": result.get("folder"), "verdict": result.get("verdict"), "reason": reason, "stored": result.get("stored", "")}

    def _recover(self) -> list[Any]:
        try:
            from harness.recovery.recover import recover_all

            reports = recover_all(self.schedule.runs_dir, store=True, db_url=self.schedule.spec.database)
        except Exception as exc:  # recovery must not stop the schedule; say it
            self.out(f"recovery failed: {type(exc).__name__}: {exc}")
            return []
        for r in reports:
            self.out(f"{r.line()}; results store: {r.stored or 'not recorded'}")
        return [r for r in reports if r.outcome == "recovered"]

    # -- the service's record agrees with the run folders ---------------------------------------------
    def _tag(self, job: str, due: str, attempt: int, started: str = "") -> dict[str, Any]:
        """What a run process of an attempt is told to keep in its run.json (``scheduled``); ``started``
        tells apart two runs of one attempt (one stopped with the service, then its repeat)."""
        return {"schedule": self.schedule.spec.schedule, "job": job, "due": due, "attempt": attempt, "started": started}

    def _folder_of(self, tag: dict[str, Any]) -> Path | None:
        """The run folder whose run.json is tagged with ``tag`` (None: the run never made one)."""
        needle = json.dumps(tag["due"])
        runs_dir = self.schedule.runs_dir
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

    def _reconcile(self, recovered: list[Any]) -> None:
        """At start: attempts whose run process was started by a service that then died (kill -9,
        power loss) are settled from their run folders, never run twice: a completed run is recorded
        as completed (not re-run, retried or alarmed); an interrupted one is recorded, notified
        (``interrupted``) and retried. An attempt that made no run folder was not made: it runs
        again. Runs recovered now that belong to this schedule get their outcome line too."""
        recorded = {o.get("folder") for o in self.state.outcomes() if o.get("folder")}
        settled: set[str] = set()
        for p in [p for p in self.state.pending if p.started]:
            tag = self._tag(p.job, p.due, p.attempt, p.started)
            folder = self._folder_of(tag)
            truth = folder_result(folder) if folder else None
            if folder is not None and truth is None:
                truth = self._outlive(folder)
            if folder is None or truth is None:
                p.started = ""
                why = "its run process made no run folder" if folder is None else f"its run {folder} is still going"
                self.out(f"{p.job}: the attempt {p.attempt} of {p.due} was started by a service that ended; {why}: it runs again")
                continue
            self.state.pending.remove(p)
            settled.add(str(folder))
            if str(folder) in recorded:  # recorded already: the service ended between its record and its state
                continue
            truth["reason"] = (truth["reason"] + "; " if truth["reason"] else "") + "settled from its run folder at service start (the service had ended during the run)"
            self._settle(p, truth)
        for report in recovered:
            folder = Path(report.folder)
            if str(folder) in settled or str(folder) in recorded:
                continue
            try:
                tag = read_run(folder).scheduled or {}
            except (OSError, ValueError, AttributeError):
                continue
            if not isinstance(tag, dict) or tag.get("schedule") != self.schedule.spec.schedule:
                continue
            truth = folder_result(folder)
            if truth is None or not any(j.name == tag.get("job") for j in self.schedule.spec.jobs):
                continue
            truth["reason"] = (truth["reason"] + "; " if truth["reason"] else "") + "recovered at service start"
            self._settle(Pending(str(tag["job"]), str(tag.get("due") or _iso(self.clock.utc())), int(tag.get("attempt") or 1),
                                 _iso(self.clock.utc())), truth)
        self.state.save()

    def _outlive(self, folder: Path, limit_s: float = ORPHAN_WAIT_S) -> dict[str, Any] | None:
        """A run a service that ended had started, whose folder is not final yet: its process may still
        be finishing (it ignores SIGTERM from the end of its measurement until it has recorded it).
        Wait for it (real time: it is a real process) up to ``limit_s``; once its owner is gone, finish
        the folder by recovery. How the run ended, or None if it is still going after ``limit_s``."""
        import time

        from harness.recovery.recover import owner_state, recover_run

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
            alive = isinstance(run, dict) and owner_state(run)[0] == "alive"
            if not alive:
                report = recover_run(folder, store=True, db_url=self.schedule.spec.database)
                self.out(f"{report.line()}; results store: {report.stored or 'not recorded'}")
                return folder_result(folder)
            if time.monotonic() > deadline:
                return None
            if not said:
                self.out(f"{folder}: its run process (started by a service that ended) is still finishing: waiting for it")
                said = True
            time.sleep(0.5)

    def _settle(self, p: Pending, truth: dict[str, Any]) -> None:
        job = self.schedule.job(p.job)
        base = dict(protocol=str(self.schedule.protocol_of(job)), station=str(self.schedule.station_of(job)))
        self.out(f"{job.name}: the run of {p.due} (attempt {p.attempt}) ended {truth['status']} while the service was not there: {truth.get('folder')}")
        self._conclude(job, p, truth, retry=True, base=base)

    def _safe_state(self, why: str, stations: list[Path] | None = None) -> dict[str, bool | None]:
        """Bring every station of the schedule (or ``stations``) up (which puts its devices into their
        safe state) and down again, under the station lock. Per station file: True confirmed, False
        NOT confirmed, None not tried (busy, or it could not come up). A station marked unsafe that
        is confirmed here is cleared."""
        from harness.station.run_guard import station_name
        from harness.station.station import Station
        from harness.station.station_lock import StationBusy, StationLock

        found: dict[str, bool | None] = {}
        for path in sorted(stations or {self.schedule.station_of(j) for j in self.schedule.spec.jobs}):
            found[str(path)] = None
            lock = StationLock(station_name(path), purpose=f"safe state ({why})")
            try:
                lock.acquire(wait_s=self.schedule.spec.preconditions.station_free_within)
            except StationBusy as exc:
                self.out(f"safe state skipped ({exc}): the run holding the station is responsible for it")
                continue
            try:
                with lock, Station.load(path) as station:
                    failures = station.safe_state()
                found[str(path)] = not failures
                self.out(f"safe state ({why}): {'confirmed' if not failures else 'NOT confirmed: ' + '; '.join(failures)}")
            except Exception as exc:  # a station that cannot come up is reported, the schedule goes on
                self.out(f"safe state ({why}) failed: {type(exc).__name__}: {exc}")
            if found[str(path)] is True and str(path) in self.state.unsafe:
                self.state.unsafe.pop(str(path))
                self.out(f"{path.name}: safe state confirmed again; its jobs run again")
        return found

    def _subject(self, o: Outcome, event: str) -> str:
        what = {"fail": "QC FAILED", "warn": "QC warning", "run_failed": "run failed (measurement not completed, not a QC verdict)",
                "analysis_failed": "analysis failed (data kept)", "interrupted": "run interrupted", "skipped": "job skipped",
                "unsafe": "SAFE STATE NOT CONFIRMED - a laser may still be on"}[event]
        station = self._station_names().get(o.station, Path(o.station).stem if o.station else "")
        return f"{'URGENT ' if event == 'unsafe' else ''}[microscope-qc] {station or self.schedule.spec.schedule}: {o.job} - {what}"

    def _station_names(self) -> dict[str, str]:
        from harness.station.run_guard import station_name

        names = {}
        for job in self.schedule.spec.jobs:
            path = self.schedule.station_of(job)
            try:
                names[str(path)] = station_name(path)
            except Exception:  # a name is a nicety here; the file is checked where it matters
                names[str(path)] = path.stem
        return names

    def _body(self, o: Outcome) -> str:
        lines = [f"Station: {self._station_names().get(o.station, o.station) or '(see schedule)'}",
                 f"Protocol: {Path(o.protocol).name if o.protocol else '(see schedule)'}",
                 f"Job {o.job} (due {_local(_dt(o.due), self.schedule)}, attempt {o.attempt}): {o.outcome}"
                 + (f", verdict {o.verdict}" if o.verdict else "")]
        if o.reason:
            lines.append(f"Reason: {o.reason}")
        if o.retry_at:
            lines.append(f"Next attempt: {_local(_dt(o.retry_at), self.schedule)}")
        if o.folder:
            lines.append(f"Run folder: {o.folder}")
            lines += _failing_metrics(Path(o.folder))
        return "\n".join(lines)

    def terminate(self) -> None:
        """Stop the service; a running run is asked to abort (it ends cleanly: safe state, files)."""
        self.stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()


def folder_result(folder: Path) -> dict[str, Any] | None:
    """How a run ended, from its run folder alone (as ``_run_process`` reports it); None while the
    run is still running or finishing, or without a readable run.json."""
    from harness.records.endings import ANALYSIS_FAILED, COMPLETED, FINISHING, RUNNING, UNSAFE, of_folder

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


def _last_lines(text: str, limit: int = 600) -> str:
    """The end of a process's error output, whole lines only."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    out: list[str] = []
    for line in reversed(lines):
        if out and sum(len(x) + 1 for x in out) + len(line) > limit:
            break
        out.insert(0, line.strip())
    return " | ".join(out)


def _end_with_parent() -> Callable[[], None] | None:
    """Linux: the run process gets SIGTERM (and ends cleanly: safe state, files) if the service dies,
    even by kill -9, so no orphan run goes on unsupervised. Elsewhere: nothing (None)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return set_parent_death_signal


_JOB_HANDLE: Any = None


def _windows_end_with_parent(proc: subprocess.Popen, out: Callable[[str], None]) -> None:
    """Windows: put the run process into a Job Object that is closed when the service ends (also
    when it is killed), which ends the run process too; the next start recovers the interrupted run.
    Without it, a killed service would leave an unsupervised run behind. Best effort: a failure is
    said and the run goes on."""
    global _JOB_HANDLE
    if sys.platform != "win32":
        return
    try:
        import ctypes
        from ctypes import wintypes

        class _Basic(ctypes.Structure):
            _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                        ("LimitFlags", wintypes.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
                        ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wintypes.DWORD),
                        ("Affinity", ctypes.c_size_t), ("PriorityClass", wintypes.DWORD), ("SchedulingClass", wintypes.DWORD)]

        class _Io(ctypes.Structure):
            _fields_ = [(name, ctypes.c_uint64) for name in ("ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
                                                             "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

        class _Extended(ctypes.Structure):
            _fields_ = [("BasicLimitInformation", _Basic), ("IoInfo", _Io), ("ProcessMemoryLimit", ctypes.c_size_t),
                        ("JobMemoryLimit", ctypes.c_size_t), ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.CreateJobObjectW.restype = wintypes.HANDLE
        if _JOB_HANDLE is None:
            job = kernel32.CreateJobObjectW(None, None)
            info = _Extended()
            info.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            if not job or not kernel32.SetInformationJobObject(job, 9, ctypes.byref(info), ctypes.sizeof(info)):  # JobObjectExtendedLimitInformation
                raise OSError(ctypes.get_last_error(), "CreateJobObject/SetInformationJobObject failed")
            _JOB_HANDLE = job
        if not kernel32.AssignProcessToJobObject(_JOB_HANDLE, wintypes.HANDLE(int(proc._handle))):  # type: ignore[attr-defined]
            raise OSError(ctypes.get_last_error(), "AssignProcessToJobObject failed")
    except Exception as exc:  # the run goes on; only the clean-up on a killed service is lost
        out(f"the run process is not tied to the service ({type(exc).__name__}: {exc}); if the service is killed, the run goes on alone")


def _local(t: datetime, schedule: Schedule) -> str:
    return t.astimezone(schedule.tz).strftime("%a %Y-%m-%d %H:%M %Z")


def _station_seconds(folder: Path) -> float:
    try:
        return float(read_run(folder).as_dict()["clock"]["elapsed_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _failing_metrics(folder: Path) -> list[str]:
    try:
        data = read_results(folder).as_dict()
    except (OSError, ValueError):
        return []
    out = []
    for r in data.get("results", []):
        for name, m in r.get("metrics", {}).items():
            if m.get("verdict") in ("fail", "warn"):
                value = m.get("value")
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                out.append(f"  {r.get('subject')}: {name} = {shown} {m.get('unit', '')} ({m['verdict']}; limit {json.dumps(m.get('limit'))})")
    return (["Metrics outside their limits:"] + out) if out else []
