"""Protocol files: validated as data; every mistake named by file, line and field (loops included);
JSON Schema exported for editors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.commands import run
from harness.common.errors import UserError
from harness.protocol.plan import expand
from harness.protocol.protocol_file import read_protocol_file
from tests.conftest import ROOT

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

LINES = ["405", "488", "561", "640"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "protocol.yaml"
    path.write_text(text)
    return path


def _plan(path: Path, lines: list[str] = LINES):
    protocol, doc = read_protocol_file(path)
    return expand(protocol, doc, lines)


def test_shipped_protocols_validate_and_expand() -> None:
    counts = {}
    for path in sorted((ROOT / "protocols").glob("*.yaml")):
        plan = _plan(path)
        counts[path.stem] = plan
    assert len(counts["power-stability-short"].actions) == 2 + 4 * 5
    assert counts["stage-repeatability"].stacks["repeatability"].frames_per_channel == {"488": 320}
    assert counts["flat-field"].stacks["flatfield"].channels == ["dark", "405", "488", "561", "640"]
    assert counts["power-linearity"].estimate_s > 4 * 13 * 20
    assert counts["stage-iso230"].roles == {"lasers", "camera", "xy_stage"}


@pytest.mark.parametrize(
    "snippet,expected",
    [
        ("  - wait: 5\n", ":4: protocol: steps[0].wait: duration needs a unit"),
        ("  - wait: 5 kg\n", ":4: protocol: steps[0].wait: duration: wrong unit 'kg'"),
        ("  - laser: {line: 488, setpoint: 120 %}\n", ":4: protocol: steps[0].laser.setpoint: set point '120 %' outside 0..100 %"),
        ("  - meter: {averaging: 0}\n", ":4: protocol: steps[0].meter.averaging: Input should be greater than or equal to 1"),
        ("  - sample: {series: p, every: 1 s, for: 1 min, extra: 1}\n", ":4: protocol: steps[0].sample.extra: unknown key"),
        ("  - acquire: {frames: 2}\n", ":4: protocol: steps[0].acquire.stack: missing (required)"),
        ("  - lazer: {line: 488}\n", ":4: protocol: steps[0]: not a step"),
        ("  - move: {x: 1 um, along: +x, by: 2 um}\n", ":4: protocol: steps[0].move: a move gives exactly one of"),
        ("  - laser: {line: 488, setpiont: 5 mW}\n", ":4: protocol: steps[0].laser.setpiont: unknown key (did you mean 'setpoint'?)"),
        ("  - wait: 1 s\nacceptence: {}\n", ":5: protocol: acceptence: unknown key (did you mean 'acceptance'?)"),
    ],
)
def test_mistakes_name_file_line_and_field(tmp_path: Path, snippet: str, expected: str) -> None:
    path = _write(tmp_path, "protocol: t\ntitle: T\nsteps:\n" + snippet)
    with pytest.raises(UserError) as info:
        _plan(path)
    assert str(info.value).startswith(str(path) + expected), str(info.value)


def test_protocol_id_mistake_says_what_an_id_is(tmp_path: Path) -> None:
    path = _write(tmp_path, "protocol: My.Proto\ntitle: T\nsteps:\n  - wait: 1 s\n")
    with pytest.raises(UserError) as info:
        _plan(path)
    assert str(info.value) == (f"{path}:1: protocol: protocol: 'My.Proto' is not a protocol id: lower-case letters, digits, '-' and '_', "
                               "starting with a letter or digit (e.g. 'power-stability-short')")


def test_mistake_inside_a_loop_names_the_step_line_and_the_values(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
protocol: t
title: T
steps:
  - for_each: {size: [300 um, 3 kg]}
    do:
      - move: {along: +x, by: $size}
""")
    with pytest.raises(UserError) as info:
        _plan(path)
    text = str(info.value)
    assert text.startswith(f"{path}:6: protocol: ") and "wrong unit 'kg'" in text and "(with size=3 kg)" in text


def test_unknown_variable_and_unknown_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "protocol: t\ntitle: T\nsteps:\n  - for_each: {line: all}\n    do:\n      - laser: {line: $lin, emission: on}\n")
    with pytest.raises(UserError, match=rf"{path}:6: protocol: laser: unknown variable \$lin \(in scope: \$line\)"):
        _plan(path)
    path = _write(tmp_path, "protocol: t\ntitle: T\nsteps:\n  - laser: {line: 532, emission: on}\n")
    with pytest.raises(UserError, match=rf"{path}:4: protocol: laser: no 532 nm line on this station \(it has 405, 488, 561, 640\)"):
        _plan(path)
    path = _write(tmp_path, "protocol: t\ntitle: T\nlines: [488, 532]\nsteps:\n  - laser: {line: all, emission: off}\n")
    with pytest.raises(UserError, match=rf"{path}:3: protocol: lines: the station has no 532 nm line"):
        _plan(path)


def test_no_code_in_protocols(tmp_path: Path) -> None:
    """YAML tags that would build Python objects are refused by the safe loader."""
    path = _write(tmp_path, "protocol: t\ntitle: T\nsteps: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(UserError, match="YAML error"):
        _plan(path)
    path = _write(tmp_path, "protocol: t\ntitle: T\nsteps:\n  - wait: \"__import__('os') s\"\n")
    with pytest.raises(UserError, match="cannot read"):
        _plan(path)


def test_validate_command_checks_protocols_and_stations(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    files = [str(p) for p in sorted((ROOT / "protocols").glob("*.yaml"))] + [str(ROOT / "configs" / "simulated.yaml")]
    assert run(["validate", *files]) == 0
    out = capsys.readouterr().out
    assert out.count("valid protocol") == len(files) - 1 and out.count("valid station file") == 1  # every protocol shipped
    bad = _write(tmp_path, "protocol: t\ntitle: T\nsteps:\n  - wait: 5\n")
    assert run(["validate", str(bad)]) == 2
    assert f"{bad}:4:" in capsys.readouterr().err


def test_json_schema_export(tmp_path: Path) -> None:
    assert run(["schema", "--out", str(tmp_path)]) == 0
    protocol = json.loads((tmp_path / "protocol.schema.json").read_text())
    station = json.loads((tmp_path / "station.schema.json").read_text())
    assert {"protocol", "title", "steps"} <= set(protocol["properties"])
    text = json.dumps(protocol)
    for kind in ("laser", "sample", "acquire", "for_each", "repeat"):
        assert f'"{kind}"' in text
    assert "pattern" in json.dumps(protocol["$defs"]["SampleParams"])  # quantities: number + unit
    assert "devices" in station["properties"]


def test_committed_schemas_are_current(tmp_path: Path) -> None:
    assert run(["schema", "--out", str(tmp_path)]) == 0
    for name in ("protocol", "station", "schedule", "run", "results"):
        assert (tmp_path / f"{name}.schema.json").read_text() == (ROOT / "schemas" / f"{name}.schema.json").read_text(), (
            f"schemas/{name}.schema.json is out of date: run microscope-qc schema --out schemas"
        )


@pytest.mark.parametrize(
    "acceptance,expected",
    [
        ("  stabilty_pct: {pass: [99, null]}\n", ":6: protocol: acceptance.stabilty_pct: no metric 'stabilty_pct' (did you mean 'stability_pct'?)"),
        ("  cv_pct: {pass: [null, 0.5], unit: mW}\n", ":6: protocol: acceptance.cv_pct: unit 'mW', but the metric is in '%'"),
        ("  cv_pct: {pass: [null, 1.0], warn: [null, 0.5]}\n", ":6: protocol: acceptance.cv_pct: the warn range must contain the pass range"),
        ("  cv_pct: {pass: [2, 1]}\n", ":6: protocol: acceptance.cv_pct: pass range [2, 1] is empty"),
    ],
)
def test_acceptance_limits_name_real_metrics_in_their_units(tmp_path: Path, acceptance: str, expected: str) -> None:
    path = _write(tmp_path, "protocol: t\ntitle: T\nsteps:\n  - wait: 1 s\nacceptance:\n" + acceptance)
    with pytest.raises(UserError) as info:
        _plan(path)
    assert str(info.value).startswith(str(path) + expected), str(info.value)


def test_the_metric_table_is_what_the_analyses_report() -> None:
    """Every metric an analysis reports is in an analysis spec (harness/analyses/*/__init__.py) with the same unit, and nothing else is."""
    import numpy as np

    from harness.analyses.registry import METRICS
    from harness.analysis import emva1288_metrics as em
    from harness.analysis import psf_metrics
    from harness.analysis.flat_field_metrics import flat_field_metrics
    from harness.analysis.focus_metrics import stability_metrics, z_repeatability_metrics, z_tables
    from harness.analysis.pixel_quality import SaturationLevel, assess, quality_metrics
    from harness.analysis.power_metrics import linearity_metrics, power_series_metrics
    from harness.analysis.stage_metrics import iso230_metrics, repeatability_metrics, repeatability_tables

    rng = np.random.default_rng(0)
    found = {}
    found.update(power_series_metrics(np.arange(50.0), 0.01 + 1e-5 * rng.standard_normal(50)))
    found.update(linearity_metrics(np.arange(1.0, 11.0), 0.4 * np.arange(1.0, 11.0) + 0.01))
    found.update(flat_field_metrics(100 + rng.random((40, 60)))[0])
    rows = [{"size": "300 um", "direction": d, "round": 0, "dx_um": rng.normal(), "dy_um": rng.normal()} for d in ("+x", "-x") * 3]
    found.update(repeatability_metrics(repeatability_tables(rows)["300 um"]))
    found.update(stability_metrics(np.arange(4) * 600.0, rng.normal(size=4))[0])
    found.update(z_repeatability_metrics(z_tables([{"size": "10 um", "direction": d, "dz_um": rng.normal()} for d in ("+z", "-z") * 2])["10 um"]))
    image = rng.random((16, 16))
    up = [{"status": "ok", "tag": "up", "context": '{"target": "0 um"}', "ifd": "0"}]
    found.update(iso230_metrics(up, lambda i: image, 1.0)[0])  # (with no image at all, ISO 230-2 refuses: nothing to measure)
    t = np.arange(1, 13) * 0.01
    signal = np.minimum(t * 3e4, 2500.0)
    bright = [em.PairStats(x, 100 + y, 2 + (0.4 * y if y < 2500 else 0.5)) for x, y in zip(t, signal, strict=True)]
    dark = [em.PairStats(x, 100 + 0.1 * x, 2.0) for x in t]
    found["ptc_levels"] = em.Metric(12.0, "")
    found.update(em.photon_transfer(em.series(bright, dark), dark))
    frames = [100 + rng.normal(0, 2, (20, 20)) for _ in range(8)]
    lit = em.spatial_stats([f + 500 * (1 + 0.01 * rng.normal()) for f in frames])
    found.update(em.spatial_nonuniformity(lit, em.spatial_stats(frames), 0.4))
    found.update(em.defect_metrics(em.defect_pixels(em.hot_pixels(frames[0]), (20, 20), lit, em.spatial_stats(frames))))
    found["spatial_level_pct_of_saturation"] = em.Metric(50.0, "%")
    found.update(quality_metrics(assess(SaturationLevel(4095.0, ""), np.zeros((4, 4), dtype=bool), 1, None, "")))  # every image result's
    res = psf_metrics.resolution(515, 0.75, 1.0)
    found.update(psf_metrics.psf_summary([], res))  # psf: the summary of a line (the same names with beads or none)
    found.update(psf_metrics.coregistration_metrics([], res, "none"))  # co-registration
    assert {k: m.unit for k, m in found.items()} == METRICS
