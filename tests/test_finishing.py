"""Crash-safe finishing: a kill -9 at any point after the acquisition (during finishing, during
``recover`` itself), SIGTERM during finishing, the service stopped or killed around a run: the next
start leaves every run folder complete, recorded once in the results database, with the outcome its
files show, alarmed if and only if it should be; the database password never in a process's argv.

Kills at chosen points are injected with ``harness.common.kill_points`` (``MICROSCOPE_QC_TEST_KILL_AT``);
the runs are real ``microscope-qc run`` processes on a fast simulated station."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from harness.cli import commands as cli
from harness.records.journal import read_journal
from harness.store.results_store import ResultsStore
from harness.unattended.run_launcher import ProcessLauncher
from harness.unattended.schedule_file import read_schedule_file
from harness.unattended.scheduler import Pending, Scheduler, ScheduleState
from simulators.clock import VirtualClock
from tests.conftest import FAST, ROOT, station_variant
from tests.test_schedule import BERLIN, _Hooks, webhook_server  # noqa: F401  (the fixture 'webhook')

PROTOCOL = """\
protocol: finishing-test
title: Finishing test
version: "1"
requires: [lasers, power_meter]
retries: {attempts: 2, delay: 1 s}
max_missing: 0
steps:
  - meter: {wavelength: 488, averaging: 10}
  - laser: {line: 488, setpoint: 50 %, emission: on}
  - sample: {series: power_488, every: 1 s, for: 30 s}
  - laser: {line: 488, emission: off}
acceptance:
  stability_pct: {pass: [90.0, null], unit: "%"}
"""


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Any]:
    protocol = tmp_path / "finishing-test.yaml"
    protocol.write_text(PROTOCOL)
    station = station_variant(tmp_path, FAST)
    return {"protocol": protocol, "station": station, "runs": tmp_path / "runs", "db": f"sqlite:///{tmp_path / 'results.sqlite'}"}


def _run_args(s: dict[str, Any], *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness", "run", str(s["protocol"]), "--station", str(s["station"]), "--runs-dir", str(s["runs"]),
            "--quiet", "--yes", "--db", s["db"], *extra]


def _env(kill_at: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MICROSCOPE_QC_TEST_KILL_AT"}
    if kill_at:
        env["MICROSCOPE_QC_TEST_KILL_AT"] = kill_at
    return env


def _run(s: dict[str, Any], kill_at: str | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_run_args(s, *extra), cwd=ROOT, env=_env(kill_at), capture_output=True, text=True, timeout=300)


def _check_complete(folder: Path, db: str, status: str) -> dict[str, Any]:
    """The folder is complete and readable, recorded once in the database with the outcome the files show."""
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == status
    results = json.loads((folder / "results.json").read_text())
    assert results["run_id"] == run["run_id"] and results["run_status"] == status
    assert (folder / results["report"]).is_file()
    check = subprocess.run(["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split("  ", 1)[1] for line in (folder / "MANIFEST.sha256").read_text().splitlines()}
    assert listed == {p.name for p in folder.iterdir()} - {"MANIFEST.sha256"}
    journal = read_journal(folder / "journal.jsonl")
    assert [r["seq"] for r in journal] == list(range(len(journal)))
    assert journal[-1]["type"] == "finished" and journal[-1]["status"] == status
    with ResultsStore(db) as store:
        rows = [r for r in store.history() if r.run_id == run["run_id"]]
    assert len(rows) == 1 and rows[0].status == status, rows
    if status == "completed":
        assert results["verdict"] == rows[0].verdict == "pass"
    assert "acquisition" not in run and run.get("finished_utc")
    return run


# --- 1. finishing is a recorded, resumable step -------------------------------------------------------
@pytest.mark.parametrize("point", ["finishing:start", "finishing:after_results", "finishing:after_record", "finishing:after_run_json"])
def test_a_kill_during_finishing_is_completed_by_recover_and_stays_completed(setup: dict[str, Any], point: str,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    done = _run(setup, point)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (folder,) = setup["runs"].iterdir()
    run = json.loads((folder / "run.json").read_text())
    if point != "finishing:after_run_json":  # not `completed` while finishing is not done; the acquisition's outcome is kept
        assert run["status"] == "finishing" and run["acquisition"] == {"status": "completed", "reason": ""}
    assert not (folder / "MANIFEST.sha256").exists()

    assert cli.run(["recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]]) == 0
    out = capsys.readouterr().out
    assert f"recovered {folder}: status completed, verdict pass" in out
    _check_complete(folder, setup["db"], "completed")
    assert cli.run(["recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]]) == 0
    assert f"no interrupted runs in {setup['runs']}" in capsys.readouterr().out


def test_the_next_run_completes_a_finishing_cut_off_by_a_kill(setup: dict[str, Any]) -> None:
    assert _run(setup, "finishing:after_results").returncode == -signal.SIGKILL
    (first,) = setup["runs"].iterdir()
    done = _run(setup)  # the automatic recovery before every run
    assert done.returncode == 0, done.stderr
    assert f"recovered {first}: status completed" in done.stderr
    _check_complete(first, setup["db"], "completed")
    (second,) = set(setup["runs"].iterdir()) - {first}
    _check_complete(second, setup["db"], "completed")


def _kill_when(proc: subprocess.Popen[str], runs: Path, seen: Any) -> list[str]:
    """SIGKILL ``proc`` the moment ``seen(folder)`` holds for a run folder (polled every 2 ms)."""
    what: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            for folder in runs.glob("*/"):
                try:
                    if seen(folder):
                        proc.kill()
                        what.append((folder / "run.json").read_text())
                        return
                except OSError:
                    pass
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return what


def test_a_kill_as_the_results_appear_is_completed_by_recover(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The campaign's own reproduction, without a kill point: SIGKILL the moment results.json appears."""
    proc = subprocess.Popen(_run_args(setup), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, setup["runs"], lambda folder: (folder / "results.json").exists())
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    (folder,) = setup["runs"].iterdir()
    assert cli.run(["recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]]) == 0
    _check_complete(folder, setup["db"], "completed")


def test_a_kill_of_recover_as_it_rewrites_run_json_is_completed_by_the_next_recover(setup: dict[str, Any]) -> None:
    """Without a kill point: SIGKILL ``recover`` the moment it has rewritten run.json."""
    assert _run(setup, "acquisition:started").returncode == -signal.SIGKILL
    (folder,) = setup["runs"].iterdir()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, setup["runs"], lambda f: '"status": "running"' not in (f / "run.json").read_text())
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert cli.run(["recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]]) == 0
    _check_complete(folder, setup["db"], "interrupted")


# --- 2. recovery is resumable ----------------------------------------------------------------------
@pytest.mark.parametrize("point", ["recovery:before_finishing", "finishing:after_results", "finishing:after_record", "finishing:after_run_json"])
def test_a_kill_during_recover_is_completed_by_the_next_recover(setup: dict[str, Any], point: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(setup, "acquisition:started").returncode == -signal.SIGKILL
    (folder,) = setup["runs"].iterdir()
    assert json.loads((folder / "run.json").read_text())["status"] == "running"
    killed = subprocess.run([sys.executable, "-m", "harness", "recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]],
                            cwd=ROOT, env=_env(point), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (folder / "MANIFEST.sha256").exists()

    assert cli.run(["recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]]) == 0
    assert f"recovered {folder}: status interrupted" in capsys.readouterr().out
    run = _check_complete(folder, setup["db"], "interrupted")
    assert run["reason"].startswith("the run process ended without finishing (killed or power loss)")
    assert sum(1 for r in read_journal(folder / "journal.jsonl") if r["type"] == "recovered") == 1
    assert cli.run(["recover", "--runs-dir", str(setup["runs"]), "--db", setup["db"]]) == 0
    assert "no interrupted runs" in capsys.readouterr().out


# --- 3a. SIGTERM during finishing -------------------------------------------------------------------
def _on_manifest(runs: Path, then: Any, timeout: float = 120) -> threading.Thread:
    """Call ``then()`` the moment a run folder's MANIFEST.sha256 appears."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if list(runs.glob("*/MANIFEST.sha256")):
                then()
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("when", ["manifest appears", "mid-finishing"])
def test_sigterm_during_finishing_does_not_cut_the_run_short(setup: dict[str, Any], when: str) -> None:
    outcome_file = setup["runs"].parent / "outcome.json"
    kill_at = "finishing:after_results:TERM" if when == "mid-finishing" else None
    proc = subprocess.Popen(_run_args(setup, "--outcome", str(outcome_file)), cwd=ROOT, env=_env(kill_at),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if when == "manifest appears":
        _on_manifest(setup["runs"], lambda: proc.send_signal(signal.SIGTERM))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (folder,) = setup["runs"].iterdir()
    _check_complete(folder, setup["db"], "completed")
    outcome = json.loads(outcome_file.read_text())
    assert outcome["outcome"] == "completed" and outcome["stored"] == "imported" and outcome["folder"] == str(folder)


def _schedule(tmp_path: Path, s: dict[str, Any], notify_on: list[str], server: Any, **extra: Any) -> Any:
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump({
        "schedule": "finishing-test", "timezone": "Europe/Berlin", "station": str(s["station"]), "runs_dir": "runs",
        "database": s["db"], "preconditions": {"free_disk": "10 MB", "station_free_within": "5 s"},
        "notify": {"on": notify_on, "webhooks": [{"name": "facility", "url": f"http://127.0.0.1:{server.server_port}/hook"}]},
        "jobs": [{"name": "hourly", "protocol": str(s["protocol"]), "cron": "0 * * * *", "retries": {"attempts": 3, "delay": "10 min"}}],
        **extra,
    }, sort_keys=False))
    return read_schedule_file(path)


@pytest.mark.parametrize("when", ["manifest appears", "mid-finishing"])
def test_the_service_stopped_during_finishing_records_the_completed_run(tmp_path: Path, setup: dict[str, Any], webhook: Any, when: str) -> None:
    server, received = webhook
    schedule = _schedule(tmp_path, setup, ["fail", "warn", "run_failed", "interrupted", "skipped"], server)
    env = _env("finishing:after_results:STOP" if when == "mid-finishing" else None)
    service: Scheduler

    def stop_during_finishing(job: Any, proc: Any, attempt: int) -> None:
        if when == "manifest appears":
            _on_manifest(schedule.runs_dir, service.terminate)
            return

        def stop_then_continue() -> None:  # the run process stopped itself mid-finishing: stop the service, let the run go on
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED:
                time.sleep(0.01)
            service.terminate()  # SIGTERM to the run process (pending while it is stopped)
            time.sleep(0.2)
            proc.send_signal(signal.SIGCONT)

        threading.Thread(target=stop_then_continue, daemon=True).start()

    start = datetime(2026, 12, 1, 0, 30, tzinfo=BERLIN)
    service = Scheduler(schedule, VirtualClock(start), on_started=stop_during_finishing, env=env, out=lambda s: None)
    service.run(until=start + timedelta(hours=1, minutes=30))
    state = ScheduleState(schedule.state_dir)
    [o] = state.outcomes()
    assert (o["outcome"], o["verdict"], o["retry_at"], o["stored"]) == ("completed", "pass", None, "imported"), o
    assert not state.pending and received == []  # not re-run, not retried, not alarmed
    _check_complete(Path(o["folder"]), setup["db"], "completed")


# --- 3b. the service killed just after its run finished -----------------------------------------------
@pytest.mark.parametrize("how", ["kill -9 as the manifest appears", "kill point after the run"])
def test_a_service_killed_after_its_run_never_runs_that_due_time_again(tmp_path: Path, setup: dict[str, Any], webhook: Any, how: str) -> None:
    server, received = webhook
    schedule = _schedule(tmp_path, setup, ["fail", "warn", "run_failed", "interrupted", "skipped"], server)
    schedule.state_dir.mkdir(parents=True, exist_ok=True)
    state = ScheduleState(schedule.state_dir)
    due = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    state.last_due["hourly"] = due.isoformat()
    state.save()
    job_file = yaml.safe_load(schedule.path.read_text())
    job_file["jobs"][0]["missed"] = "run_once"
    schedule.path.write_text(yaml.safe_dump(job_file, sort_keys=False))
    schedule = read_schedule_file(schedule.path)
    env = _env("service:after_run" if how == "kill point after the run" else None)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "schedule", "run", str(schedule.path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if how.startswith("kill -9"):
        _on_manifest(schedule.runs_dir, proc.kill)
    try:
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    (folder,) = [p for p in schedule.runs_dir.iterdir() if (p / "run.json").exists()]
    pid = json.loads((folder / "run.json").read_text())["process"]["pid"]
    deadline = time.monotonic() + 120  # the run process finishes on its own (SIGTERM from the dying service is ignored then)
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)

    said: list[str] = []
    for _ in range(2):  # restarted (twice): the due time is settled from the run folder, once
        Scheduler(schedule, out=said.append).start()
        state = ScheduleState(schedule.state_dir)
        outcomes = [o for o in state.outcomes() if o["job"] == "hourly" and o["outcome"] != "missed"]
        assert [(o["outcome"], o["folder"], o["retry_at"]) for o in outcomes] == [("completed", str(folder), None)], outcomes
        assert not any(p.job == "hourly" and p.started for p in state.pending), state.pending
        assert not [p for p in state.pending if datetime.fromisoformat(p.due) <= due + timedelta(hours=3)], state.pending
    assert [p for p in schedule.runs_dir.iterdir() if (p / "run.json").exists()] == [folder] and received == []
    _check_complete(folder, setup["db"], "completed")


# --- 3c. a run recovered at service start gets its outcome line and its notification ------------------------
@pytest.mark.parametrize("state_knows", [True, False])
def test_a_run_recovered_at_service_start_is_recorded_notified_and_retried(tmp_path: Path, setup: dict[str, Any], webhook: Any,
                                                                           state_knows: bool) -> None:
    """``state_knows``: state.json has the attempt as started (False: state.json lost it, the tag in run.json alone tells)."""
    server, received = webhook
    schedule = _schedule(tmp_path, setup, ["interrupted"], server)
    setup["runs"] = schedule.runs_dir
    now = datetime(2026, 12, 1, 1, 5, tzinfo=BERLIN)
    due = datetime(2026, 12, 1, 1, 0, tzinfo=BERLIN).astimezone(timezone.utc).isoformat()
    tag = {"schedule": "finishing-test", "job": "hourly", "due": due, "attempt": 1, "started": due}
    # the service started this attempt, then the machine lost power: the run process died mid-run, the service too
    assert _run(setup, "acquisition:started", "--job-tag", json.dumps(tag)).returncode == -signal.SIGKILL
    (folder,) = [p for p in schedule.runs_dir.iterdir() if (p / "run.json").exists()]
    schedule.state_dir.mkdir(parents=True, exist_ok=True)
    state = ScheduleState(schedule.state_dir)
    state.last_due["hourly"] = due
    state.pending = [Pending("hourly", due, 1, due, "", started=due)] if state_knows else []
    state.save()

    Scheduler(schedule, VirtualClock(now), out=lambda s: None).start()
    state = ScheduleState(schedule.state_dir)
    [o] = state.outcomes()
    assert (o["job"], o["due"], o["attempt"], o["outcome"], o["folder"]) == ("hourly", due, 1, "interrupted", str(folder)), o
    assert o["retry_at"] and [(p.job, p.due, p.attempt, p.started) for p in state.pending] == [("hourly", due, 2, "")]
    assert [r["json"]["event"] for r in received] == ["interrupted"]
    _check_complete(folder, setup["db"], "interrupted")


# --- 4. the database password is never in a process's argv ------------------------------------------------
def test_the_database_url_goes_to_the_run_process_by_environment_not_argv(tmp_path: Path, setup: dict[str, Any], webhook: Any) -> None:
    server, _ = webhook
    url = "postgresql://qcuser:pa55-W0rd-xyz@127.0.0.1:5432/qc"
    schedule = _schedule(tmp_path, setup, ["fail"], server)
    schedule.spec.database = url
    schedule.state_dir.mkdir(parents=True, exist_ok=True)
    schedule.runs_dir.mkdir(parents=True, exist_ok=True)
    started: list[tuple[list[str], dict[str, str]]] = []

    class _Recorded:
        returncode = 0

        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            started.append((list(cmd), dict(kwargs["env"])))
            Path(cmd[cmd.index("--outcome") + 1]).write_text(json.dumps({"status": "completed", "outcome": "completed"}))

        def communicate(self) -> tuple[str, str]:
            return "", ""

    launcher = ProcessLauncher(schedule, VirtualClock(datetime(2026, 12, 1, 0, 30, tzinfo=BERLIN)), out=lambda s: None, popen=_Recorded)
    launcher.launch(schedule.spec.jobs[0], Pending("hourly", "2026-12-01T00:00:00+00:00", 1, "2026-12-01T00:00:00+00:00"), 0.0, False)
    [(argv, env)] = started
    assert not any("pa55-W0rd-xyz" in arg for arg in argv), argv
    assert "--db" not in argv and env["MICROSCOPE_QC_DB"] == url


def test_a_repeat_of_an_attempt_is_told_apart_from_its_stopped_first_run(tmp_path: Path, setup: dict[str, Any], webhook: Any) -> None:
    """An attempt stopped with the service (run folder ``aborted``, recorded as ``stopped``) is started again;
    the service dies before that repeat made a run folder: the next start runs it again, it is not
    settled from the first run's folder."""
    server, received = webhook
    schedule = _schedule(tmp_path, setup, ["run_failed", "interrupted"], server)
    setup["runs"] = schedule.runs_dir
    due = "2026-12-01T00:00:00+00:00"
    first = {"schedule": "finishing-test", "job": "hourly", "due": due, "attempt": 1, "started": "2026-12-01T00:00:05+00:00"}
    proc = subprocess.Popen(_run_args(setup, "--job-tag", json.dumps(first)), cwd=ROOT, env=_env("finishing:start:STOP"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # make the first run's folder end `aborted`: stopped mid-finishing, its acquisition status edited
        deadline = time.monotonic() + 120
        while psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.01)
        (folder,) = [p for p in schedule.runs_dir.iterdir() if (p / "run.json").exists()]
        run = json.loads((folder / "run.json").read_text())
        run["acquisition"] = {"status": "aborted", "reason": "terminated (SIGTERM)"}
        (folder / "run.json").write_text(json.dumps(run))
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.communicate(timeout=300)
    assert json.loads((folder / "run.json").read_text())["status"] == "aborted"
    state = ScheduleState(schedule.state_dir)
    state.last_due["hourly"] = due
    state.pending = [Pending("hourly", due, 1, due, "again after the service was stopped", started="2026-12-01T01:00:00+00:00")]
    state.save()
    Scheduler(schedule, VirtualClock(datetime(2026, 12, 1, 1, 5, tzinfo=timezone.utc)), out=lambda s: None).start()
    state = ScheduleState(schedule.state_dir)
    assert [(p.job, p.due, p.attempt, p.started) for p in state.pending if p.due == due] == [("hourly", due, 1, "")]
    assert [o for o in state.outcomes() if o["due"] == due] == [] and received == []


def test_analyze_refuses_a_run_that_is_finishing(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(setup, "finishing:start").returncode == -signal.SIGKILL
    (folder,) = setup["runs"].iterdir()
    assert cli.run(["analyze", str(folder)]) == cli.EXIT_USER
    assert f"microscope-qc recover {folder}" in capsys.readouterr().err


def test_the_run_command_in_process_gives_its_signal_handlers_back(setup: dict[str, Any]) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert cli.run(_run_args(setup)[3:]) == 0
    assert {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} == before
    (folder,) = setup["runs"].iterdir()
    _check_complete(folder, setup["db"], "completed")


@pytest.mark.parametrize("point", ["finishing:done", "finishing:after_record"])
def test_a_run_process_killed_after_its_run_ended_is_judged_by_its_run_folder(tmp_path: Path, setup: dict[str, Any], webhook: Any,
                                                                             point: str) -> None:
    """No outcome file from the run process: the service recovers what is left and takes the run
    folder's outcome (completed: not interrupted, not retried, not alarmed)."""
    server, received = webhook
    schedule = _schedule(tmp_path, setup, ["fail", "warn", "run_failed", "interrupted", "skipped"], server)
    start = datetime(2026, 12, 1, 0, 30, tzinfo=BERLIN)
    Scheduler(schedule, VirtualClock(start), env=_env(point), out=lambda s: None).run(until=start + timedelta(minutes=45))
    state = ScheduleState(schedule.state_dir)
    [o] = state.outcomes()
    assert (o["outcome"], o["verdict"], o["retry_at"]) == ("completed", "pass", None), o
    assert o["stored"] in ("imported", "updated")  # updated: recorded again by the recovery that finished it
    assert "outcome from its run folder" in o["reason"]
    assert not state.pending and received == []
    _check_complete(Path(o["folder"]), setup["db"], "completed")
