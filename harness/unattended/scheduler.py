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
  as skipped and not retried (a user error; the next due time tries again). It checks free disk
  space here; the run process itself waits for the station lock and checks the laser interlocks, and exits without touching anything if one fails (exit code 5).
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

The parts: this loop; its persisted state (``schedule_state``); the run launcher it is given
(``run_launcher.RunLauncher``: run processes, recovery, safe state; ``ProcessLauncher`` by default);
the platform code that ties a run process to the service (``process_ties``); notification texts
(``messages``). This module is a little over 400 lines: the loop's rules (queueing, attempts,
endings, reconciling at start) read as one piece.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from harness.common import kill_points
from harness.common.errors import UserError
from harness.records.run_record import read_run
from harness.recovery.recover import RecoveryReport
from harness.run.preflight import file_facts, preflight
from harness.unattended.messages import body, local, subject
from harness.unattended.notify import Notifier
from harness.unattended.run_launcher import ORPHAN_WAIT_S, ProcessLauncher, RunLauncher, attempt_tag, folder_of, folder_result
from harness.unattended.schedule_file import Job, Schedule
from harness.unattended.schedule_state import DONE, Outcome, Pending, ScheduleState, iso, parse_iso
from simulators.clock import Clock, WallClock

__all__ = ["DONE", "ORPHAN_WAIT_S", "Outcome", "Pending", "ProcessLauncher", "RunLauncher", "ScheduleState", "Scheduler", "folder_result"]
REAL_WAKE_S = 60.0  # on the wall clock the service looks at the calendar at least this often


class Scheduler:
    """The service loop of one schedule (see the module's contract). ``launcher`` does everything
    outside the service's state (run processes, recovery, safe state): ``ProcessLauncher`` unless given;
    ``on_started`` and ``env`` are the default launcher's."""

    def __init__(
        self,
        schedule: Schedule,
        clock: Clock | None = None,
        on_started: Callable[[Job, subprocess.Popen, int], None] | None = None,
        env: dict[str, str] | None = None,
        out: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
        launcher: RunLauncher | None = None,
    ) -> None:
        self.schedule = schedule
        self.clock = clock or WallClock()
        self.out = out
        self.launcher: RunLauncher = launcher or ProcessLauncher(schedule, self.clock, env=env, out=out, on_started=on_started)
        self.stop = threading.Event()
        self.state = ScheduleState(schedule.state_dir)
        self.notifier = Notifier(schedule.spec.notify, env) if schedule.spec.notify else None
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
        self._reconcile(self.launcher.recover())
        for station, confirmed in self._safe_state("service start").items():
            if confirmed is False and station not in self.state.unsafe:
                now = self.clock.utc()
                self.state.unsafe[station] = {"since": iso(now), "reason": "safe state not confirmed at service start"}
                self._finish(Outcome("(service start)", iso(now), 0, "unsafe", iso(now), station=station, reason=(
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
                self.state.last_due[job.name] = iso(now)
                continue
            missed = self.schedule.missed(job, parse_iso(last), now)
            if not missed:
                continue
            self.state.last_due[job.name] = iso(missed[-1])
            first, latest = local(missed[0], self.schedule), local(missed[-1], self.schedule)
            what = f"{len(missed)} time{'s' if len(missed) > 1 else ''} missed while the service was not running ({first} .. {latest})"
            if job.missed == "run_once":
                if self._queue(job, missed[-1], note=what + "; running once now"):
                    self.out(f"{job.name}: {what}; running once now")
            else:
                self._finish(Outcome(job.name, iso(missed[-1]), 0, "missed", iso(now), reason=what + "; skipped (missed: skip)"), notify="skipped")
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
            ready = sorted((p for p in self.state.pending if parse_iso(p.not_before) <= now), key=lambda p: (p.not_before, p.due))
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
        times = [parse_iso(p.not_before) for p in self.state.pending]
        for job in self.schedule.spec.jobs:
            if job.enabled:
                times.append(self.schedule.next_due(job, parse_iso(self.state.last_due.get(job.name, iso(now)))))
        return min(times) if times else now + timedelta(days=1)

    def _queue_due(self, now: datetime) -> None:
        for job in self.schedule.spec.jobs:
            if not job.enabled:
                continue
            last = parse_iso(self.state.last_due.get(job.name, iso(now)))
            if self.schedule.next_due(job, last) <= now:
                dues = self.schedule.missed(job, last, now)
                due = dues[-1]  # the latest time; earlier ones passed while the station was busy
                self.state.last_due[job.name] = iso(due)
                if len(dues) > 1:
                    self._finish(Outcome(job.name, iso(dues[0]), 0, "missed", iso(now),
                                         reason=f"{len(dues) - 1} time(s) from {local(dues[0], self.schedule)} passed while earlier work ran; "
                                                "running the latest only"),
                                 notify="skipped")
                if any(p.job == job.name for p in self.state.pending):
                    earlier = local(parse_iso(next(p.due for p in self.state.pending if p.job == job.name)), self.schedule)
                    self._finish(Outcome(job.name, iso(due), 0, "skipped", iso(now), reason=f"an earlier time of this job ({earlier}) is still pending"),
                                 notify="skipped")
                else:
                    self._queue(job, due)
                self.state.save()

    def _queue(self, job: Job, due: datetime, note: str = "") -> bool:
        """An attempt of ``due``; never again for a due time ``outcomes.jsonl`` says was done (a state.json
        that was lost, restored or rolled back must not run a completed time twice)."""
        if any(o.get("job") == job.name and o.get("due") == iso(due) and o.get("outcome") in DONE for o in self.state.outcomes()):
            self.out(f"{job.name}: {local(due, self.schedule)} was done already (outcomes.jsonl): not run again")
            return False
        self.state.pending.append(Pending(job.name, iso(due), 1, iso(max(due, self.clock.utc())), note))
        return True

    # -- one attempt --------------------------------------------------------------------------------
    def run_now(self, name: str) -> Outcome:
        """One attempt of one job now (``schedule run-now``); no retry is queued."""
        job = self.schedule.job(name)
        self.schedule.runs_dir.mkdir(parents=True, exist_ok=True)
        self.launcher.recover()
        now = self.clock.utc()
        self._manual = True  # a person is there: no notifications; the service's state.json is not touched
        return self._attempt(Pending(job.name, iso(now), 1, iso(now), "run now"), retry=False)

    def _attempt(self, p: Pending, retry: bool = True) -> Outcome:
        if p in self.state.pending:
            self.state.pending.remove(p)
        job = self.schedule.job(p.job)
        pre = self.schedule.preconditions_of(job)
        now = self.clock.utc()
        base: dict[str, Any] = {"protocol": str(self.schedule.protocol_of(job)), "station": str(self.schedule.station_of(job))}
        station_key = str(self.schedule.station_of(job))
        if station_key in self.state.unsafe:
            # never run blindly on a station that may have a laser on: try its safe state again first
            confirmed = self._safe_state(f"before {job.name}: the station's safe state was not confirmed", [self.schedule.station_of(job)])
            if confirmed.get(station_key) is True:
                self.out(f"{job.name}: safe state of {Path(station_key).name} confirmed again; runs resume")
                self.state.unsafe.pop(station_key, None)
                if not self._manual:
                    self.state.save()
            else:
                since = self.state.unsafe[station_key].get("since", "")
                self.out(f"{job.name}: skipped: the station's safe state is still NOT confirmed (since {since})")
                return self._finish(Outcome(job.name, p.due, p.attempt, "skipped", iso(now), reason=(
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
        self.out(f"{local(now, self.schedule)} {job.name}: attempt {p.attempt} (due {local(parse_iso(p.due), self.schedule)}{'; ' + p.note if p.note else ''})")
        if not self._manual:  # durably, before the run: this due time is being handled by the run folder tagged with it
            p.started = iso(now)
            self.state.pending.append(p)
            self.state.save()
        result = self.launcher.launch(job, p, pre.station_free_within, pre.interlock_closed)
        kill_points.reached("service:after_run")
        if p in self.state.pending:
            self.state.pending.remove(p)
        return self._conclude(job, p, result, retry, base)

    def _conclude(self, job: Job, p: Pending, result: dict[str, Any], retry: bool, base: dict[str, Any]) -> Outcome:
        """Record, notify and retry per how the attempt's run ended (``result``: from its process, or
        from its run folder)."""
        now = self.clock.utc()
        if result["status"] == "not started":
            if result.get("user_error"):
                return self._refused(job, p, result.get("reason", ""), base)
            return self._not_started(job, p, result.get("reason", ""), retry, base)
        status = result["status"]
        outcome = Outcome(job.name, p.due, p.attempt, status, iso(now), verdict=result.get("verdict"), folder=result.get("folder"),
                          reason=result.get("reason", ""), stored=result.get("stored", ""), **base)
        self.out(f"{local(now, self.schedule)} {job.name}: {status}{', verdict ' + outcome.verdict if outcome.verdict else ''}"
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
            self.state.pending.append(Pending(job.name, p.due, p.attempt, iso(now), "again after the service was stopped"))
            self.state.save()
            return self._finish(outcome)
        # failed, aborted or interrupted: the station goes to its safe state; retry while attempts last
        confirmed = self._safe_state(f"after {status} run of {job.name}", [self.schedule.station_of(job)])
        if confirmed.get(str(self.schedule.station_of(job))) is False:
            outcome.outcome = "unsafe"
            outcome.reason = (outcome.reason + "; " if outcome.reason else "") + "the service's safe state after the run was NOT confirmed"
            return self._unsafe(job, outcome, tried=True)
        if retry and p.attempt < job.retries.attempts and not result.get("user_error"):
            at = now + timedelta(seconds=job.retries.delay)
            outcome.retry_at = iso(at)
            self.state.pending.append(Pending(job.name, p.due, p.attempt + 1, iso(at), f"retry after {status}"))
            self.state.save()
        return self._finish(outcome, notify="interrupted" if status == "interrupted" else "run_failed")

    def _unsafe(self, job: Job, outcome: Outcome, tried: bool = False) -> Outcome:
        """The safe state was not confirmed: no retry; try the safe state again now; if still not
        confirmed, mark the station unsafe (its jobs are skipped until a later try confirms it)."""
        station = self.schedule.station_of(job)
        key = str(station)
        confirmed = None if tried else self._safe_state(f"after the unsafe end of {job.name}", [station]).get(key)
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

    def _not_started(self, job: Job, p: Pending, reason: str, retry: bool, base: dict[str, Any]) -> Outcome:
        now = self.clock.utc()
        if retry and job.on_precondition_failure == "postpone" and p.attempt < job.retries.attempts:
            at = now + timedelta(seconds=job.retries.delay)
            self.state.pending.append(Pending(job.name, p.due, p.attempt + 1, iso(at), f"postponed: {reason}"))
            self.state.save()
            self.out(f"{job.name}: not started ({reason}); postponed to {local(at, self.schedule)}")
            return self._finish(Outcome(job.name, p.due, p.attempt, "not started", iso(now), reason=reason, retry_at=iso(at), **base))
        self.out(f"{job.name}: skipped ({reason})")
        return self._finish(Outcome(job.name, p.due, p.attempt, "skipped", iso(now), reason=f"precondition failed: {reason}", **base), notify="skipped")

    def _refused(self, job: Job, p: Pending, reason: str, base: dict[str, Any]) -> Outcome:
        """The job's files do not preflight: nothing was touched; no retry (the next due time tries again)."""
        now = self.clock.utc()
        self.out(f"{job.name}: not started, refused by preflight ({reason})")
        return self._finish(Outcome(job.name, p.due, p.attempt, "not started", iso(now), reason=reason, **base), notify="skipped")

    def _preflight_problem(self, job: Job) -> tuple[str, str]:
        """The job's protocol and station files, as they are now, checked without the devices (the
        run process checks again with them): (mistakes, data that would not fit on the disk)."""
        try:
            report = preflight(self.schedule.protocol_of(job), file_facts(self.schedule.station_of(job)), self.schedule.runs_dir)
        except UserError as exc:
            return f"preflight: {exc}", ""
        return ("preflight: " + "; ".join(report.problems)) if report.problems else "", report.no_space

    def _finish(self, outcome: Outcome, notify: str | None = None) -> Outcome:
        if notify and self.notifier and self.notifier.wants(notify) and (not self._manual or notify == "unsafe"):
            deliveries = self.notifier.send(notify, subject(self.schedule, outcome, notify), body(self.schedule, outcome), details=asdict(outcome))
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

    # -- the service's record agrees with the run folders ---------------------------------------------
    def _reconcile(self, recovered: list[RecoveryReport]) -> None:
        """At start: attempts whose run process was started by a service that then died (kill -9,
        power loss) are settled from their run folders, never run twice: a completed run is recorded
        as completed (not re-run, retried or alarmed); an interrupted one is recorded, notified
        (``interrupted``) and retried. An attempt that made no run folder was not made: it runs
        again. Runs recovered now that belong to this schedule get their outcome line too."""
        recorded = {o.get("folder") for o in self.state.outcomes() if o.get("folder")}
        settled: set[str] = set()
        for p in [p for p in self.state.pending if p.started]:
            folder = folder_of(self.schedule.runs_dir, attempt_tag(self.schedule, p.job, p.due, p.attempt, p.started))
            truth = folder_result(folder) if folder else None
            if folder is not None and truth is None:
                truth = self.launcher.outlive(folder)
            if folder is None or truth is None:
                p.started = ""
                why = "its run process made no run folder" if folder is None else f"its run {folder} is still going"
                self.out(f"{p.job}: the attempt {p.attempt} of {p.due} was started by a service that ended; {why}: it runs again")
                continue
            self.state.pending.remove(p)
            settled.add(str(folder))
            if str(folder) in recorded:  # recorded already: the service ended between its record and its state
                continue
            truth["reason"] = ((truth["reason"] + "; " if truth["reason"] else "")
                               + "settled from its run folder at service start (the service had ended during the run)")
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
            self._settle(Pending(str(tag["job"]), str(tag.get("due") or iso(self.clock.utc())), int(tag.get("attempt") or 1),
                                 iso(self.clock.utc())), truth)
        self.state.save()

    def _settle(self, p: Pending, truth: dict[str, Any]) -> None:
        job = self.schedule.job(p.job)
        base: dict[str, Any] = {"protocol": str(self.schedule.protocol_of(job)), "station": str(self.schedule.station_of(job))}
        self.out(f"{job.name}: the run of {p.due} (attempt {p.attempt}) ended {truth['status']} while the service was not there: {truth.get('folder')}")
        self._conclude(job, p, truth, retry=True, base=base)

    def _safe_state(self, why: str, stations: list[Path] | None = None) -> dict[str, bool | None]:
        """Bring every station of the schedule (or ``stations``) into its safe state (the launcher's
        ``safe_state``). Per station file: True confirmed, False NOT confirmed, None not tried (busy,
        or it could not come up). A station marked unsafe that is confirmed here is cleared."""
        found: dict[str, bool | None] = {}
        for path in sorted(stations or {self.schedule.station_of(j) for j in self.schedule.spec.jobs}):
            found[str(path)] = self.launcher.safe_state(path, why)
            if found[str(path)] is True and str(path) in self.state.unsafe:
                self.state.unsafe.pop(str(path))
                self.out(f"{path.name}: safe state confirmed again; its jobs run again")
        return found

    def terminate(self) -> None:
        """Stop the service; a running run is asked to abort (it ends cleanly: safe state, files)."""
        self.stop.set()
        self.launcher.terminate()
