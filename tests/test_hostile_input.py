"""Hostile and absurd input: names that would write outside the run folder, YAML bombs and deep
nesting, quantities that are negative, infinite or surely typos, files of the wrong kind, and units
in station files. Each is refused with one line that names file:line (exit 2), quickly."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import yaml

from harness.cli.commands import run
from harness.common.errors import EXIT_USER, UserError
from harness.common.safe_paths import MAX_NAME, UnsafePath, inside, plain_name_problem
from harness.common.yaml_source import MAX_DEPTH, MAX_FILE_BYTES, load_yaml, validate
from harness.protocol.plan import StackPlan, expand
from harness.protocol.protocol_file import read_protocol_file
from harness.station.station_file import StationFile
from harness.unattended.schedule_file import Schedule, read_schedule_file
from tests.conftest import ROOT, SIMULATED, station_variant

LINES = ["405", "488", "561", "640"]
HEAD = "protocol: t\ntitle: t\n"


def _validate_cli(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, str]:
    code = run(["validate", *map(str, paths)])
    return code, capsys.readouterr().err.strip()


def _protocol(tmp_path: Path, body: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD + body)
    return path


# --- 1. names that become file names -----------------------------------------------------------------
@pytest.mark.parametrize("step, field", [
    ("acquire: {stack: ../../etc/x}", "steps[0].acquire.stack"),
    ("sample: {series: ../../x/evil, every: 1 s, for: 2 s}", "steps[0].sample.series"),
])
def test_names_that_leave_the_run_folder_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str, field: str) -> None:
    path = _protocol(tmp_path, f"steps:\n  - {step}\n")
    code, err = _validate_cli(capsys, path)
    assert code == EXIT_USER
    assert err.startswith(f"error: {path}:4: protocol: {field}: ") and "path separator" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", ".hidden", "a..b", "..", "CON", "nul.txt", "com1", "Lpt9.csv",
                                  "x" * (MAX_NAME + 1), "with space", "", "tab\tname", "ünïcode"])
def test_plain_name_refuses(name: str) -> None:
    assert plain_name_problem(name)


@pytest.mark.parametrize("name", ["flatfield", "power_short_488", "linearity-1.2", "_x", "console", "com10"])
def test_plain_name_accepts(name: str) -> None:
    assert plain_name_problem(name) == ""


@pytest.mark.parametrize("value, why", [("../up", "path separator"), ("nul", "reserved device name"), ("..", "'..'")])
def test_a_name_is_checked_again_after_substitution(tmp_path: Path, value: str, why: str) -> None:
    path = _protocol(tmp_path, f"steps:\n  - for_each: {{v: [ok, '{value}']}}\n    do:\n      - acquire: {{stack: \"$v\"}}\n")
    protocol, doc = read_protocol_file(path)  # the name with its variable is fine as written
    with pytest.raises(UserError) as info:
        expand(protocol, doc, LINES)
    message = str(info.value)
    assert message.startswith(f"{path}:6: protocol: acquire.stack: ") and why in message and f"v={value}" in message


def test_a_name_with_a_variable_is_checked_with_the_variable_in_place(tmp_path: Path) -> None:
    path = _protocol(tmp_path, "steps:\n  - for_each: {v: [a]}\n    do:\n      - sample: {series: \"../$v\", every: 1 s, for: 2 s}\n")
    with pytest.raises(UserError, match=r"p.yaml:6: protocol: steps\[0\]\.do\[0\]\.sample\.series: .*path separator"):
        read_protocol_file(path)


def test_protocol_id_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"protocol: {'a' * (MAX_NAME + 1)}\ntitle: t\nsteps:\n  - wait: 1 s\n")
    with pytest.raises(UserError, match=r"p.yaml:1: protocol: protocol: .*at most 64"):
        read_protocol_file(path)


@pytest.mark.parametrize("name, ok", [("Widefield 2 (room B.204)", True), ("../../etc", True), ("two\nlines", False), ("   ", False), ("x" * 101, False)])
def test_station_name_is_a_one_line_display_name(tmp_path: Path, name: str, ok: bool) -> None:
    path = station_variant(tmp_path, {"name": name})
    if ok:
        validate(load_yaml(path), StationFile, "station")
    else:
        with pytest.raises(UserError, match=r"station.yaml:\d+: station: name: "):
            validate(load_yaml(path), StationFile, "station")


def test_station_name_never_leaves_its_folder_where_it_becomes_a_file_name(tmp_path: Path) -> None:
    from harness.run.folders import slug
    from harness.station.station_lock import StationLock

    for name in ("../../etc/passwd", "..", "C:\\Windows\\x", "/abs/path", "nul"):
        assert "/" not in slug(name) and "\\" not in slug(name) and slug(name) not in ("", ".", "..")
        assert StationLock(name, lock_dir=tmp_path).path.parent == tmp_path


def _schedule(tmp_path: Path, schedule: str = "nightly", job: str = "power") -> Path:
    (tmp_path / "p.yaml").write_text(HEAD + "steps:\n  - wait: 1 s\n")
    path = tmp_path / "schedule.yaml"
    path.write_text(f"schedule: '{schedule}'\ntimezone: UTC\nstation: {SIMULATED}\njobs:\n  - name: '{job}'\n    protocol: p.yaml\n    cron: '0 2 * * *'\n")
    return path


@pytest.mark.parametrize("schedule, job, where", [("..", "power", "1: schedule: schedule"), ("../x", "power", "1: schedule: schedule"),
                                                 ("nightly", "../x", "5: schedule: jobs[0].name"), ("nightly", "CON", "5: schedule: jobs[0].name")])
def test_schedule_and_job_names_are_plain_names(tmp_path: Path, schedule: str, job: str, where: str) -> None:
    with pytest.raises(UserError) as info:
        read_schedule_file(_schedule(tmp_path, schedule, job))
    assert f"schedule.yaml:{where}: " in str(info.value)


def test_a_valid_schedule_still_reads(tmp_path: Path) -> None:
    assert read_schedule_file(_schedule(tmp_path)).state_dir.name == "nightly"


# --- 1b. defence in depth: every writer resolves its path inside its folder -------------------------
@pytest.mark.parametrize("name", ["../x", "../../x.csv", "/etc/x", "a/../../x", "", ".", "sub/../.."])
def test_inside_refuses_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePath):
        inside(tmp_path, name)


def test_inside_follows_symbolic_links(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "run" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePath):
        inside(tmp_path / "run", "link/x.csv")
    assert inside(tmp_path / "run", "x.csv") == tmp_path / "run" / "x.csv"


@pytest.fixture
def runner(sim_station, tmp_path: Path):  # type: ignore[no-untyped-def]
    from harness.finishing.runner import FinishingRunner as Runner

    r = Runner(sim_station, ROOT / "protocols" / "flat-field.yaml", runs_dir=tmp_path / "runs", quiet=True)
    r.folder = tmp_path / "runs" / "run"
    r.folder.mkdir(parents=True)
    r.t0 = 0.0
    return r


def _nothing_outside(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_runner_series_writer_refuses_a_hostile_name(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from harness.run.steps import EXECUTORS

    action = SimpleNamespace(params=SimpleNamespace(series="../../x", every=1.0, duration=1.0))
    with pytest.raises(UnsafePath):
        EXECUTORS["sample"].execute(action, runner)
    _nothing_outside(tmp_path)


def test_runner_stack_and_frame_log_writers_refuse_a_hostile_name(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner.plan.stacks["../../x"] = StackPlan("../../x", ["dark"], {"dark": 1})
    with pytest.raises(UnsafePath):
        runner.open_stack("../../x")
    _nothing_outside(tmp_path)


def test_runner_run_folder_refuses_a_hostile_protocol_id(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner.protocol = runner.protocol.model_copy(update={"protocol": "../../../x"})
    with pytest.raises(UnsafePath):
        runner._make_folder()
    _nothing_outside(tmp_path)


def test_analysis_refuses_files_outside_the_folder(tmp_path: Path) -> None:
    from harness.analyses.flat_field.analysis import analyse_flat_field
    from harness.finishing.results import analyse_run

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"status": "completed", "files": {"../evil.csv": {"kind": "power_series"}},
                                                 "protocol": {"text": HEAD + "steps:\n  - wait: 1 s\n"}}))
    with pytest.raises(UnsafePath):
        analyse_run(folder)
    with pytest.raises(UnsafePath):  # the correction image and the stack it reads
        analyse_flat_field(folder, "../evil", {})
    assert not (tmp_path / "results.json").exists()


def test_qc_annotations_and_recovery_refuse_files_outside_the_folder(tmp_path: Path) -> None:
    from harness.analysis.qc_annotations import annotate_run
    from harness.recovery.recover import recover_stack

    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(UnsafePath):
        annotate_run(folder, {"results": [{"series": "../x.ome.tif"}]})
    with pytest.raises(UnsafePath):
        recover_stack(folder, "../x", None, [])


def test_report_refuses_to_read_outside_the_folder(tmp_path: Path) -> None:
    from harness.analyses.registry import figures as _figures

    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "x.csv").write_text("time_s,power_W,status\n0,1,ok\n")
    with pytest.raises(UnsafePath):
        _figures(folder, {"kind": "stability", "series": "../x.csv", "subject": "488 nm", "metrics": {}})
    with pytest.raises(UnsafePath):
        _figures(folder, {"kind": "flat_field", "correction_image": "../x.ome.tif", "subject": "488 nm", "metrics": {}})


def test_schedule_state_folder_refuses_a_hostile_name(tmp_path: Path) -> None:
    spec = SimpleNamespace(schedule="..", runs_dir="runs", tz=ZoneInfo("UTC"))
    with pytest.raises(UnsafePath):
        Schedule(tmp_path / "schedule.yaml", spec)  # type: ignore[arg-type]


# --- 2. hostile YAML: one line, exit 2, bounded time and memory -----------------------------------------
def _bomb(levels: int = 9, header: str = "") -> str:
    lines = [header.rstrip("\n")] if header else []
    lines.append('a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": (lambda: _bomb(), "expands to more than"),
    "deep list": (lambda: "steps: " + "[" * 50000 + "]" * 50000 + "\n", "nested more than"),
    "deep mapping": (lambda: "".join(f"{' ' * i}k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n", "nested more than"),
    "huge file": (lambda: "name: x\ndescription: '" + "x" * (MAX_FILE_BYTES + 10) + "'\n", "larger than"),
    "5000-digit integer": (lambda: "name: x\nseed: " + "9" * 5000 + "\n", "cannot read this value"),
    "impossible date": (lambda: "name: x\nwhen: 2026-13-45\n", "cannot read this value"),
}

_CHILD = """
import sys
from harness.common.errors import UserError
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "cli":
        from harness.cli.commands import run
        sys.exit(run(["validate", path]))
    if kind == "protocol":
        from harness.protocol.protocol_file import read_protocol_file
        read_protocol_file(path)
    elif kind == "station":
        from harness.station.run_guard import station_name
        station_name(path)
    else:
        from harness.unattended.schedule_file import read_schedule_file
        read_schedule_file(path)
except UserError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
"""

MEMORY_LIMIT = 1024 * 1024 * 1024  # the bomb needed more than 1.6 GB before


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# every case through the command line; the bomb and the deep list also through each file kind's loader
@pytest.mark.parametrize("case, kind", [(case, "cli") for case in HOSTILE]
                         + [(case, kind) for case in ("alias bomb", "deep list") for kind in ("protocol", "station", "schedule")])
def test_hostile_yaml_ends_in_one_line_with_bounded_time_and_memory(tmp_path: Path, case: str, kind: str) -> None:
    text, expected = HOSTILE[case]
    path = tmp_path / "hostile.yaml"
    path.write_text(text(), encoding="utf-8")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path)], capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=_limited, timeout=20, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_USER, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:"), proc.stderr[-2000:]
    assert expected in lines[0]


def test_depth_limit_leaves_ordinary_nesting_alone(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("x: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2) + "\n")
    assert load_yaml(path).top == "mapping"


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {every: 1 s, for: 2 s}\nuse: [*b, *b, *b]\nmerged: {<<: *b, series: x}\n")
    doc = load_yaml(path)
    assert doc.data["merged"] == {"every": "1 s", "for": "2 s", "series": "x"} and doc.lines[("merged",)] == 3


def test_unreadable_bytes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    code, err = _validate_cli(capsys, path)
    assert code == EXIT_USER and err.startswith(f"error: {path}:1: cannot read") and len(err.splitlines()) == 1


# --- 2b. quantities: finite, not negative, not zero where meaningless, bounded ---------------------------
@pytest.mark.parametrize("body, expected", [
    ("steps:\n  - wait: -5 s\n", r":4: protocol: steps\[0\]\.wait: duration must not be negative"),
    ("steps:\n  - wait: 1e400 s\n", r":4: protocol: steps\[0\]\.wait: duration: '1e400 s' is not a finite number"),
    ("steps:\n  - wait: 30 d\n",
      r":4: protocol: steps\[0\]\.wait: 30 d is over the 7 d limit for a wait; if you mean it, raise it with `limits: \{max_wait: 30 d\}`"),
    ("retries: {delay: -30 min}\nsteps:\n  - wait: 1 s\n", r":3: protocol: retries\.delay: duration must not be negative"),
    ("retries: {delay: 2 d}\nsteps:\n  - wait: 1 s\n", r":3: protocol: retries: delay: 2 d is over the 1 d limit for a retry delay"),
    ("steps: []\n", r":3: protocol: steps: must not be empty"),
    ("steps:\n  - repeat: 2\n    do: []\n", r":5: protocol: steps\[0\]\.do: must not be empty"),
    ("steps:\n  - for_each: {line: all}\n    do: []\n", r":5: protocol: steps\[0\]\.do: must not be empty"),
    ("steps:\n  - sample: {series: s, every: 0 s, for: 2 s}\n", r":4: protocol: steps\[0\]\.sample\.every: duration must be more than zero"),
    ("steps:\n  - sample: {series: s, every: 1 s, for: 0 s}\n", r":4: protocol: steps\[0\]\.sample\.for: duration must be more than zero"),
    ("steps:\n  - sample: {series: s, every: 2 d, for: 3 d}\n", r":4: protocol: steps\[0\]\.sample\.every: 2 d is over the 1 d limit"),
    ("steps:\n  - acquire: {stack: a, exposure: 20 min}\n", r":4: protocol: steps\[0\]\.acquire\.exposure: 20 min is over the 10 min limit for an exposure"),
    ("steps:\n  - acquire: {stack: a, exposure: -1 ms}\n", r":4: protocol: steps\[0\]\.acquire\.exposure: duration must be more than zero"),
    ("steps:\n  - move: {x: 2000 mm}\n", r":4: protocol: steps\[0\]\.move\.x: 2000 mm is over the 1000 mm limit"),
    ("steps:\n  - move: {along: +x, by: -5 um}\n", r":4: protocol: steps\[0\]\.move\.by: distance must be more than zero"),
    ("steps:\n  - move: {x: 1 mm, overtravel: -5 um}\n", r":4: protocol: steps\[0\]\.move\.overtravel: distance must not be negative"),
    ("steps:\n  - move: {x: 1 mm, approach: positive, overtravel: 5 um, approach_axes: []}\n",
      r":4: protocol: steps\[0\]\.move: .*'approach_axes' lists each axis once, at least one"),
    ("steps:\n  - move: {x: 1 mm, approach: positive, overtravel: 5 um, approach_axes: [x, x]}\n",
      r":4: protocol: steps\[0\]\.move: .*'approach_axes' lists each axis once"),
    ("steps:\n  - move: {x: 1 mm, approach_axes: [x]}\n", r":4: protocol: steps\[0\]\.move: .*'approach_axes' needs an approach"),
    ("steps:\n  - move: {x: 1 mm, approach: negative, overtravel: 5 um, approach_axes: [y]}\n",
      r":4: protocol: steps\[0\]\.move: .*names an axis the move does not"),
    ("steps:\n  - for_each: {t: [1e400 s]}\n    do:\n      - wait: $t\n", r":6: protocol: wait: duration: '1e400 s' is not a finite number"),
    ("steps:\n  - for_each: {t: [-1 s]}\n    do:\n      - wait: $t\n", r":6: protocol: wait: duration must not be negative"),
    ("steps:\n  - for_each: {t: [1 s, 8 d]}\n    do:\n      - wait: $t\n", r":6: protocol: wait: 8 d is over the 7 d limit for a wait; .* \(with t=8 d\)"),
    ("steps:\n  - repeat: 2\n    do:\n      - acquire: {stack: a, exposure: 11 min}\n",
      r":6: protocol: steps\[0\]\.do\[0\]\.acquire\.exposure: 11 min is over"),
    ("steps:\n  - laser: {line: 488, setpoint: 1e400 mW}\n", r":4: protocol: steps\[0\]\.laser\.setpoint: set point: '1e400 mW' is not a finite number"),
    ("steps:\n  - meter: {wavelength: -5 nm}\n", r":4: protocol: meter: wavelength '-5 nm' is outside 100 nm"),
    ("acceptance: {power_cv_pct: {pass: [.nan, 1]}}\nsteps:\n  - wait: 1 s\n", r":3: protocol: acceptance\.power_cv_pct\.pass\[0\]: .*finite"),
])
def test_absurd_quantities_are_refused(tmp_path: Path, body: str, expected: str) -> None:
    path = _protocol(tmp_path, body)
    with pytest.raises(UserError) as info:
        protocol, doc = read_protocol_file(path)
        expand(protocol, doc, LINES)
    assert len(str(info.value).splitlines()) == 1
    assert info.match(r"^" + str(path).replace("\\", "\\\\").replace(".", r"\.") + expected)


def test_a_protocol_may_raise_a_limit(tmp_path: Path) -> None:
    path = _protocol(tmp_path, "limits: {max_wait: 40 d, max_exposure: 30 min, max_move: 2 m}\nsteps:\n  - wait: 30 d\n"
                     "  - acquire: {stack: a, exposure: 20 min}\n")
    with pytest.raises(UserError, match="wrong unit 'm'"):  # lengths are um, nm or mm
        read_protocol_file(path)
    path = _protocol(tmp_path, "limits: {max_wait: 40 d, max_exposure: 30 min, max_move: 2000 mm}\nsteps:\n  - wait: 30 d\n"
                     "  - acquire: {stack: a, exposure: 20 min}\n  - move: {x: 1500 mm}\n")
    protocol, doc = read_protocol_file(path)
    assert [a.kind for a in expand(protocol, doc, LINES).actions] == ["wait", "acquire", "move"]


def test_a_schedule_refuses_a_job_protocol_over_its_limits(tmp_path: Path) -> None:
    path = _schedule(tmp_path)
    (tmp_path / "p.yaml").write_text(HEAD + "steps:\n  - wait: 30 d\n")
    with pytest.raises(UserError, match=r"p.yaml:4: protocol: steps\[0\]\.wait: 30 d is over the 7 d limit"):
        read_schedule_file(path)


def test_schedule_durations_are_not_negative(tmp_path: Path) -> None:
    path = _schedule(tmp_path)
    path.write_text(path.read_text() + "    retries: {delay: -30 min}\n")
    with pytest.raises(UserError, match=r"schedule.yaml:8: schedule: jobs\[0\]\.retries\.delay: duration must not be negative"):
        read_schedule_file(path)


# --- 2c. a file of the wrong kind says so --------------------------------------------------------------
WRONG = {
    "empty": ("", "the file is empty"),
    "comment only": ("# nothing here\n", "the file is empty (or has only comments)"),
    "a list": ("- a\n- b\n", "holds a list at its top level"),
    "a scalar": ("hello\n", "holds a single value ('hello')"),
    "a JSON Schema": ((ROOT / "schemas" / "station.schema.json").read_text(), "this is a JSON Schema"),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_validate_says_what_kind_of_file_was_expected(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    text, why = WRONG[case]
    path = tmp_path / "file.yaml"
    path.write_text(text)
    code, err = _validate_cli(capsys, path)
    assert code == EXIT_USER and len(err.splitlines()) == 1
    assert why in err and "expected a protocol, station or schedule file" in err and "name: missing" not in err


@pytest.mark.parametrize("case", ["empty", "a list", "a JSON Schema"])
def test_each_loader_says_what_kind_of_file_it_expected(tmp_path: Path, case: str) -> None:
    text, why = WRONG[case]
    path = tmp_path / "file.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"{why}.*expected a protocol file"):
        read_protocol_file(path)
    with pytest.raises(UserError, match=f"{why}.*expected a station file"):
        validate(load_yaml(path), StationFile, "station")
    with pytest.raises(UserError, match=f"{why}.*expected a schedule file"):
        read_schedule_file(path)


def test_a_protocol_given_as_station_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"flat-field.yaml:1: this looks like a protocol file \(it has 'protocol:'\); expected a station file"):
        validate(load_yaml(ROOT / "protocols" / "flat-field.yaml"), StationFile, "station")


def test_unknown_keys_only_are_not_a_station(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("foo: 1\n")
    code, err = _validate_cli(capsys, path)
    assert code == EXIT_USER and "not a protocol, station or schedule file" in err


# --- 2d. units in station files --------------------------------------------------------------------------
@pytest.mark.parametrize("value, mw", [(160, 160.0), ("160 mW", 160.0), ("0.16 W", 160.0), ("160000 uW", 160.0)])
def test_station_power_accepts_a_bare_number_or_a_power(tmp_path: Path, value: object, mw: float) -> None:
    path = station_variant(tmp_path, {"safety": {"max_laser_power_mw": value}})
    spec = validate(load_yaml(path), StationFile, "station")
    assert spec.safety.max_laser_power_mw == pytest.approx(mw)  # type: ignore[attr-defined]


@pytest.mark.parametrize("value, expected", [("160 nm", "wrong unit 'nm'"), ("-5 mW", "greater than 0"), (".inf", "not a finite number"),
                                             ("lots", "cannot read")])
def test_station_power_refuses_another_kind_of_unit(tmp_path: Path, value: str, expected: str) -> None:
    path = station_variant(tmp_path, {"safety": {"max_laser_power_mw": value}})
    text = path.read_text().replace(f"'{value}'", value)  # .inf as YAML's infinity, not a string
    path.write_text(text)
    with pytest.raises(UserError) as info:
        validate(load_yaml(path), StationFile, "station")
    assert "station: safety.max_laser_power_mw: " in str(info.value) and expected in str(info.value)


def test_other_station_values_with_units(tmp_path: Path) -> None:
    data = yaml.safe_load(SIMULATED.read_text())
    meter = next(label for label, d in data["devices"].items() if d["driver"] == "thorlabs_pm100")
    path = station_variant(tmp_path, {"devices": {meter: {"timeout_ms": "2 s"}}, "instrument": {"pixel_size_um": "65 nm"}})
    spec = validate(load_yaml(path), StationFile, "station")
    assert spec.devices[meter].timeout_ms == 2000  # type: ignore[attr-defined]
    assert spec.instrument.pixel_size_um == pytest.approx(0.065)  # type: ignore[attr-defined]


def test_shipped_files_still_validate(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted((ROOT / "protocols").glob("*.yaml")) + sorted((ROOT / "configs").glob("*.yaml"))
    code, err = _validate_cli(capsys, *files)
    assert code == 0, err
