"""Run folders written before the run folder was code (no ``schema_version`` in run.json and
results.json, the journal's ``power_w``/``setpoint_mw`` keys) still analyse, recover and import."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.finishing.results import analyse_run
from harness.finishing.runner import FinishingRunner as Runner
from harness.records.journal import read_journal
from harness.records.manifest import manifest_current
from harness.records.run_record import SCHEMA_VERSION, RunStatus, read_run
from harness.recovery.recover import recover_run
from harness.station.station import Station
from harness.store.results_store import ResultsStore

from .conftest import station_variant

PROTOCOL = """\
protocol: old-folder-test
title: Old folder test
version: "1.0"
steps:
  - meter: {zero: true}
  - meter: {wavelength: 488, averaging: 10}
  - laser: {line: 488, setpoint: 10 mW, emission: on}
  - sample: {series: power_488, every: 1 s, for: 10 s}
  - laser: {line: 488, emission: off}
acceptance:
  stability_pct: {pass: [99.0, null], warn: [98.0, null], unit: "%"}
"""
NEW_TO_OLD = {"power_W": "power_w", "setpoint_mW": "setpoint_mw"}


@pytest.fixture(scope="module")
def new_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("new")
    protocol = base / "old-folder-test.yaml"
    protocol.write_text(PROTOCOL)
    with Station.load(station_variant(base, {})) as station:
        outcome = Runner(station, protocol, runs_dir=base / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    return outcome.folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _old_form(folder: Path, dest: Path, *, running: bool) -> Path:
    """A copy of ``folder`` as the version before this one wrote it: no schema_version, the journal's
    old keys; ``running``: as a kill -9 after the acquisition left it (run.json still ``running``, its
    owner gone, the finishing never begun)."""
    old = dest / folder.name
    shutil.copytree(folder, old)
    run = json.loads((old / "run.json").read_text())
    assert run.pop("schema_version") == SCHEMA_VERSION
    lines = []
    for line in (old / "journal.jsonl").read_text().splitlines():
        record: dict[str, Any] = json.loads(line)
        if running and record["type"] in ("finishing", "finished"):
            continue
        lines.append(json.dumps({NEW_TO_OLD.get(k, k): v for k, v in record.items()}, separators=(",", ":")))
    (old / "journal.jsonl").write_text("\n".join(lines) + "\n")
    if running:
        run.update(status="running", ended_utc=None, process={"pid": _dead_pid(), "create_time": 1.0, "hostname": socket.gethostname()})
        run.pop("finished_utc", None)
        for name in ("results.json", "MANIFEST.sha256", "report.html"):
            (old / name).unlink()
    else:
        results = json.loads((old / "results.json").read_text())
        assert results.pop("schema_version") == SCHEMA_VERSION
        (old / "results.json").write_text(json.dumps(results, indent=2))
    (old / "run.json").write_text(json.dumps(run, indent=2))
    return old


def test_a_new_run_folder_says_its_version_and_uses_the_csv_names(new_run: Path) -> None:
    assert json.loads((new_run / "run.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert json.loads((new_run / "results.json").read_text())["schema_version"] == SCHEMA_VERSION
    text = (new_run / "journal.jsonl").read_text()
    assert '"power_W":' in text and '"setpoint_mW":' in text
    assert '"power_w":' not in text and '"setpoint_mw":' not in text
    assert read_run(new_run).status is RunStatus.COMPLETED


def test_the_journal_reader_takes_the_old_keys(new_run: Path, tmp_path: Path) -> None:
    old = _old_form(new_run, tmp_path, running=False)
    assert '"power_w":' in (old / "journal.jsonl").read_text()
    assert read_journal(old / "journal.jsonl") == read_journal(new_run / "journal.jsonl")


def test_an_old_finished_folder_analyses_and_imports(new_run: Path, tmp_path: Path) -> None:
    old = _old_form(new_run, tmp_path, running=False)
    record = read_run(old)
    assert record.schema_version == 1 and "schema_version" not in record.as_dict()  # absent: version 1, not added on reading
    before = json.loads((new_run / "results.json").read_text())
    results = analyse_run(old)
    assert results["verdict"] == before["verdict"] and results["status"] == "analysed"
    assert [r["metrics"]["stability_pct"]["value"] for r in results["results"]] == [r["metrics"]["stability_pct"]["value"] for r in before["results"]]
    with ResultsStore(f"sqlite:///{tmp_path / 'qc.sqlite'}") as store:
        assert store.import_run(old) == "imported"


def test_an_old_interrupted_folder_recovers(new_run: Path, tmp_path: Path) -> None:
    old = _old_form(new_run, tmp_path, running=True)
    report = recover_run(old)
    assert report.outcome == "recovered", report.line()
    assert report.status == "completed" and report.verdict == json.loads((new_run / "results.json").read_text())["verdict"]
    run = json.loads((old / "run.json").read_text())
    assert run["status"] == "completed" and run["schema_version"] == SCHEMA_VERSION  # rewritten: now it says its version
    assert run["files"] == json.loads((new_run / "run.json").read_text())["files"]  # found again from the folder
    assert manifest_current(old)
    assert [r["type"] for r in read_journal(old / "journal.jsonl")][-4:] == ["recovered", "finishing", "finishing", "finished"]
    with ResultsStore(f"sqlite:///{tmp_path / 'qc.sqlite'}") as store:
        assert store.import_run(old) == "imported"
