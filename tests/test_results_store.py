"""The results store, control charts and trend report: a real run folder (and copies of its run.json
and results.json with other times and values) imported into a fresh database of each kind, a
temporary SQLite file and a new database on a throw-away PostgreSQL server (tests/pg_server.py),
never the user's data folder; queries; rule flags on hand-made series; the HTML report; the
commands."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lxml.html
import pytest
import sqlalchemy as sa

from harness.analysis.control_chart import MIN_CONTROL_BASELINE, OUTSIDE, RUN, control_limits, evaluate, outside_limits, runs_on_one_side
from harness.cli import commands as cli
from harness.common.errors import UserError
from harness.finishing.results import analyse_run
from harness.finishing.runner import FinishingRunner as Runner
from harness.report.trend_report import build_charts, figure, write_report
from harness.station.station import Station
from harness.store.results_store import ENV_VAR, ResultsStore, metrics, record_run, register_start
from tests.conftest import station_variant

PROTOCOL = """\
protocol: store-test
title: Store test
version: "1.0"
retries: {attempts: 2, delay: 1 s}
max_missing: 0
steps:
  - meter: {zero: true}
  - for_each: {line: [488, 561]}
    do:
      - meter: {wavelength: $line, averaging: 10}
      - laser: {line: $line, setpoint: 10 mW, emission: on}
      - sample: {series: power_$line, every: 1 s, for: 20 s}
      - laser: {line: $line, emission: off}
acceptance:
  stability_pct: {pass: [99.0, null], warn: [98.0, null], unit: "%"}
  cv_pct: {pass: [null, 0.5], warn: [null, 1.0], unit: "%"}
"""
STATION = "Simulated widefield"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
# a baseline of 10 with mean 99.5 exactly and no run: deviations +-0.2, 0.1, 0.3, 0.15, 0.05
BASE = [99.7, 99.3, 99.6, 99.4, 99.8, 99.2, 99.65, 99.35, 99.55, 99.45]


@pytest.fixture(autouse=True)
def _no_user_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test does not pass explicitly goes to a temporary database."""
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{tmp_path / 'env.sqlite'}")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of a short two-line stability protocol on the simulated station (about 2 s)."""
    base = tmp_path_factory.mktemp("real")
    protocol = base / "store-test.yaml"
    protocol.write_text(PROTOCOL)
    with Station.load(station_variant(base, {})) as station:
        outcome = Runner(station, protocol, runs_dir=base / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    assert (outcome.folder / "results.json").is_file()
    return outcome.folder


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_server").new_database("results"))
    return f"sqlite:///{tmp_path / 'qc.sqlite'}"


@pytest.fixture
def store(url: str) -> Iterator[ResultsStore]:
    with ResultsStore(url) as s:
        yield s


def load(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def save(folder: Path, name: str, data: Any) -> None:
    (folder / name).write_text(json.dumps(data, indent=2), encoding="utf-8")


def make_run(template: Path, dest: Path, n: int, *, hours: float | None = None, station: str = STATION, protocol: str = "store-test",
             values: dict[str, float] | None = None, status: str = "completed", verdict: str = "pass", results: bool = True) -> Path:
    """A copy of the real run's run.json and results.json as another run: its own id and times
    (``hours`` after T0, default ``n`` days), station, protocol, status, verdict and stability values."""
    run, res = load(template, "run.json"), load(template, "results.json")
    run_id = f"00000000-0000-4000-8000-{n:012d}"
    start = T0 + (timedelta(hours=hours) if hours is not None else timedelta(days=n))
    run.update(run_id=run_id, status=status, started_utc=start.isoformat(), ended_utc=(start + timedelta(minutes=3)).isoformat())
    run["station"]["name"], run["protocol"]["id"] = station, protocol
    res.update(run_id=run_id, station=station, protocol=protocol, run_status=status, verdict=verdict)
    for r in res["results"]:
        if values and r["subject"] in values:
            r["metrics"]["stability_pct"]["value"] = values[r["subject"]]
    folder = dest / f"run{n:03d}"
    folder.mkdir(parents=True)
    save(folder, "run.json", run)
    if results:
        save(folder, "results.json", res)
    return folder


def metric_rows(store: ResultsStore, run_id: str) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(metrics).where(metrics.c.run_id == run_id)))


# --- import --------------------------------------------------------------------------------------
def test_import_of_a_real_run_folder(real_run: Path, store: ResultsStore) -> None:
    run, res = load(real_run, "run.json"), load(real_run, "results.json")
    assert store.import_run(real_run) == "imported"
    [rec] = store.history()
    assert (rec.run_id, rec.station, rec.protocol, rec.protocol_version) == (run["run_id"], STATION, "store-test", "1.0")
    assert (rec.status, rec.reason, rec.verdict, rec.host) == ("completed", "", res["verdict"], run["host"]["hostname"])
    assert rec.folder == str(real_run.resolve())
    assert rec.started_utc == datetime.fromisoformat(run["started_utc"]) and rec.ended_utc == datetime.fromisoformat(run["ended_utc"])
    assert rec.started_utc.tzinfo is not None
    assert rec.seed == run["station"]["seed"] and isinstance(rec.seed, int)
    rows = metric_rows(store, run["run_id"])
    assert len(rows) == sum(len(r["metrics"]) for r in res["results"])
    by_key = {(r.subject, r.metric): r for r in rows}
    for result in res["results"]:
        for name, m in result["metrics"].items():
            row = by_key[(result["subject"], name)]
            assert (row.kind, row.value, row.unit, row.verdict) == (result["kind"], m["value"], m["unit"] or None, m["verdict"])
            assert (json.loads(row.limit_json) if row.limit_json else None) == m["limit"]
    assert {k.subject for k in store.chart_keys("stability_pct")} == {"488 nm", "561 nm"}


def test_import_is_idempotent(real_run: Path, store: ResultsStore, url: str) -> None:
    assert store.import_run(real_run) == "imported"
    before = store.history()
    count = len(metric_rows(store, before[0].run_id))
    assert store.import_run(real_run) == "already present"
    assert record_run(real_run, url) == "already present"
    assert store.history() == before  # imported_utc too: nothing was written
    assert len(metric_rows(store, before[0].run_id)) == count


def test_reanalysed_run_replaces_its_metrics(real_run: Path, store: ResultsStore, tmp_path: Path) -> None:
    folder = shutil.copytree(real_run, tmp_path / "run")
    run_id = load(folder, "run.json")["run_id"]
    assert store.import_run(folder) == "imported"
    first = load(folder, "results.json")
    count = len(metric_rows(store, run_id))
    analyse_run(folder)  # re-analysis: new analysed_utc, same values
    assert store.import_run(folder) == "updated"
    assert len(metric_rows(store, run_id)) == count
    res = load(folder, "results.json")
    res["analysed_utc"] = (datetime.fromisoformat(res["analysed_utc"]) + timedelta(seconds=5)).isoformat()
    del res["results"][0]["metrics"]["mean_mw"]
    res["results"][0]["metrics"]["stability_pct"].update(value=97.5, verdict="fail")
    res["verdict"] = "fail"
    save(folder, "results.json", res)
    assert store.import_run(folder) == "updated"
    rows = metric_rows(store, run_id)
    assert len(rows) == count - 1 and not any(r.metric == "mean_mw" and r.subject == "488 nm" for r in rows)
    [row] = [r for r in rows if r.metric == "stability_pct" and r.subject == "488 nm"]
    assert (row.value, row.verdict) == (97.5, "fail")
    assert store.history()[0].verdict == "fail"
    save(folder, "results.json", first)  # an older copy of the folder does not undo the newer analysis
    assert store.import_run(folder) == "already present"
    assert store.series(STATION, "stability_pct", "488 nm")[0].value == 97.5


def test_run_without_results_is_not_judged(real_run: Path, store: ResultsStore, tmp_path: Path) -> None:
    folder = make_run(real_run, tmp_path, 1, results=False)
    assert store.import_run(folder) == "imported"
    [rec] = store.history()
    assert rec.verdict == "not judged" and metric_rows(store, rec.run_id) == []
    save(folder, "results.json", {**load(real_run, "results.json"), "run_id": rec.run_id})  # analysed later
    assert store.import_run(folder) == "updated"
    assert store.history()[0].verdict == load(real_run, "results.json")["verdict"] and metric_rows(store, rec.run_id)


def test_a_running_run_has_a_row_until_its_record_replaces_it(real_run: Path, store: ResultsStore, url: str, tmp_path: Path) -> None:
    started = make_run(real_run, tmp_path / "started", 7, status="running", results=False)
    run = load(started, "run.json")
    run["ended_utc"] = None
    save(started, "run.json", run)
    assert register_start(started, url) == "registered as running"
    [rec] = store.history()
    assert (rec.run_id, rec.status, rec.verdict, rec.ended_utc, rec.folder) == (run["run_id"], "running", "not judged", None, str(started.resolve()))
    assert rec.seed == run["station"]["seed"] and rec.started_utc == datetime.fromisoformat(run["started_utc"])
    assert metric_rows(store, rec.run_id) == []
    assert register_start(started, url) == "already recorded"
    ended = make_run(real_run, tmp_path / "ended", 7)  # the same run, finished
    assert record_run(ended, url) == "imported"
    [rec] = store.history()
    assert (rec.run_id, rec.status, rec.verdict, rec.folder) == (run["run_id"], "completed", "pass", str(ended.resolve()))
    count = len(metric_rows(store, rec.run_id))
    assert count > 0
    assert register_start(started, url) == "already recorded"  # a start that comes through late changes nothing
    assert store.history() == [rec] and len(metric_rows(store, rec.run_id)) == count


def test_folders_that_are_not_runs_are_user_errors(real_run: Path, store: ResultsStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"empty: not a run folder \(no run.json\)$"):
        store.import_run(empty)
    with pytest.raises(UserError, match="nowhere: no such folder"):
        store.import_run(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"not a run folder \(no run.json\); it holds run folders: import them with microscope-qc import"):
        store.import_run(real_run.parent)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{ not json")
    with pytest.raises(UserError, match="run.json: cannot read it"):
        store.import_run(bad)
    save(bad, "run.json", {"hello": 1})
    with pytest.raises(UserError, match="not a microscope-qc run record"):
        store.import_run(bad)
    other = make_run(real_run, tmp_path, 2)
    save(other, "results.json", load(real_run, "results.json"))
    with pytest.raises(UserError, match="belongs to another run.*microscope-qc analyze"):
        store.import_run(other)
    assert store.history() == []


# --- queries -------------------------------------------------------------------------------------
@pytest.fixture
def fleet(real_run: Path, store: ResultsStore, tmp_path: Path) -> ResultsStore:
    """Two stations over a week, imported out of order."""
    folders = [
        make_run(real_run, tmp_path, 0, station="Scope A"),
        make_run(real_run, tmp_path, 1, station="Scope A", verdict="warn"),
        make_run(real_run, tmp_path, 2, station="Scope A", protocol="other", verdict="fail"),
        make_run(real_run, tmp_path, 3, station="Scope B"),
        make_run(real_run, tmp_path, 4, station="Scope A", status="failed", verdict="fail"),
        make_run(real_run, tmp_path, 5, station="Scope B", results=False),
    ]
    for folder in reversed(folders):
        store.import_run(folder)
    return store


def ids(records: list[Any]) -> list[int]:
    return [int(r.run_id[-3:]) for r in records]


def test_history_filters(fleet: ResultsStore) -> None:
    assert ids(fleet.history()) == [0, 1, 2, 3, 4, 5]
    assert ids(fleet.history(station="Scope B")) == [3, 5]
    assert ids(fleet.history(protocol="other")) == [2]
    # run 4 failed (the measurement could not be completed): not a QC fail, whatever its old results.json said
    assert ids(fleet.history(verdict="fail")) == [2]
    assert ids(fleet.history(verdict="not judged")) == [4, 5]
    assert ids(fleet.history(station="Scope A", verdict="fail", protocol="store-test")) == []
    day = (T0 + timedelta(days=2)).date()
    assert ids(fleet.history(since=day)) == [2, 3, 4, 5]
    assert ids(fleet.history(until=day)) == [0, 1, 2]  # a date is the whole day
    assert ids(fleet.history(since=day, until=day)) == [2]
    assert ids(fleet.history(since=T0 + timedelta(days=1, minutes=1))) == [2, 3, 4, 5]
    assert ids(fleet.history(until=(T0 + timedelta(days=1)).replace(tzinfo=None))) == [0, 1]  # naive: UTC
    assert fleet.history(station="Scope C") == []
    with pytest.raises(UserError, match="no verdict 'good' .*pass, warn, fail, not judged"):
        fleet.history(verdict="good")


def test_series_is_time_ordered_over_completed_runs(real_run: Path, store: ResultsStore, tmp_path: Path) -> None:
    values = [99.6, 99.1, 99.9, 99.3]
    hours = [30, 5, 70, 12]  # imported in this order, not in time order
    for n, (v, h) in enumerate(zip(values, hours)):
        store.import_run(make_run(real_run, tmp_path, n, hours=h, values={"488 nm": v, "561 nm": v - 1}))
    store.import_run(make_run(real_run, tmp_path, 9, hours=50, values={"488 nm": 50.0}, status="aborted", verdict="fail"))
    points = store.series(STATION, "stability_pct", subject="488 nm")
    assert [p.value for p in points] == [99.1, 99.3, 99.6, 99.9]
    assert [p.ended_utc for p in points] == sorted(T0 + timedelta(hours=h, minutes=3) for h in hours)
    assert [p.run_id[-3:] for p in points] == ["001", "003", "000", "002"] and points[0].verdict == "pass"
    ended, value, run_id, verdict = points[0]  # a plain tuple too
    assert [p.value for p in store.series(STATION, "stability_pct", subject="561 nm", protocol="store-test")] == pytest.approx([98.1, 98.3, 98.6, 98.9])
    with pytest.raises(UserError, match=r"several subjects \(488 nm, 561 nm\)"):
        store.series(STATION, "stability_pct")
    assert store.series(STATION, "stability_pct", subject="640 nm") == []
    assert store.series("Scope Z", "stability_pct", subject="488 nm") == []


# --- control charts ------------------------------------------------------------------------------
def test_control_limits_by_hand() -> None:
    lim = control_limits(BASE + [0.0, 1000.0])  # only the first 10 count
    assert lim.baseline == 10 and lim.centre == pytest.approx(99.5)
    sd = (2 * (0.2**2 + 0.3**2 + 0.1**2 + 0.15**2 + 0.05**2) / 9) ** 0.5  # n - 1
    assert lim.sd == pytest.approx(sd) and (lim.lower, lim.upper) == pytest.approx((99.5 - 3 * sd, 99.5 + 3 * sd))
    few = control_limits([1.0, 2.0, 3.0], baseline=10)  # fewer than the baseline: all of them
    assert (few.baseline, few.centre, few.sd) == (3, 2.0, 1.0)
    assert control_limits([5.0, 7.0, 100.0], baseline=2).centre == 6.0
    one = control_limits([4.0])
    assert one.centre == 4.0 and not one.defined and outside_limits([4.0, 1e9], one) == []
    with pytest.raises(ValueError):
        control_limits([])


def test_in_control_series_is_not_flagged() -> None:
    values = BASE + BASE[::-1] + [99.5 + 0.5 * (-1) ** i for i in range(10)]  # within 3 SD, sides alternate
    limits, flags = evaluate(values)
    assert limits.upper > 100.0 and flags == []
    assert evaluate([99.5, 99.6])[1] == []


def test_step_change_after_the_baseline_is_flagged() -> None:
    values = BASE + [99.6, 99.4, 97.0, 96.9, 97.1]
    limits, flags = evaluate(values)
    assert [(f.index, f.rule) for f in flags] == [(12, OUTSIDE), (13, OUTSIDE), (14, OUTSIDE)]
    assert flags[0].detail.startswith("below the lower control limit")
    limits, flags = evaluate(BASE + [101.0])
    assert [(f.index, f.rule) for f in flags] == [(10, OUTSIDE)] and "above the upper" in flags[0].detail


def test_shift_within_the_limits_is_flagged_by_a_run_of_eight() -> None:
    values = BASE + [99.6] * 9  # 0.1 above the centre: within the limits, but never below again
    limits, flags = evaluate(values)
    assert all(limits.lower < v < limits.upper for v in values)
    assert [(f.index, f.rule) for f in flags] == [(17, RUN), (18, RUN)]  # the 8th in a row, and the 9th
    assert flags[0].detail.startswith("8 in a row above the centre line") and flags[1].detail.startswith("9 in a row")
    below = runs_on_one_side([1.0] * 3 + [-1.0] * 8, 0.0)
    assert [f.index for f in below] == [10] and "below" in below[0].detail
    assert runs_on_one_side([1.0] * 7 + [0.0] + [1.0] * 7, 0.0) == []  # a point on the centre line ends a run
    assert [f.index for f in runs_on_one_side([1.0] * 6, 0.0, run_length=5)] == [4, 5]  # configurable
    assert [(f.index, f.rule) for f in evaluate(BASE + [99.6] * 5, run_length=5)[1]] == [(14, RUN)]


def test_both_rules_on_one_point() -> None:
    _, flags = evaluate(BASE + [98.0] * 8)
    assert [(f.index, f.rule) for f in flags if f.index == 17] == [(17, OUTSIDE), (17, RUN)]


# --- trend report --------------------------------------------------------------------------------
def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_trend_report_is_self_contained_and_flags_the_step(real_run: Path, store: ResultsStore, tmp_path: Path) -> None:
    station = 'Scope <b>"1"</b> & co'  # must come out as text
    stepped = BASE + [99.6, 97.0, 97.2]
    for n, v in enumerate(stepped):
        store.import_run(make_run(real_run, tmp_path / "runs", n, station=station, values={"488 nm": v, "561 nm": BASE[n % 10]}))
    charts = build_charts(store, "stability_pct", station=station)
    assert [c.key.subject for c in charts] == ["488 nm", "561 nm"]
    flagged = [charts[0].points[f.index].run_id for f in charts[0].flags]
    assert [r[-3:] for r in flagged] == ["011", "012"] and charts[1].flags == []
    out = write_report(charts, tmp_path / "trend.html", store.url)
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<script" not in text  # nothing to fetch
    doc = lxml.html.fromstring(text)
    assert doc.xpath("//h2//b") == [] and station in doc.xpath("//h2")[0].text_content()
    images = doc.xpath("//img")
    assert len(images) == 2
    for img in images:
        src = img.get("src")
        assert src.startswith("data:image/png;base64,")
        width, height = png_size(base64.b64decode(src.split(",", 1)[1], validate=True))
        assert width > 300 and height > 100
    rows = doc.xpath("//section[@id='chart-0']//tbody/tr")
    assert len(rows) == 2 and flagged[0] in rows[0].text_content() and "below the lower control limit" in rows[0].text_content()
    assert str((tmp_path / "runs" / "run011").resolve()) in rows[0].text_content()
    assert "No flagged runs" in doc.xpath("//section[@id='chart-1']")[0].text_content()


def test_trend_chart_does_not_overstate(real_run: Path, store: ResultsStore, tmp_path: Path) -> None:
    """One run: the time axis spans two hours around it (not years), no offset notation on the value
    axis, the protocol's acceptance limits drawn, and no claim of statistical control."""
    store.import_run(make_run(real_run, tmp_path / "runs", 0, values={"488 nm": 99.5}))
    [chart] = build_charts(store, "stability_pct", subject="488 nm")
    assert chart.acceptance == {"pass": [99.0, None], "warn": [98.0, None], "unit": "%"}
    assert build_charts(store, "stability_pct", subject="488")[0].key == chart.key  # a bare wavelength names the line
    ax = figure(chart).axes[0]
    left, right = ax.get_xlim()  # matplotlib date numbers: days
    assert right - left == pytest.approx(2 / 24)
    ax.figure.canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all("e" not in t and float(t.replace("\u2212", "-")) > 90 for t in labels)
    drawn = {round(line.get_ydata()[0], 6) for line in ax.lines if len(set(line.get_ydata())) == 1}
    assert {99.0, 98.0} <= drawn  # pass and warn limits
    assert "acceptance: pass limit 99" in [t.get_text() for t in ax.get_legend().get_texts()]
    text = lxml.html.fromstring(write_report([chart], tmp_path / "one.html", store.url).read_text()).text_content()
    assert "too few runs for control limits (1 run; 10 are needed)" in text
    assert "in statistical control" not in text and "pass at least 99 %" in text


def test_statistical_control_needs_an_established_baseline(real_run: Path, store: ResultsStore, tmp_path: Path) -> None:
    """In control is said only from a baseline of MIN_CONTROL_BASELINE runs; before, the limits are
    provisional; the time axis spans the runs with a margin; a far acceptance limit is named, not drawn."""
    few = BASE[:MIN_CONTROL_BASELINE - 1]
    for n, v in enumerate(few):
        store.import_run(make_run(real_run, tmp_path / "runs", n, values={"488 nm": v}))
    [chart] = build_charts(store, "stability_pct", subject="488 nm")
    assert chart.limits.defined and not chart.limits.established and chart.flags == []
    text = lxml.html.fromstring(write_report([chart], tmp_path / "few.html", store.url).read_text()).text_content()
    assert "too few runs for control limits (9 in the baseline; 10 are needed): provisional limits" in text
    assert "in statistical control" not in text
    ax = figure(chart).axes[0]
    left, right = ax.get_xlim()
    span = (len(few) - 1)  # days between the first and last run
    assert span < right - left < span * 1.2
    store.import_run(make_run(real_run, tmp_path / "runs", 9, values={"488 nm": BASE[9]}))
    [chart] = build_charts(store, "stability_pct", subject="488 nm")
    assert chart.limits.established
    text = lxml.html.fromstring(write_report([chart], tmp_path / "ten.html", store.url).read_text()).text_content()
    assert "No flagged runs: the metric is in statistical control." in text and "too few runs" not in text
    chart.acceptance = {"pass": [50.0, None], "warn": None}  # far below the data: named, the data keep the axis
    ax = figure(chart).axes[0]
    assert ax.get_ylim()[0] > 98 and "acceptance: pass limit 50 (below the axis)" in [t.get_text() for t in ax.get_legend().get_texts()]
    chart.acceptance = {"pass": [99.0, None], "warn": [98.0, None]}  # within one spread of the data and limits: drawn
    ax = figure(chart).axes[0]
    assert 99.0 in {line.get_ydata()[0] for line in ax.lines} and ax.get_ylim()[0] < 99.0


# --- commands ------------------------------------------------------------------------------------
def qc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    messages: list[str] = []
    code = cli.run(list(args), out=messages.append)
    return code, capsys.readouterr().out, "\n".join(messages)


def test_commands_import_history_trend(real_run: Path, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = [make_run(real_run, tmp_path / "runs", n, values={"488 nm": v}) for n, v in enumerate(BASE + [99.55, 96.0])]
    code, out, err = qc(capsys, "import", *map(str, folders[:3]), "--db", url)
    assert code == 0 and out.splitlines() == [f"imported: {f}" for f in folders[:3]]
    code, out, err = qc(capsys, "import", *map(str, folders), "--db", url)
    assert code == 0 and out.count("already present: ") == 3 and out.count("imported: ") == 9
    res = load(folders[0], "results.json")
    res["analysed_utc"] = datetime.now(timezone.utc).isoformat()
    save(folders[0], "results.json", res)
    code, out, err = qc(capsys, "import", str(folders[0]), "--db", url)
    assert (code, out) == (0, f"updated: {folders[0]}\n")

    code, out, err = qc(capsys, "history", "--db", url, "--since", str((T0 + timedelta(days=10)).date()))
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["STARTED", "(UTC)", "STATION", "PROTOCOL", "VERSION", "STATUS", "VERDICT", "RUN", "FOLDER"]
    assert len(lines) == 2 + 2 + 1 and "2026-01-15 08:00  Simulated widefield  store-test" in lines[2] and lines[-1].startswith("2 runs")
    code, out, err = qc(capsys, "history", "--db", url, "--verdict", "warn")
    assert code == 0 and out.startswith("no runs match")

    report = tmp_path / "trend.html"
    code, out, err = qc(capsys, "trend", "stability_pct", "--subject", "488 nm", "--db", url, "--out", str(report))
    assert code == 0, err
    assert out.startswith("stability_pct: Simulated widefield, store-test, 488 nm: 12 runs, centre 99.5 %")
    assert "1 flagged" in out and "  FLAG 2026-01-16 08:03  run 00000000  96 %  below the lower control limit" in out
    assert out.rstrip().endswith(f"wrote {report}") and report.is_file()


@pytest.mark.parametrize("args, message", [
    (["trend", "no_such_metric"], "error: no metric 'no_such_metric' in the results database (metrics: cv_pct, "),
    (["trend", "stability_pct", "--station", "Nowhere"], "error: no station 'Nowhere' in the results database (stations: Simulated widefield)"),
    (["trend", "stability_pct", "--subject", "532 nm"], "error: no completed run has a value of 'stability_pct' for subject '532 nm' "
                                                        "(its subjects: 488 nm, 561 nm)"),
    (["trend", "stability_pct", "--baseline", "1"], "error: --baseline 1: control limits need a baseline of at least 2 runs"),
    (["history", "--since", "2026-02-30"], "error: --since '2026-02-30': not a date (use YYYY-MM-DD"),
    (["history", "--until", "yesterday"], "error: --until 'yesterday': not a date"),
    (["history", "--verdict", "ok"], "error: no verdict 'ok'"),
])
def test_command_mistakes_are_one_message_with_exit_status_2(real_run: Path, url: str, capsys: pytest.CaptureFixture[str],
                                                             args: list[str], message: str) -> None:
    with ResultsStore(url) as store:
        store.import_run(real_run)
    code, out, err = qc(capsys, *args, "--db", url)
    assert code == 2 and err.startswith(message) and "\n" not in err, err
    assert out == ""


def test_import_of_non_run_folders_reports_each(real_run: Path, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = qc(capsys, "import", str(tmp_path), str(real_run), str(tmp_path / "missing"), "--db", url)
    assert code == 2 and out == f"imported: {real_run}\n"
    assert err == f"error: {tmp_path}: not a run folder (no run.json)\n{tmp_path / 'missing'}: no such folder"


def test_empty_database_and_bad_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = qc(capsys, "trend", "stability_pct", "--db", f"sqlite:///{tmp_path / 'new.sqlite'}")
    assert code == 2 and "new.sqlite: no such file (check the path" in err  # a typo is not created empty
    assert not (tmp_path / "new.sqlite").exists()
    code, out, err = qc(capsys, "history", "--db", f"sqlite:///{tmp_path / 'new.sqlite'}")
    assert code == 2 and "no such file" in err and not (tmp_path / "new.sqlite").exists()
    import sqlite3

    sqlite3.connect(tmp_path / "empty.sqlite").close()
    code, out, err = qc(capsys, "trend", "stability_pct", "--db", f"sqlite:///{tmp_path / 'empty.sqlite'}")
    assert code == 2 and "holds no metrics yet: import run folders first" in err
    code, out, err = qc(capsys, "history", "--db", "not a url")
    assert code == 2 and err.startswith("error: results database not a url: ")
    code, out, err = qc(capsys, "history", "--db", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite'}")
    assert code == 2 and "no such file" in err
    code, out, err = qc(capsys, "history", "--db", "postgresql://qc:s3cret@localhost:1/qc")
    assert code == 2 and "s3cret" not in err and "qc:***@localhost" in err


def test_command_exit_status_as_a_process(url: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "import", str(tmp_path), "--db", url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr == f"error: {tmp_path}: not a run folder (no run.json)\n" and out.stdout == ""


# --- where the database is -----------------------------------------------------------------------
def test_database_location_default_env_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_run: Path) -> None:
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "data" / app))
    monkeypatch.delenv(ENV_VAR)
    with ResultsStore() as store:  # the default: created with its folder
        assert store.url.endswith("/data/microscope-qc/results.sqlite")
        store.import_run(real_run)
    assert (tmp_path / "data" / "microscope-qc" / "results.sqlite").is_file()
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{tmp_path / 'facility.sqlite'}")
    assert record_run(real_run) == "imported"  # the environment variable
    assert record_run(real_run, f"sqlite:///{tmp_path / 'arg.sqlite'}") == "imported"  # the argument wins
    assert record_run(real_run) == "already present"
    with pytest.raises(UserError, match=r"unable to open database file\nthe run is safe on disk; record it later with: microscope-qc import "):
        record_run(real_run, f"sqlite:///{tmp_path / 'no' / 'dir.sqlite'}")
