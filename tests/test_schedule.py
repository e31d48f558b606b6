"""Unattended operation: schedule files, due times, and a virtual-time week of the service.

The week runs the real service loop (``Scheduler``) with a virtual clock: every job is a real
``microscope-qc run`` process on a simulated station; faults are injected by changing the station
file while virtual time passes; one run process is killed with SIGKILL; the service is stopped for
two days (machine off) and restarted. Notifications go to a webhook server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from harness.common import kill_points
from harness.common.errors import UserError
from harness.unattended.schedule_file import read_schedule_file
from harness.unattended.scheduler import Scheduler, ScheduleState
from simulators.clock import VirtualClock
from tests.conftest import ROOT, merge, station_variant

BERLIN = ZoneInfo("Europe/Berlin")

NIGHTLY = """\
protocol: nightly-power-test
title: Nightly power (short, for the schedule test)
version: "1"
requires: [lasers, power_meter]
retries: {attempts: 2, delay: 1 s}
max_missing: 0
steps:
  - meter: {wavelength: 488, averaging: 100}
  - laser: {line: 488, setpoint: 50 %, emission: on}
  - sample: {series: power_488, every: 1 s, for: 3 min}
  - laser: {line: 488, emission: off}
acceptance:
  stability_pct: {pass: [99.0, null], unit: "%"}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _schedule(tmp_path: Path, body: dict[str, Any]) -> Path:
    base = {"schedule": "test", "timezone": "Europe/Berlin", "station": str(ROOT / "configs" / "simulated.yaml"),
            "jobs": [{"name": "nightly", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "cron": "0 2 * * *"}]}
    return _write(tmp_path / "schedule.yaml", yaml.safe_dump(merge(base, body), sort_keys=False))


# --- the file ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change,expect",
    [
        ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
        ({"jobs": [{"name": "n", "protocol": "x.yaml", "cron": "0 25 * * *"}]}, "cron '0 25 * * *'"),
        ({"jobs": [{"name": "n", "protocol": "x.yaml", "cron": "0 2 * * *", "every": "1 h"}]}, "exactly one of 'cron' or 'every'"),
        ({"jobs": [{"name": "n", "protocol": "x.yaml", "every": 3600}]}, "needs a unit"),
        ({"jobs": [{"name": "n", "protocol": "x.yaml", "cron": "0 2 * * *", "missed": "later"}]}, "missed"),
        ({"preconditions": {"free_disk": "5 parsecs"}}, "wrong unit 'parsecs'"),
    ],
)
def test_schedule_file_mistakes_name_file_line_and_field(tmp_path: Path, change: dict, expect: str) -> None:
    path = _schedule(tmp_path, {})
    data = yaml.safe_load(path.read_text())
    data.update(change)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(UserError) as err:
        read_schedule_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}:") and expect in message, message
    assert message.split(":")[1].isdigit()


def test_missing_protocol_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = _schedule(tmp_path, {})
    data = yaml.safe_load(path.read_text())
    data["jobs"][0]["protocol"] = "nowhere.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(UserError, match=r"schedule.yaml:\d+: schedule: jobs\[0\]\.protocol: file not found: .*nowhere.yaml"):
        read_schedule_file(path)


def test_shipped_example_schedule_is_valid(tmp_path: Path) -> None:
    schedule = read_schedule_file(ROOT / "configs" / "schedule-simulated.yaml")
    assert [j.name for j in schedule.spec.jobs] == ["nightly-power", "weekly-stage"]
    assert schedule.protocol_of(schedule.spec.jobs[0]).is_file() and schedule.station_of(schedule.spec.jobs[0]).is_file()
    # its commented notification block, switched on, is valid too (YAML reads a bare `on:` as True)
    text = (ROOT / "configs" / "schedule-simulated.yaml").read_text()
    head, tail = text.split("# notify:")
    enabled = tmp_path / "configs" / "schedule.yaml"
    enabled.parent.mkdir()
    enabled.write_text(head + "notify:" + "\n".join(line.replace("# ", "", 1) for line in tail.splitlines()) + "\n")
    for name in ("simulated.yaml",):
        (enabled.parent / name).write_text((ROOT / "configs" / name).read_text())
    enabled.write_text(enabled.read_text().replace("../protocols/", str(ROOT / "protocols") + "/"))
    notify = read_schedule_file(enabled).spec.notify
    assert notify is not None and notify.on == ["fail", "run_failed", "interrupted", "skipped"] and notify.webhooks[0].url_env == "QC_WEBHOOK_URL"


def test_schedule_validation_checks_the_jobs_protocol_and_station(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad-protocol.yaml", NIGHTLY.replace("every: 1 s", "every: 1 parsec"))
    path = _schedule(tmp_path, {})
    data = yaml.safe_load(path.read_text())
    data["jobs"][0]["protocol"] = bad.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(UserError, match=r"a job's protocol is not valid:\n.*bad-protocol.yaml:\d+: .*parsec"):
        read_schedule_file(path)


def test_due_times_in_the_local_zone_across_daylight_saving(tmp_path: Path) -> None:
    schedule = read_schedule_file(_schedule(tmp_path, {"jobs": [
        {"name": "nightly", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "cron": "30 2 * * *"},
        {"name": "sunday", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "cron": "0 3 * * SUN"},
        {"name": "six-hourly", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "every": "6 h", "start": "2026-03-27T01:00:00"},
    ]}))
    nightly, sunday, six = schedule.spec.jobs
    after = datetime(2026, 3, 27, 12, 0, tzinfo=BERLIN)
    it = schedule.due_times(nightly, after)
    times = [next(it) for _ in range(3)]
    # 02:30 does not exist on 29 March 2026 (clocks jump 02:00 -> 03:00): the job runs once, at 03:00
    assert [t.strftime("%d %H:%M %Z") for t in times] == ["28 02:30 CET", "29 03:00 CEST", "30 02:30 CEST"]
    assert schedule.next_due(sunday, after).strftime("%a %d %H:%M") == "Sun 29 03:00"
    it = schedule.due_times(six, after)
    assert [next(it).strftime("%d %H:%M") for _ in range(2)] == ["27 13:00", "27 19:00"]
    missed = schedule.missed(nightly, datetime(2026, 3, 27, 3, 0, tzinfo=BERLIN), datetime(2026, 3, 31, 0, 0, tzinfo=BERLIN))
    assert len(missed) == 3
    # an interval is elapsed time: 6 h apart in UTC across the change, shown in local time
    it = schedule.due_times(six, datetime(2026, 3, 28, 20, 0, tzinfo=BERLIN))
    times = [next(it) for _ in range(3)]
    assert [t.strftime("%d %H:%M %Z") for t in times] == ["29 01:00 CET", "29 08:00 CEST", "29 14:00 CEST"]
    utc = [t.astimezone(timezone.utc) for t in times]  # (same-zone subtraction would use wall time)
    assert {(b - a).total_seconds() for a, b in zip(utc, utc[1:])} == {6 * 3600}


# --- the week ---------------------------------------------------------------------------------------
class _Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(name="webhook")
def webhook_server() -> Any:
    _Hooks.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Hooks.received
    server.shutdown()
    server.server_close()


def _local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_a_virtual_week_of_unattended_qc(tmp_path: Path, webhook: Any) -> None:
    server, received = webhook
    token = "s3cr3t-T0KEN-9431"
    night_station = station_variant(tmp_path, {}, "night-station.yaml")
    week_station = station_variant(tmp_path, {}, "week-station.yaml")
    clean = night_station.read_text()
    nightly = _write(tmp_path / "nightly.yaml", NIGHTLY)
    # the weekly stage check with a reversal limit the simulated stage's backlash (1.5 um) exceeds
    iso = yaml.safe_load((ROOT / "protocols" / "stage-iso230.yaml").read_text())
    iso["acceptance"] = {"reversal_B_um": {"pass": [None, 0.5], "unit": "um"}}
    weekly = _write(tmp_path / "weekly-stage.yaml", yaml.safe_dump(iso, sort_keys=False))
    schedule_path = _write(tmp_path / "schedule.yaml", yaml.safe_dump({
        "schedule": "week-test", "timezone": "Europe/Berlin", "station": night_station.name, "runs_dir": "runs",
        "preconditions": {"free_disk": "100 MB", "interlock_closed": True, "station_free_within": "5 s"},
        "notify": {"on": ["fail", "run_failed", "interrupted", "skipped"], "webhooks": [{"name": "facility", "url_env": "QC_TEST_HOOK"}]},
        "jobs": [
            {"name": "nightly", "protocol": nightly.name, "cron": "0 2 * * *", "missed": "run_once", "retries": {"attempts": 2, "delay": "1 h"}},
            {"name": "weekly-stage", "protocol": weekly.name, "station": week_station.name,
             "cron": "0 3 * * SUN", "missed": "skip"},
        ],
    }, sort_keys=False))
    env = dict(os.environ, QC_TEST_HOOK=f"http://127.0.0.1:{server.server_port}/hook/{token}")
    schedule = read_schedule_file(schedule_path)

    def station_at(now: datetime) -> None:
        """The world changes with the virtual time: a meter that loses its connection on Wednesday
        night until 02:30; an open laser interlock on Thursday night until 06:00."""
        local = now.astimezone(BERLIN)
        data = yaml.safe_load(clean)
        if local.weekday() == 2 and 1 <= local.hour and (local.hour, local.minute) < (2, 30):
            data["devices"]["Meter"]["simulation"]["faults"] = [{"kind": "connection_lost", "after_commands": 30, "times": 0}]
        if local.weekday() == 3 and 1 <= local.hour < 6:
            data["devices"]["Laser488"]["simulation"]["interlock_closed"] = False
        text = yaml.safe_dump(data, sort_keys=False)
        if text != night_station.read_text():
            night_station.write_text(text)

    def kill_first_monday_run(job: Any, proc: Any, attempt: int) -> None:
        """The Monday nightly run's first attempt is killed (SIGKILL) at its 21st reading: as the
        service starts it, its environment names that kill point (harness/common/kill_points.py)."""
        local = clock.utc().astimezone(BERLIN)
        if job.name == "nightly" and local.weekday() == 0 and attempt == 1:
            killed.append(proc.pid)

    killed: list[int] = []
    env_monday = dict(env)

    def world_at(now: datetime) -> None:
        station_at(now)
        local = now.astimezone(BERLIN)
        if local.weekday() == 0 and local.hour == 2 and not killed:
            env_monday[kill_points.ENV_VAR] = "acquisition:reading@21"
        else:
            env_monday.pop(kill_points.ENV_VAR, None)

    # first service: Sunday 23:00 until Thursday noon, then the machine is off until Saturday 20:00
    clock = VirtualClock(_local(2026, 11, 29, 23), on_time=world_at)
    world_at(clock.utc())
    Scheduler(schedule, clock, on_started=kill_first_monday_run, env=env_monday, out=lambda s: None).run(until=_local(2026, 12, 3, 12))
    assert killed, "the Monday run was not killed"
    clock = VirtualClock(_local(2026, 12, 5, 20), on_time=station_at)
    station_at(clock.utc())
    Scheduler(schedule, clock, env=env, out=lambda s: None).run(until=_local(2026, 12, 6, 23, 59))

    outcomes = ScheduleState(schedule.state_dir).outcomes()
    got = [(o["job"], datetime.fromisoformat(o["due"]).astimezone(BERLIN).strftime("%a %H:%M"), o["attempt"], o["outcome"]) for o in outcomes]
    assert got == [
        ("nightly", "Mon 02:00", 1, "interrupted"),
        ("nightly", "Mon 02:00", 2, "completed"),
        ("nightly", "Tue 02:00", 1, "completed"),
        ("nightly", "Wed 02:00", 1, "failed"),
        ("nightly", "Wed 02:00", 2, "completed"),
        ("nightly", "Thu 02:00", 1, "not started"),
        ("nightly", "Thu 02:00", 2, "skipped"),
        ("nightly", "Sat 02:00", 1, "completed"),  # Fri and Sat missed while off: run once at start
        ("nightly", "Sun 02:00", 1, "completed"),
        ("weekly-stage", "Sun 03:00", 1, "completed"),
    ], got
    by = {(g[1], g[2]): o for g, o in zip(got, outcomes)}
    assert "interlock" in by[("Thu 02:00", 2)]["reason"] and "488" in by[("Thu 02:00", 2)]["reason"]
    assert "killed by signal 9" in by[("Mon 02:00", 1)]["reason"]
    started = [datetime.fromisoformat(o["time"]).astimezone(BERLIN) for o in outcomes]
    assert started[1].strftime("%a %H") == "Mon 03" and started[4].strftime("%a %H") == "Wed 03"  # retries 1 h later
    assert started[7].strftime("%a %H") == "Sat 20"  # the catch-up run when the service came back

    # the run folders: 8 runs, each labelled as it ended, each complete and verifiable
    folders = sorted(p for p in schedule.runs_dir.iterdir() if (p / "run.json").is_file())
    status = sorted(json.loads((f / "run.json").read_text())["status"] for f in folders)
    assert status == ["completed"] * 6 + ["failed", "interrupted"]
    for folder in folders:
        for line in (folder / "MANIFEST.sha256").read_text().splitlines():
            digest, name = line.split("  ", 1)
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, (folder.name, name)
        results = json.loads((folder / "results.json").read_text())
        run = json.loads((folder / "run.json").read_text())
        # a run that could not be completed is not a QC verdict
        assert results["verdict"] == ("not judged" if run["status"] != "completed" else results["verdict"])
    # one time line: each run's station clock started at the service's virtual time (its due time, or
    # the retry / catch-up time), and its dates are as far apart as its station clock ran
    for folder in folders:
        run = json.loads((folder / "run.json").read_text())
        outcome = next(o for o in outcomes if o.get("folder") and Path(o["folder"]).name == folder.name)
        started, ended = datetime.fromisoformat(run["started_utc"]), datetime.fromisoformat(run["ended_utc"])
        launched = {1: datetime.fromisoformat(outcome["due"])}.get(outcome["attempt"])
        if launched is not None and (outcome["job"], outcome["due"]) != ("nightly", outcomes[7]["due"]):
            assert abs((started - launched).total_seconds()) < 1.0, (folder.name, started, launched)
        assert run["clock"]["mode"] == "virtual"
        if run["status"] == "completed":
            assert (ended - started).total_seconds() == pytest.approx(run["clock"]["elapsed_s"], abs=1e-3)
    interrupted = next(f for f in folders if json.loads((f / "run.json").read_text())["status"] == "interrupted")
    rows = (interrupted / "power_488.csv").read_text().splitlines()
    assert len(rows) == 1 + 21 and all(r.count(",") == rows[0].count(",") for r in rows)  # readings kept, no torn row
    kept = json.loads((interrupted / "results.json").read_text())["results"]  # and analysed
    assert [(r["kind"], r["metrics"]["samples"]["value"]) for r in kept] == [("stability", len(rows) - 1)]
    assert json.loads((interrupted / "run.json").read_text())["files"]["power_488.csv"]["rows"] == len(rows) - 1
    failed = next(f for f in folders if json.loads((f / "run.json").read_text())["status"] == "failed")
    assert "Meter" in json.loads((failed / "run.json").read_text())["reason"]

    # exactly the four notifications, with the reason, and the token nowhere in what was recorded
    events = [r["json"]["event"] for r in received]
    assert events == ["interrupted", "run_failed", "skipped", "fail"], events
    assert all(r["path"] == f"/hook/{token}" for r in received)
    assert "interlock" in received[2]["json"]["body"]
    assert "reversal_B_um" in received[3]["json"]["body"] and outcomes[-1]["verdict"] == "fail"
    state_text = "".join(p.read_text() for p in schedule.state_dir.iterdir() if p.is_file())
    assert token not in state_text
    assert all(d["ok"] for o in outcomes for d in o["notified"])

    # the results store has every run, the interrupted one included
    from harness.store.results_store import ResultsStore

    with ResultsStore() as store:
        ids = {r.run_id for r in store.history()}
    assert {json.loads((f / "run.json").read_text())["run_id"] for f in folders} <= ids


# --- what a run checks before it starts ------------------------------------------------------------
def test_a_run_on_a_busy_station_is_refused_and_touches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli.commands import run
    from harness.common.errors import EXIT_PRECONDITION
    from harness.station.run_guard import station_name
    from harness.station.station_lock import StationLock

    station = station_variant(tmp_path, {})
    outcome = tmp_path / "outcome.json"
    protocol = _write(tmp_path / "nightly.yaml", NIGHTLY)
    with StationLock(station_name(station), purpose="run by a colleague"):
        code = run(["run", str(protocol), "--station", str(station), "--runs-dir", str(tmp_path / "runs"), "-q", "-y", "--outcome", str(outcome)])
    assert code == EXIT_PRECONDITION
    err = capsys.readouterr().err
    assert "not started: station 'Simulated widefield' is in use by pid" in err and "run by a colleague" in err
    assert not (tmp_path / "runs").exists()
    assert json.loads(outcome.read_text())["status"] == "not started"


def test_a_run_with_an_open_interlock_is_refused_before_it_starts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli.commands import run
    from harness.common.errors import EXIT_PRECONDITION

    station = station_variant(tmp_path, {"devices": {"Laser561": {"simulation": {"interlock_closed": False}}}})
    protocol = _write(tmp_path / "nightly.yaml", NIGHTLY)
    code = run(["run", str(protocol), "--station", str(station), "--runs-dir", str(tmp_path / "runs"), "-q", "-y", "--check-interlock"])
    assert code == EXIT_PRECONDITION
    assert "interlock open: 561 nm laser (Laser561): interlock Open" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_service_process_catches_up_a_missed_job_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """``microscope-qc schedule run`` as a real process: a job missed while it was not running is
    run once at start; SIGTERM stops the service; ``schedule last`` and ``list`` show what happened."""
    import signal
    import subprocess
    import sys

    from harness.cli.commands import run

    station = station_variant(tmp_path, {})
    protocol = _write(tmp_path / "nightly.yaml", NIGHTLY)
    path = _write(tmp_path / "schedule.yaml", yaml.safe_dump({
        "schedule": "service-test", "timezone": "UTC", "station": station.name, "runs_dir": "runs",
        "preconditions": {"free_disk": "10 MB"},
        "jobs": [{"name": "hourly", "protocol": protocol.name, "cron": "0 * * * *", "missed": "run_once"}],
    }, sort_keys=False))
    schedule = read_schedule_file(path)
    state = ScheduleState(schedule.state_dir)
    state.last_due["hourly"] = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0).isoformat()
    state.save()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "schedule", "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ScheduleState(schedule.state_dir).outcomes():
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "missed while the service was not running" in err and "schedule service stopped" in err
    outcomes = ScheduleState(schedule.state_dir).outcomes()
    assert [(o["job"], o["outcome"], o["verdict"]) for o in outcomes] == [("hourly", "completed", "pass")]
    folder = Path(outcomes[0]["folder"])
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"
    assert run(["schedule", "last", str(path)]) == 0
    assert run(["schedule", "list", str(path)]) == 0
    assert run(["schedule", "run-now", str(path), "hourly"]) == 0
    assert [o["outcome"] for o in ScheduleState(schedule.state_dir).outcomes()] == ["completed", "completed"]


@pytest.mark.parametrize("command", [["devices"], ["meter"], ["snap"], ["move", "0", "0"]])
def test_every_command_that_touches_the_station_respects_a_running_run(tmp_path: Path, capsys: pytest.CaptureFixture, command: list[str]) -> None:
    """Bringing a station up puts its lasers into their safe state: never under somebody's run."""
    from harness.cli.commands import run
    from harness.common.errors import EXIT_PRECONDITION
    from harness.station.run_guard import station_name
    from harness.station.station_lock import StationLock

    station = station_variant(tmp_path, {})
    with StationLock(station_name(station), purpose="run power-stability-long"):
        assert run([*command, "--station", str(station)]) == EXIT_PRECONDITION
    assert "is in use by pid" in capsys.readouterr().err


def test_the_lock_folder_can_be_shared_by_every_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.station.station_lock import StationLock, default_lock_dir

    monkeypatch.setenv("MICROSCOPE_QC_LOCK_DIR", str(tmp_path / "shared-locks"))
    assert default_lock_dir() == tmp_path / "shared-locks"
    with StationLock("Microscope 3", purpose="test") as lock:
        assert lock.path.parent == tmp_path / "shared-locks" and lock.path.is_file()


def test_a_second_service_for_the_same_schedule_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli.commands import run
    from harness.station.station_lock import StationLock

    path = _schedule(tmp_path, {"schedule": "one-service"})
    with StationLock("schedule one-service", purpose="schedule service"):
        assert run(["schedule", "run", str(path)]) == 2
    assert "the schedule 'one-service' is already being run by another service: pid" in capsys.readouterr().err


class _FakeRuns:
    """A launcher whose runs take ``hours`` of (virtual) station time, with no station and nothing to recover."""

    hours = 5.0

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock

    def launch(self, job: Any, attempt: Any, wait_s: float, interlock: bool) -> dict[str, Any]:
        self.clock.advance(self.hours * 3600)
        return {"status": "completed", "verdict": "pass", "folder": None, "reason": "", "stored": "n/a"}

    def safe_state(self, station: Path, why: str) -> bool | None:
        return None

    def recover(self) -> list[Any]:
        return []

    def outlive(self, folder: Path) -> dict[str, Any] | None:
        return None

    def terminate(self) -> None:
        pass


def _fake_runs(schedule: Any, clock: VirtualClock, **kwargs: Any) -> Scheduler:
    """The service loop with ``_FakeRuns``."""
    return Scheduler(schedule, clock, launcher=_FakeRuns(clock), **kwargs)


def test_a_long_run_does_not_build_a_backlog_and_gone_jobs_leave_no_pending(tmp_path: Path) -> None:
    path = _schedule(tmp_path, {"jobs": [{"name": "hourly", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "cron": "0 * * * *"}]})
    schedule = read_schedule_file(path)
    clock = VirtualClock(_local(2026, 12, 1, 0, 30))
    _fake_runs(schedule, clock, out=lambda s: None).run(until=_local(2026, 12, 1, 12, 0))
    done = [o for o in ScheduleState(schedule.state_dir).outcomes()]
    ran = [datetime.fromisoformat(o["due"]).astimezone(BERLIN).strftime("%H:%M") for o in done if o["outcome"] == "completed"]
    # 01:00 runs until 06:00; then only the latest time (06:00) runs, not 02:00..05:00 one after another
    assert ran == ["01:00", "06:00", "11:00"], ran
    missed = [o for o in done if o["outcome"] == "missed"]
    assert len(missed) == 2 and "4 time(s)" in missed[0]["reason"]
    # a pending attempt of a job that is no longer in the file is dropped at start, with a message
    state = ScheduleState(schedule.state_dir)
    from harness.unattended.scheduler import Pending

    state.pending.append(Pending("renamed-job", "2026-12-01T00:00:00+00:00", 2, "2026-12-01T00:00:00+00:00"))
    state.save()
    said: list[str] = []
    _fake_runs(schedule, VirtualClock(_local(2026, 12, 1, 12, 30)), out=said.append).run(until=_local(2026, 12, 1, 12, 45))
    assert any("renamed-job: pending attempt dropped" in s for s in said)
    assert not ScheduleState(schedule.state_dir).pending


def test_an_unreadable_state_file_is_kept_aside_and_the_service_starts(tmp_path: Path) -> None:
    schedule = read_schedule_file(_schedule(tmp_path, {}))
    schedule.state_dir.mkdir(parents=True)
    (schedule.state_dir / "state.json").write_text("{ torn")
    said: list[str] = []
    _fake_runs(schedule, VirtualClock(_local(2026, 12, 1, 12)), out=said.append).run(until=_local(2026, 12, 1, 12, 5))
    assert any("could not be read" in s and "starting afresh" in s for s in said)
    assert list(schedule.state_dir.glob("state.json.unreadable-*"))


def test_a_rolled_back_state_file_does_not_run_a_completed_time_again(tmp_path: Path) -> None:
    """state.json restored from a backup (or lost) says an hour was never handled; outcomes.jsonl
    says it completed: the service does not run it twice (found by the kill campaign)."""
    path = _schedule(tmp_path, {"jobs": [{"name": "hourly", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "cron": "0 * * * *"}]})
    schedule = read_schedule_file(path)
    _fake_runs(schedule, VirtualClock(_local(2026, 12, 1, 0, 30)), out=lambda s: None).run(until=_local(2026, 12, 1, 1, 30))
    completed = [o["due"] for o in ScheduleState(schedule.state_dir).outcomes() if o["outcome"] == "completed"]
    assert len(completed) == 1
    state = ScheduleState(schedule.state_dir)
    state.last_due["hourly"] = _local(2026, 11, 30, 22).isoformat()  # rolled back: 23:00 .. 01:00 look missed
    state.save()
    said: list[str] = []
    _fake_runs(schedule, VirtualClock(_local(2026, 12, 1, 1, 35)), out=said.append).run(until=_local(2026, 12, 1, 1, 50))
    again = [o["due"] for o in ScheduleState(schedule.state_dir).outcomes() if o["outcome"] == "completed"]
    assert again == completed and any("was done already (outcomes.jsonl): not run again" in s for s in said)


# --- endings that are not QC verdicts ----------------------------------------------------------------
class _Endings:
    """A launcher with scripted run endings and scripted safe-state checks (no station)."""

    def __init__(self, clock: VirtualClock, endings: list[dict[str, Any]], safe: list[bool]) -> None:
        self.clock, self.endings, self.safe, self.safe_calls = clock, list(endings), list(safe), []

    def launch(self, job: Any, attempt: Any, wait_s: float, interlock: bool) -> dict[str, Any]:
        self.clock.advance(600)
        return {"folder": None, "reason": "", "stored": "n/a", **self.endings.pop(0)}

    def safe_state(self, station: Path, why: str) -> bool | None:
        self.safe_calls.append(why)
        return self.safe.pop(0) if self.safe else True

    def recover(self) -> list[Any]:
        return []

    def outlive(self, folder: Path) -> dict[str, Any] | None:
        return None

    def terminate(self) -> None:
        pass


def _endings(schedule: Any, clock: VirtualClock, endings: list[dict[str, Any]], safe: list[bool], **kwargs: Any) -> Scheduler:
    """The service loop with scripted run endings and safe-state checks (``_Endings``)."""
    return Scheduler(schedule, clock, launcher=_Endings(clock, endings, safe), **kwargs)


def _hourly(tmp_path: Path, server: Any, on: list[str]) -> Any:
    return read_schedule_file(_schedule(tmp_path, {
        "notify": {"on": on, "webhooks": [{"name": "facility", "url": f"http://127.0.0.1:{server.server_port}/hook"}]},
        "jobs": [{"name": "hourly", "protocol": str(ROOT / "protocols" / "power-stability-short.yaml"), "cron": "0 * * * *",
                  "retries": {"attempts": 3, "delay": "10 min"}}]}))


def test_an_unsafe_run_is_urgent_and_its_station_skipped_until_the_safe_state_is_confirmed(tmp_path: Path, webhook: Any) -> None:
    server, received = webhook
    schedule = _hourly(tmp_path, server, on=["fail"])  # 'unsafe' is sent although `on:` does not name it
    said: list[str] = []
    service = _endings(schedule, VirtualClock(_local(2026, 12, 1, 0, 30)), out=said.append,
                       endings=[{"status": "unsafe", "reason": "safe state NOT confirmed for: Laser488: connection lost"},
                                {"status": "completed", "verdict": "pass"}, {"status": "completed", "verdict": "pass"}],
                       # service start: confirmed; after the unsafe run: not; before 02:00: still not; before 03:00: confirmed
                       safe=[True, False, False, True])
    service.run(until=_local(2026, 12, 1, 4, 30))
    got = [(datetime.fromisoformat(o["due"]).astimezone(BERLIN).strftime("%H:%M"), o["outcome"]) for o in ScheduleState(schedule.state_dir).outcomes()]
    assert got == [("01:00", "unsafe"), ("02:00", "skipped"), ("03:00", "completed"), ("04:00", "completed")], got
    first, skipped = ScheduleState(schedule.state_dir).outcomes()[:2]
    assert first["retry_at"] is None and "runs on this station are skipped until it is" in first["reason"]
    assert "station unsafe" in skipped["reason"] and "check the lasers by hand" in skipped["reason"]
    assert [r["json"]["event"] for r in received] == ["unsafe"]  # skipped is not in `on:`
    assert received[0]["json"]["subject"].startswith("URGENT") and received[0]["json"]["priority"] == "urgent"
    assert "SAFE STATE NOT CONFIRMED" in received[0]["json"]["subject"]
    assert any(s.startswith("URGENT hourly") for s in said)
    assert ScheduleState(schedule.state_dir).unsafe == {}  # confirmed again before 03:00


def test_an_unconfirmed_safe_state_after_a_failed_run_is_unsafe_too_and_survives_a_restart(tmp_path: Path, webhook: Any) -> None:
    server, received = webhook
    schedule = _hourly(tmp_path, server, on=["run_failed"])
    _endings(schedule, VirtualClock(_local(2026, 12, 1, 0, 30)), out=lambda s: None,
             endings=[{"status": "failed", "reason": "device error: Laser488: connection lost"}], safe=[True, False]
             ).run(until=_local(2026, 12, 1, 1, 30))
    [o] = ScheduleState(schedule.state_dir).outcomes()
    assert o["outcome"] == "unsafe" and o["retry_at"] is None and not ScheduleState(schedule.state_dir).pending
    assert [r["json"]["event"] for r in received] == ["unsafe"]
    assert list(ScheduleState(schedule.state_dir).unsafe) == [str(schedule.station_of(schedule.spec.jobs[0]))]
    # the service restarts: the safe state is tried at start; still not confirmed: the next job is skipped
    _endings(schedule, VirtualClock(_local(2026, 12, 1, 1, 40)), out=lambda s: None, endings=[], safe=[False, False]
             ).run(until=_local(2026, 12, 1, 2, 30))
    assert [o["outcome"] for o in ScheduleState(schedule.state_dir).outcomes()] == ["unsafe", "skipped"]


def test_an_analysis_failure_is_notified_as_such_and_not_retried(tmp_path: Path, webhook: Any) -> None:
    server, received = webhook
    schedule = _hourly(tmp_path, server, on=["fail", "run_failed", "analysis_failed"])
    _endings(schedule, VirtualClock(_local(2026, 12, 1, 0, 30)), out=lambda s: None,
             endings=[{"status": "analysis failed", "verdict": "not judged",
                       "reason": "analysis failed: flatfield.ome.tif: no signal above the dark level"}], safe=[]
             ).run(until=_local(2026, 12, 1, 1, 30))
    [o] = ScheduleState(schedule.state_dir).outcomes()
    assert o["outcome"] == "analysis failed" and o["retry_at"] is None and "not retried" in o["reason"]
    assert not ScheduleState(schedule.state_dir).pending
    assert [r["json"]["event"] for r in received] == ["analysis_failed"]
    assert "analysis failed (data kept)" in received[0]["json"]["subject"]


def test_the_outcome_file_and_exit_status_map_to_the_endings(tmp_path: Path) -> None:
    """What the service reads from a run process: its outcome file's word, or the exit status alone."""
    import subprocess

    from harness.unattended.run_launcher import ProcessLauncher

    original = subprocess.Popen

    schedule = read_schedule_file(_schedule(tmp_path, {}))
    schedule.state_dir.mkdir(parents=True, exist_ok=True)
    schedule.runs_dir.mkdir(parents=True, exist_ok=True)
    cases = [({"status": "completed", "outcome": "analysis failed", "analysis_error": "no signal"}, 6, "analysis failed"),
             ({"status": "failed", "outcome": "unsafe", "reason": "safe state NOT confirmed"}, 7, "unsafe"),
             ({"status": "failed", "outcome": "failed"}, 4, "failed"),
             ({"status": "completed", "outcome": "completed", "verdict": "fail"}, 0, "completed")]
    for written, rc, expect in cases:
        class _Done:
            returncode = rc
            outcome = written

            def __init__(self, cmd: list[str], **kwargs: Any) -> None:
                path = Path(cmd[cmd.index("--outcome") + 1])
                path.write_text(json.dumps(self.outcome))

            def communicate(self) -> tuple[str, str]:
                return "", ""

        launcher = ProcessLauncher(schedule, VirtualClock(_local(2026, 12, 1, 0, 30)), out=lambda s: None, popen=_Done)
        result = launcher.launch(schedule.spec.jobs[0], None, 0.0, False)
        assert result["status"] == expect, (written, result)
    assert subprocess.Popen is original
