"""The facility board (``microscope-qc serve``) through Flask's test client: every page on a small
facility (real simulated runs cloned into three microscopes, ``tests/board_db.py``), the token rule,
read-only (405), no path from a URL reaching the disk (404), overdue against the policy, the
certificate of a period, and the live progress of a running run."""

from __future__ import annotations

import html
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.board.app import create_app
from harness.board.policy import NEVER_RUN, NOT_REQUIRED, OK, OVERDUE, due_state, read_policy
from harness.cli import commands
from harness.cli.board_commands import board_token, serve_app
from harness.common.errors import UserError
from tests import board_db

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> board_db.Facility:
    return board_db.build(tmp_path_factory.mktemp("facility"))


@pytest.fixture(scope="module")
def client(facility: board_db.Facility) -> Any:
    app = create_app(facility.url, read_policy(facility.policy), now=lambda: board_db.NOW)
    return app.test_client()


def text(response: Any) -> str:
    """The visible text of a page, whitespace collapsed."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", response.get_data(as_text=True), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def cell(page: str, microscope: str) -> str:
    """The overview's row of one microscope, as text."""
    return page.split(microscope, 1)[1].split("Scope", 1)[0] if microscope != "Scope C" else page.split("Scope C", 1)[1].split("Running now")[0]


# --- pages -----------------------------------------------------------------------------------------
def test_overview_shows_verdicts_ages_and_what_is_overdue(client: Any, facility: board_db.Facility) -> None:
    r = client.get("/")
    assert r.status_code == 200
    page = text(r)
    assert "3 microscopes, 3 checks" in page
    a, b, c = cell(page, "Scope A"), cell(page, "Scope B"), cell(page, "Scope C")
    # Scope B's last power run is the warning (6 d before "now"); Scope C's is the failure, 17 d old,
    # past its 7 d interval; psf was never run anywhere; flat-field does not apply to Scope C
    assert "warn 6 d ok" in b
    assert "fail 17 d overdue" in c
    assert "not applicable" in c and "not applicable" not in a
    assert page.split("shown by its outcome.")[1].split("Running now")[0].count("never run") == 3
    assert "pass 6 d ok" in a
    # the running run and the out-of-control point
    assert "Running now" in page and "step 1 of 22" in page
    assert "Recent out-of-control points" in page and "98.5 %" in page and "below the lower control limit" in page
    for colour in ("v-pass", "v-warn", "v-fail"):  # colour and word: the class carries the colour
        assert colour in r.get_data(as_text=True)


def test_microscope_page(client: Any, facility: board_db.Facility) -> None:
    r = client.get("/microscopes/Scope A")
    assert r.status_code == 200
    page = text(r)
    assert "power-stability-short" in page and "flat-field" in page and "psf" in page and "never run" in page
    assert r.get_data(as_text=True).count("<svg") >= 4  # key metrics as inline SVG
    assert "stability_pct" in page
    assert len(re.findall(r"/runs/[0-9a-f-]{36}\"", r.get_data(as_text=True))) >= 12  # recent runs link to their pages
    assert client.get("/microscopes/No such scope").status_code == 404


def test_run_page_has_facts_metrics_and_files(client: Any, facility: board_db.Facility) -> None:
    run_id = facility.warn_run
    r = client.get(f"/runs/{run_id}")
    assert r.status_code == 200
    page = text(r)
    assert run_id in page and "completed" in page and "warn" in page and "Scope B" in page
    assert "operator alice" in page  # from run.json
    seed = json.loads(client.get(f"/runs/{run_id}/files/run.json").data)["station"]["seed"]
    assert seed is not None and f"seed {seed} " in page  # the store's runs.seed (run.json station.seed)
    assert "stability_pct" in page and "98.5" in page and "pass >= 99 %; warn >= 98 %" in page
    page_html = r.get_data(as_text=True)
    assert f"/runs/{run_id}/files/report.html" in page_html and f"/runs/{run_id}/files/run.json" in page_html
    report = client.get(f"/runs/{run_id}/files/report.html")
    assert report.status_code == 200 and report.mimetype == "text/html" and b"<html" in report.data[:500].lower()
    assert "sandbox" in report.headers["Content-Security-Policy"]
    listed = client.get(f"/runs/{run_id}/files/run.json")
    assert json.loads(listed.data)["run_id"] == run_id


def test_trend_page_one_chart_per_microscope_on_one_scale(client: Any) -> None:
    r = client.get("/trends/stability_pct?subject=488 nm&protocol=power-stability-short")
    assert r.status_code == 200
    source = r.get_data(as_text=True)
    charts = re.findall(r'<figure class="trend"><svg[^>]*aria-label="([^"]+)"', source)
    assert [c.split(": ", 1)[1].split(",")[0] for c in charts] == ["Scope A", "Scope B", "Scope C"]
    assert source.count('class="flagged"') >= 2  # Scope B's drop ringed (both circles carry the class) and listed
    # one y-scale: the same tick labels on every chart of the row
    ticks = [re.findall(r'text-anchor="end" font-size="10">([^<]+)<', svg) for svg in source.split('<figure class="trend">')[1:]]
    assert ticks[0] and ticks[0] == ticks[1] == ticks[2]
    assert "acceptance: pass limit 99" in source  # the protocol's limit drawn
    index = client.get("/trends")
    assert index.status_code == 200 and "stability_pct" in text(index)
    assert client.get("/trends/no_such_metric").status_code == 404


def test_certificate_lists_every_check_of_the_period(client: Any, facility: board_db.Facility) -> None:
    r = client.get("/certificate?microscope=Scope B&from=2026-09-20&to=2026-10-10")
    assert r.status_code == 200
    page = text(r)
    # Scope B's power runs every 3 days from 2026-09-01 10:00: 09-22, 25, 28, 10-01, 04 in the period
    assert page.count("power-stability-short: 2026-") == 5
    assert "1 of 5 checks in this period did not pass" in page and "(warn)" in page
    assert "operator alice" in page and "software microscope-qc-harness 0.1.0" in page
    assert "stability_pct" in page and "pass >= 99 %; warn >= 98 %" in page
    assert "Checks the facility policy requires that were not run in this period: flat-field, psf" in page
    assert "@media print" in client.get("/static/board.css").get_data(as_text=True)
    empty = text(client.get("/certificate?microscope=Scope A&from=2025-01-01&to=2025-01-31"))
    assert "No QC check was run on this microscope in this period" in empty
    passed = text(client.get("/certificate?microscope=Scope A&from=2026-09-01&to=2026-09-05"))
    assert "All 2 checks run in this period passed" in passed
    assert client.get("/certificate?microscope=Scope A&from=2026-13-01&to=2026-09-05").status_code == 400
    assert client.get("/certificate?microscope=Scope A&from=2026-10-01&to=2026-09-05").status_code == 400


def test_progress_of_a_running_run_follows_its_journal(client: Any, facility: board_db.Facility) -> None:
    url = f"/runs/{facility.running_id}/progress.json"
    first = client.get(url).json
    assert first["status"] == "running" and first["actions"] == 22 and first["ended"] is False
    board_db.grow_journal(facility, 700)
    later = client.get(url).json
    assert later["fraction"] > first["fraction"] and 0.3 < later["fraction"] < 0.9  # 700 of 1249 records: about half-way in station time
    assert later["step_index"] > first["step_index"] and later["eta_s"] is not None
    page = text(client.get(f"/runs/{facility.running_id}"))
    assert "Progress" in page and "step" in page
    assert client.get("/runs/nope/progress.json").status_code == 404


def test_a_running_row_whose_process_is_gone_is_shown_interrupted(client: Any, facility: board_db.Facility) -> None:
    run_file = facility.running_folder / "run.json"
    alive = run_file.read_text()
    assert client.get(f"/runs/{facility.running_id}/progress.json").json["owner"] == "alive"
    gone = subprocess.run([sys.executable, "-c", "import os, psutil; p = psutil.Process(os.getpid()); print(os.getpid(), p.create_time())"],
                          capture_output=True, text=True, check=True).stdout.split()
    run = json.loads(alive)
    run["process"] = {**run["process"], "pid": int(gone[0]), "create_time": float(gone[1])}
    try:
        run_file.write_text(json.dumps(run))
        live = client.get(f"/runs/{facility.running_id}/progress.json").json
        assert live["owner"] == "gone" and live["ended"] is False
        assert "interrupted: its process ended without finishing" in text(client.get(f"/runs/{facility.running_id}"))
    finally:
        run_file.write_text(alive)


# --- rules -----------------------------------------------------------------------------------------
def test_read_only(client: Any, facility: board_db.Facility) -> None:
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/").status_code == 405
        assert getattr(client, method)(f"/runs/{facility.warn_run}").status_code == 405
    assert client.head("/").status_code == 200
    r = client.get("/")
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", r.get_data(as_text=True))  # nothing from elsewhere


@pytest.mark.parametrize("name", ["../run.json", "..%2Frun.json", "%2Fetc%2Fpasswd", "/etc/passwd", "..", ".", "REPORT.HTML",
                                  "no-such-file.csv", "report.html%00", "%2e%2e%2f%2e%2e%2fboard.sqlite"])
def test_files_only_from_the_listing(client: Any, facility: board_db.Facility, name: str) -> None:
    assert client.get(f"/runs/{facility.warn_run}/files/{name}").status_code == 404


def test_unknown_runs_and_links_out_of_the_folder(client: Any, facility: board_db.Facility, tmp_path: Path) -> None:
    assert client.get("/runs/no-such-run").status_code == 404
    assert client.get("/runs/no-such-run/files/run.json").status_code == 404
    assert client.get("/runs/..%2F..%2Fetc/files/passwd").status_code == 404
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the board")
    run_folder = next(p for p in facility.runs_dir.iterdir() if facility.fail_run[:8] in p.name)
    (run_folder / "link.txt").symlink_to(secret)
    (run_folder / "sub").mkdir()
    (run_folder / "sub" / "inner.txt").write_text("x")
    assert client.get(f"/runs/{facility.fail_run}/files/link.txt").status_code == 404
    assert client.get(f"/runs/{facility.fail_run}/files/sub").status_code == 404
    assert client.get(f"/runs/{facility.fail_run}/files/sub%2Finner.txt").status_code == 404
    assert "link.txt" not in text(client.get(f"/runs/{facility.fail_run}"))


def test_token_rule(facility: board_db.Facility) -> None:
    client = create_app(facility.url, read_policy(facility.policy), token="s3cret", now=lambda: board_db.NOW).test_client()
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get(f"/runs/{facility.warn_run}/files/run.json").status_code == 401
    r = client.get("/trends?token=s3cret")
    assert r.status_code == 303 and r.headers["Location"].endswith("/trends") and "token" not in r.headers["Location"]
    assert client.get("/").status_code == 200  # the cookie from now on
    assert client.get(f"/runs/{facility.warn_run}/files/run.json").status_code == 200
    assert client.post("/?token=s3cret").status_code == 405


def test_serve_needs_a_token_off_loopback() -> None:
    assert board_token("127.0.0.1", None, {}) == (None, False)
    assert board_token("::1", None, {}) == (None, False)
    token, generated = board_token("0.0.0.0", None, {})
    assert generated and token and len(token) >= 24
    assert board_token("192.168.1.5", None, {"MICROSCOPE_QC_BOARD_TOKEN": "from-env"}) == ("from-env", False)
    assert board_token("192.168.1.5", "given", {"MICROSCOPE_QC_BOARD_TOKEN": "from-env"}) == ("given", False)


# --- the policy ------------------------------------------------------------------------------------
def test_shipped_policy_reads_and_states_its_sources() -> None:
    policy = read_policy(ROOT / "configs" / "facility-policy.yaml")
    assert policy.interval_s("any scope", "psf") == 30 * 86400
    assert policy.interval_s("any scope", "flat-field") == 182 * 86400
    shipped = {p.stem for p in (ROOT / "protocols").glob("*.yaml")}
    assert set(policy.checks()) == shipped  # every shipped check has an interval
    source = (ROOT / "configs" / "facility-policy.yaml").read_text()
    assert "Faklaris et al. 2022" in source and "our choice" in source


def test_overdue_against_the_policy(facility: board_db.Facility) -> None:
    policy = read_policy(facility.policy)
    now = datetime(2026, 10, 10, tzinfo=timezone.utc)
    assert due_state(policy, "Scope A", "psf", None, now).state == NEVER_RUN
    assert due_state(policy, "Scope A", "power-stability-short", now - timedelta(days=8), now).state == OVERDUE
    state = due_state(policy, "Scope A", "power-stability-short", now - timedelta(days=2), now)
    assert state.state == OK and state.due == now + timedelta(days=5)
    assert due_state(policy, "Scope C", "flat-field", None, now).state == NOT_REQUIRED
    assert due_state(policy, "Scope A", "camera-characterization", None, now).state == NOT_REQUIRED  # not in the policy


@pytest.mark.parametrize("body,where", [
    ("policy: x\nchecks:\n  psf: {every: 30}\n", ":3: facility policy: checks.psf.every:"),
    ("policy: x\nchecks:\n  psf: {evry: 30 d}\n", ":3: facility policy: checks.psf.evry: unknown key (did you mean 'every'?)"),
    ("policy: x\nchecks:\n  psf: {}\n", "checks.psf: give 'every'"),
    ("policy: x\nmicroscopes:\n  A:\n    psf: {every: -3 d}\n", ":4: facility policy: microscopes.A.psf.every:"),
    ("- a list\n", ":1: not a facility policy file"),
    ("checks: {}\n", "policy: missing (required)"),
])
def test_bad_policy_file_one_clear_message(tmp_path: Path, body: str, where: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(body)
    with pytest.raises(UserError) as exc:
        read_policy(path)
    assert where in str(exc.value) and str(path) in str(exc.value)


def test_serve_command_refuses_a_bad_policy_and_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("policy: x\nchecks:\n  psf: {every: soon}\n")
    assert commands.run(["serve", "--policy", str(bad), "--db", f"sqlite:///{tmp_path}/none.sqlite"]) == 2
    missing = tmp_path / "none.sqlite"
    assert commands.run(["serve", "--db", f"sqlite:///{missing.as_posix()}", "--port", "0"]) == 2
    assert not missing.exists()  # the board never creates a database


def test_committed_policy_schema_is_current(tmp_path: Path) -> None:
    assert commands.run(["schema", "--out", str(tmp_path)]) == 0
    name = "facility-policy.schema.json"
    assert (tmp_path / name).read_text() == (ROOT / "schemas" / name).read_text(), f"schemas/{name} is out of date: run microscope-qc schema --out schemas"


def test_a_foreign_host_name_is_refused_without_a_token(client: Any) -> None:
    assert client.get("/", headers={"Host": "evil.example:8080"}).status_code == 421  # DNS rebinding onto 127.0.0.1
    assert client.get("/", headers={"Host": "127.0.0.1:8080"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8080"}).status_code == 200


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "waitress", None)  # as if not installed: importing it raises ImportError
    messages: list[str] = []
    assert commands.run(["serve"], out=messages.append) == 2
    assert messages == ['error: the facility board needs waitress: pip install "microscope-qc-harness[board]"']


def test_an_address_in_use_is_one_message(facility: board_db.Facility) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = create_app(facility.url, read_policy(facility.policy))
        with pytest.raises(UserError, match=r"cannot listen on 127.0.0.1:\d+"):
            serve_app(app, "127.0.0.1", taken.getsockname()[1])


def _first_line(proc: subprocess.Popen[str], deadline_s: float) -> str:
    """The process's first line of output, read in a thread: "" if none comes in ``deadline_s``
    (the caller's finally kills the process, which ends the read)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline() if proc.stdout else ""), daemon=True).start()
    try:
        return lines.get(timeout=deadline_s)
    except queue.Empty:
        return ""


@pytest.mark.skipif(sys.platform == "win32", reason="a console's Ctrl-C cannot be sent to one child process on Windows")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_serve_command_serves_until_interrupted(facility: board_db.Facility, tmp_path: Path, stop: signal.Signals) -> None:
    """Ctrl-C, or a service manager's SIGTERM, stops the board with status 0 and "board stopped"
    (once failed under load: the KeyboardInterrupt Ctrl-C raised could be swallowed; a flag now)."""
    env = {**os.environ, "MICROSCOPE_QC_DB": facility.url}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "--port", "0", "--policy", str(facility.policy),
                             "--as-of", "2026-10-10T12:00:00Z"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = _first_line(proc, deadline_s=120)
        match = re.search(r"board: open (http://127\.0\.0\.1:\d+/)$", line.strip())
        assert match, line
        with urllib.request.urlopen(match.group(1), timeout=30) as response:
            page = response.read().decode()
        assert "3 microscopes, 3 checks" in page and "As of 2026-10-10 12:00" in page
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "board stopped" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_board_reads_an_old_database_without_upgrading_it(tmp_path: Path) -> None:
    """A board may run newer software than the stations recording into a shared database: it reads
    a database made before migrations (by a6f82d4) as it is, and leaves its schema alone."""
    import shutil
    import sqlite3

    old = tmp_path / "old.sqlite"
    shutil.copy(ROOT / "tests" / "data" / "store" / "main-a6f82d4.sqlite", old)
    before = sqlite3.connect(old).execute("select name from sqlite_master order by name").fetchall()
    client = create_app(f"sqlite:///{old}", read_policy(ROOT / "configs" / "facility-policy.yaml")).test_client()
    page = text(client.get("/"))
    assert "power-stability-short" in page and "stage-repeatability" in page
    run_id = sqlite3.connect(old).execute("select run_id from runs limit 1").fetchone()[0]
    assert client.get(f"/runs/{run_id}").status_code == 200
    assert sqlite3.connect(old).execute("select name from sqlite_master order by name").fetchall() == before  # no alembic_version, no seed column
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("create table other (x)").connection.commit()
    with pytest.raises(UserError, match="holds no QC results yet"):
        create_app(f"sqlite:///{empty}", read_policy(ROOT / "configs" / "facility-policy.yaml"))


def test_the_policy_watches_metrics_without_limits(facility: board_db.Facility) -> None:
    """``watch`` adds metrics without acceptance limits (a laser's mean power) to the overview's
    out-of-control list; without it only judged metrics are charted there."""
    from harness.board.queries import BoardData, open_store

    with open_store(facility.url) as store:
        data = BoardData(store)
        judged = {key[4] for key in data.judged_series()}
        watched = {key[4] for key in data.judged_series({("power-stability-short", "mean_mw")})}
    assert "mean_mw" not in judged and "stability_pct" in judged
    assert watched == judged | {"mean_mw"}
    policy = read_policy(ROOT / "configs" / "facility-policy.yaml")
    assert ("power-stability-short", "mean_mw") in policy.watched()


# --- review fixes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sub", "..\\run.json", "run.json\\", "..%5Crun.json", " run.json", "link.txt"])
def test_names_that_reach_the_listing_are_refused_there(client: Any, facility: board_db.Facility, name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Names routing lets through (no "/") reach ``file_to_serve``, which serves only listed files."""
    from harness.board import app as board_app

    run_folder = next(p for p in facility.runs_dir.iterdir() if facility.fail_run[:8] in p.name)
    (run_folder / "sub").mkdir(exist_ok=True)
    asked: list[str] = []
    real = board_app.file_to_serve

    def spy(folder: str, run_id: str, n: str) -> Path | None:
        asked.append(n)
        return real(folder, run_id, n)

    monkeypatch.setattr(board_app, "file_to_serve", spy)
    assert client.get(f"/runs/{facility.fail_run}/files/{name}").status_code == 404
    assert len(asked) == 1 and asked[0] in (name, name.replace("%5C", "\\"))
    assert client.get(f"/runs/{facility.fail_run}/files/run.json").status_code == 200  # the listing itself works


def _copy_db(facility: board_db.Facility, tmp_path: Path, *statements: tuple[str, tuple[Any, ...]]) -> str:
    """A copy of the facility's database with some rows changed; its URL."""
    db = tmp_path / "copy.sqlite"
    src = sqlite3.connect(facility.url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    for sql, params in statements:
        dst.execute(sql, params)
    dst.commit()
    dst.close()
    return f"sqlite:///{db.as_posix()}"


def test_a_row_naming_a_folder_that_is_not_its_run_serves_nothing(facility: board_db.Facility, tmp_path: Path) -> None:
    """A row whose folder is /etc, another run's folder or a relative path (even to its own folder:
    relative to what?): no file, no facts."""

    def own_folder(run_id: str) -> Path:
        return next(p for p in facility.runs_dir.iterdir() if run_id[:8] in p.name)

    other_folder = own_folder(facility.fail_run)
    victims = facility.by_station["Scope A"][:3]
    url = _copy_db(facility, tmp_path, ("update runs set folder = ? where run_id = ?", ("/etc", victims[0])),
                   ("update runs set folder = ? where run_id = ?", (str(other_folder), victims[1])),
                   ("update runs set folder = ? where run_id = ?", (os.path.relpath(own_folder(victims[2])), victims[2])),
                   ("update runs set folder = ? where run_id = ?", (str(other_folder), facility.running_id)))
    client = create_app(url, read_policy(facility.policy), now=lambda: board_db.NOW).test_client()
    for run_id in victims:
        assert client.get(f"/runs/{run_id}/files/passwd").status_code == 404
        assert client.get(f"/runs/{run_id}/files/run.json").status_code == 404
        page = text(client.get(f"/runs/{run_id}"))
        assert "is not this run's" in page and "operator alice" not in page
    assert client.get(f"/runs/{facility.fail_run}/files/run.json").status_code == 200  # the run whose folder it is
    live = client.get(f"/runs/{facility.running_id}/progress.json").json or {}
    assert live["foreign"] is True and live["records"] == 0
    assert client.get("/").status_code == 200


def test_quiet_journal_says_no_news(client: Any, facility: board_db.Facility) -> None:
    """A running run whose journal has not grown for 10 min (owner elsewhere, e.g. crashed on another
    computer) says "no news for N min", not an ETA."""
    journal = facility.running_folder / "journal.jsonl"
    fresh = client.get(f"/runs/{facility.running_id}/progress.json").json
    assert fresh["no_news"] is False and fresh["quiet_s"] is not None
    old = time.time() - 1800
    os.utime(journal, (old, old))
    try:
        live = client.get(f"/runs/{facility.running_id}/progress.json").json
        assert live["no_news"] is True and live["quiet_s"] >= 1800
        page = text(client.get(f"/runs/{facility.running_id}"))
        assert re.search(r"no news for \d+ min: its journal has not grown", page)
        assert "p.no_news" in client.get(f"/runs/{facility.running_id}").get_data(as_text=True)  # the live script says it too
        assert re.search(r"no news for \d+ min", text(client.get("/")))
    finally:
        os.utime(journal)


def test_names_with_a_slash_have_pages_and_links(facility: board_db.Facility, tmp_path: Path) -> None:
    url = _copy_db(facility, tmp_path, ("update runs set station = 'Scope/slash' where station = 'Scope A'", ()),
                   ("update metrics set metric = 'stability/pct' where metric = 'stability_pct'", ()))
    client = create_app(url, read_policy(facility.policy), now=lambda: board_db.NOW).test_client()
    overview = client.get("/").get_data(as_text=True)
    links = set(re.findall(r'href="(/microscopes/[^"]*slash[^"]*)"', overview))
    assert links
    for link in links:
        r = client.get(html.unescape(link))
        assert r.status_code == 200 and "Scope/slash" in text(r)
        trend_links = set(re.findall(r'href="(/trends/stability[^"]*)"', r.get_data(as_text=True)))
        assert trend_links
        for trend in trend_links:
            t = client.get(html.unescape(trend))
            assert t.status_code == 200 and "stability/pct" in text(t)
    assert client.get("/microscopes/Scope/slash").status_code == 200
    assert client.get("/trends/stability/pct").status_code == 200
    assert client.get("/certificate?microscope=Scope/slash&from=2026-09-01&to=2026-09-30").status_code == 200


@pytest.mark.parametrize("query", ["from=2026-09-01&to=9999-12-31", "from=9999-12-31&to=9999-12-31", "from=0001-01-01&to=9999-12-31"])
def test_certificate_far_dates_are_a_bad_request(client: Any, query: str) -> None:
    r = client.get(f"/certificate?microscope=Scope A&{query}")
    assert r.status_code == 400 and "too late a date" in text(r)


def test_policy_interval_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("policy: x\nchecks:\n  psf: {every: 3000000 d}\n")
    with pytest.raises(UserError, match=r":3: facility policy: checks.psf.every: .*at most 100 years"):
        read_policy(path)
    path.write_text("policy: x\nchecks:\n  psf: {every: 36500 d}\n")
    assert read_policy(path).interval_s("A", "psf") == 36500 * 86400


def test_serve_refuses_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    for port in ("70000", "65536", "-1"):
        with pytest.raises(SystemExit) as exc:
            commands.run(["serve", "--port", port])
        assert exc.value.code == 2
        assert "--port" in capsys.readouterr().err


def test_serve_refuses_an_address_that_is_not_one(facility: board_db.Facility, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that does not resolve (resolution made to fail here, so no lookup leaves the machine)
    or is no address: one message, exit 2."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("127.0.0.1", "localhost", "::1"):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    app = create_app(facility.url, read_policy(facility.policy))
    for host in ("nosuchhost.invalid", "256.1.1.1"):
        with pytest.raises(UserError, match=f"cannot listen on {re.escape(host)}:0"):
            serve_app(app, host, 0)
    messages: list[str] = []
    assert commands.run(["serve", "--db", facility.url, "--host", "nosuchhost.invalid", "--port", "0",
                         "--policy", str(facility.policy)], out=messages.append) == 2
    assert len(messages) == 1 and messages[0].startswith("error: cannot listen on nosuchhost.invalid:0")


def test_serve_refuses_a_name_of_several_addresses(facility: board_db.Facility, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to two addresses (made so here: "both" is 127.0.0.1 twice; with port 0
    waitress makes a socket for each) would be served on two sockets with two ports and one URL
    printed: refused with the addresses, exit 2, no socket or worker thread left behind. "localhost"
    is served on 127.0.0.1 alone."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "both":
            return real("127.0.0.1", *args, **kwargs) * 2
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    before = {t.ident for t in threading.enumerate()}
    messages: list[str] = []
    assert commands.run(["serve", "--db", facility.url, "--host", "both", "--port", "0", "--token", "t",
                         "--policy", str(facility.policy)], out=messages.append) == 2
    assert len(messages) == 1 and "both is several addresses of this computer (127.0.0.1, 127.0.0.1)" in messages[0], messages
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("waitress")]
    assert not left, left
    app = create_app(facility.url, read_policy(facility.policy))
    server = serve_app(app, "localhost", 0)
    try:
        assert server.effective_host == "127.0.0.1"
    finally:
        server.close()
        server.task_dispatcher.shutdown()


def test_warm_up_failure_is_one_logged_line(facility: board_db.Facility, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    from harness.board import pages

    def broken(self: Any, data: Any, limit: int = 10) -> Any:
        raise UserError("results database x: server closed the connection unexpectedly")

    monkeypatch.setattr(pages.OutOfControl, "recent", broken)
    uncaught: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    with caplog.at_level("WARNING", logger="harness.board.app"):
        create_app(facility.url, read_policy(facility.policy), warm=True)
        for thread in [t for t in threading.enumerate() if t.name == "board-warm-up"]:
            thread.join(timeout=60)
    assert not uncaught
    assert [r.getMessage() for r in caplog.records] == [
        "board: the out-of-control list could not be computed ahead: results database x: server closed the connection unexpectedly"]


def test_certificate_link_without_dates_shows_the_form(client: Any) -> None:
    """The microscope page's certificate link names the microscope only: the form, that microscope
    chosen, the last 365 days filled in; never "None"."""
    for url in ("/certificate?microscope=Scope B", "/certificate?microscope=Scope B&from=2026-09-01"):
        r = client.get(url)
        source = r.get_data(as_text=True)
        assert r.status_code == 200 and "<option selected>Scope B</option>" in source
        assert 'name="to" value="2026-10-10"' in source and "None" not in text(r)
    assert 'name="from" value="2025-10-10"' in client.get("/certificate?microscope=Scope B").get_data(as_text=True)
    assert 'name="from" value="2026-09-01"' in client.get("/certificate?microscope=Scope B&from=2026-09-01").get_data(as_text=True)


def test_a_run_ending_after_now_is_just_now(facility: board_db.Facility) -> None:
    """A run on virtual time may end after the board's now: its age is "just now", never negative."""
    from harness.board.pages import age

    assert age(-3600) == "just now" and age(30) == "just now" and age(120) == "2 min"
    early = create_app(facility.url, read_policy(facility.policy), now=lambda: board_db.START).test_client()
    page = text(early.get("/"))
    assert "just now" in cell(page, "Scope A") and "in the future" not in page


def test_a_missing_value_shows_no_unit(facility: board_db.Facility, tmp_path: Path) -> None:
    url = _copy_db(facility, tmp_path, ("update metrics set value = null where metric = 'stability_pct' and run_id = ?", (facility.warn_run,)))
    client = create_app(url, read_policy(facility.policy), now=lambda: board_db.NOW).test_client()
    page = text(client.get(f"/runs/{facility.warn_run}"))
    assert re.search(r"stability_pct not computed warn", page), page
    cert = text(client.get("/certificate?microscope=Scope B&from=2026-10-01&to=2026-10-10"))
    assert "not computed" in cert and "not computed %" not in cert


def test_certificate_says_the_station_is_simulated(client: Any) -> None:
    """A certificate must not hide that its data came from a simulator (run.json station.simulated)."""
    page = text(client.get("/certificate?microscope=Scope B&from=2026-09-20&to=2026-10-10"))
    assert "runs 5 station simulated station: data from a simulator generated" in page
    assert page.count("simulated station: data from a simulator") == 1 + 5  # the header and each run
    assert "checks run" not in page
