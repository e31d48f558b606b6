"""The microscope-metrics export (``microscope-qc export``): real simulated runs of power stability,
power linearity and flat field exported as datasets of microscopemetrics-schema 0.0.5, validated
against the schema's LinkML YAML with LinkML's validator (JSON Schema generated from the schema, the
dataset class as target), numbers compared with results.json exactly; a broken document fails the
same validation; kinds the model cannot hold are refused in one line."""

from __future__ import annotations

import csv
import importlib.resources
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.commands import run
from harness.common.errors import UserError
from harness.export.microscopemetrics import build_document, render
from harness.export.mm_stage import extension_schema
from harness.finishing.runner import FinishingRunner as Runner
from harness.station.station import Station
from tests.conftest import station_variant

validator = pytest.importorskip("linkml.validator", reason="linkml (test extra) validates the exported documents")
SCHEMA = str(importlib.resources.files("microscopemetrics_schema") / "schema" / "microscopemetrics_schema.yaml")

PROTOCOLS = {
    "stability": """\
protocol: export-stability
title: short stability for the export
version: "1.0"
steps:
  - meter: {zero: true}
  - for_each: {line: [488, 561]}
    do:
      - meter: {wavelength: $line, averaging: 100}
      - laser: {line: $line, setpoint: 50 %, emission: on}
      - wait: 10 s
      - sample: {series: power_short_$line, every: 1 s, for: 20 s}
      - laser: {line: $line, emission: off}
acceptance:
  stability_pct: {pass: [99.0, null], warn: [98.0, null], unit: "%"}
""",
    "long": """\
protocol: export-long
title: long-term stability, shortened
steps:
  - meter: {wavelength: 488, averaging: 100}
  - laser: {line: 488, setpoint: 50 %, emission: on}
  - sample: {series: power_long_488, every: 30 s, for: 180 s}
  - laser: {line: 488, emission: off}
""",
    "linearity": """\
protocol: export-linearity
title: short linearity for the export
version: "2.1"
steps:
  - meter: {zero: true}
  - meter: {wavelength: 488, averaging: 100}
  - laser: {line: 488, setpoint: 10 %, emission: on}
  - for_each: {setpoint: [10 %, 40 %, 70 %, 100 %]}
    do:
      - laser: {line: 488, setpoint: $setpoint}
      - wait: 2 s
      - sample: {series: linearity_488, every: 1 s, for: 3 s}
  - laser: {line: 488, emission: off}
acceptance:
  r_squared: {pass: [0.999, null]}
""",
    "flat_field": """\
protocol: export-flat-field
title: small flat field for the export
version: "1.0"
steps:
  - specimen: {sample: uniform_slide, instructions: "Mount the even fluorescent plastic slide."}
  - laser: {line: all, emission: off}
  - acquire: {stack: flatfield, frames: 2, exposure: 200 ms, dark: true}
  - for_each: {line: [488]}
    do:
      - laser: {line: $line, setpoint: 20 %, emission: on}
      - wait: 5 s
      - acquire: {stack: flatfield, frames: 2, exposure: 200 ms}
      - laser: {line: $line, emission: off}
acceptance:
  uniformity_pct: {pass: [50.0, null], warn: [40.0, null], unit: "%"}
""",
    "stage": """\
protocol: export-stage
title: short stage repeatability for the export
steps:
  - laser: {line: 488, setpoint: 20 %, emission: on}
  - mark: start
  - for_each: {size: [300 um]}
    do:
      - repeat: 2
        as: round
        do:
          - for_each: {direction: [+x, -x]}
            do:
              - move: {to: start}
              - acquire: {stack: rep, exposure: 200 ms, centre_roi: [256, 256], tag: reference}
              - move: {along: $direction, by: $size}
              - move: {to: start}
              - acquire: {stack: rep, exposure: 200 ms, centre_roi: [256, 256], tag: return}
  - laser: {line: 488, emission: off}
""",
    "psf": """\
protocol: export-psf
title: one-line PSF for the export
steps:
  - specimen: {sample: bead_slide, bead_diameter: 100 nm, emission: {488: 515 nm}, instructions: "Mount the 100 nm bead slide."}
  - laser: {line: 488, setpoint: 20 %, emission: on}
  - acquire: {stack: psf, exposure: 100 ms, centre_roi: [256, 256], tag: psf, z_stack: {step: nyquist, oversample: 2, extent_fwhm: 8}}
  - laser: {line: 488, emission: off}
""",
    "iso230": """\
protocol: export-iso230
title: short ISO 230-2 run for the export
steps:
  - laser: {line: 488, setpoint: 20 %, emission: on}
  - repeat: 2
    as: run
    do:
      - for_each: {target: [0 um, 1000 um]}
        do:
          - move: {x: $target, y: 0 um, approach: positive, overtravel: 100 um, approach_axes: [x]}
          - acquire: {stack: iso230, exposure: 200 ms, centre_roi: [256, 256], tag: up}
      - for_each: {target: [1000 um, 0 um]}
        do:
          - move: {x: $target, y: 0 um, approach: negative, overtravel: 100 um, approach_axes: [x]}
          - acquire: {stack: iso230, exposure: 200 ms, centre_roi: [256, 256], tag: down}
  - laser: {line: 488, emission: off}
""",
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("export")
    out = {}
    for name, text in PROTOCOLS.items():
        protocol = base / f"{name}.yaml"
        protocol.write_text(text)
        with Station.load(station_variant(base, {}, f"station-{name}.yaml")) as station:
            outcome = Runner(station, protocol, runs_dir=base / "runs", quiet=True).run()
        assert outcome.status == "completed", f"{name}: {outcome.reason}"
        out[name] = outcome.folder
    return out


def _errors(instance: dict[str, Any], target: str) -> list[str]:
    report = validator.validate(instance, extension_schema() if target.startswith("Stage") else SCHEMA, target)
    return [r.message for r in report.results]


def _exported(folder: Path, fmt: str = "yaml") -> tuple[str, dict[str, Any]]:
    document = build_document(folder)
    text = render(document, fmt)
    return document.dataset_class, (yaml.safe_load(text) if fmt == "yaml" else json.loads(text))


def _results(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "results.json").read_text())["results"]


def _value(result: dict[str, Any], name: str) -> Any:
    return result["metrics"][name]["value"]


def test_power_stability_is_a_valid_light_source_power_dataset_with_the_same_numbers(folders: dict[str, Path]) -> None:
    folder = folders["stability"]
    cls, doc = _exported(folder)
    assert cls == "LightSourcePowerDataset"
    assert _errors(doc, cls) == []
    run_json = json.loads((folder / "run.json").read_text())
    assert doc["microscope"]["name"] == run_json["station"]["name"]
    assert (doc["microscope"]["manufacturer"], doc["microscope"]["model"]) == ("Simulated", "Virtual widefield")
    assert doc["experimenter"]["name"] == run_json["operator"]
    assert doc["acquisition_datetime"] == run_json["started_utc"]
    assert (doc["acquisition_protocol"]["name"], doc["acquisition_protocol"]["version"]) == ("export-stability", "1.0")
    results = {r["subject"]: r for r in _results(folder)}
    kms = {km["light_source"]["wavelength_nm"]: km for km in doc["output"]["key_measurements"]}
    assert set(kms) == {488.0, 561.0}
    for line in ("488", "561"):
        r, km = results[f"{line} nm"], kms[float(line)]
        assert km["light_source"]["name"] == f"Laser{line}"
        assert (km["power_meter"]["name"], km["power_meter"]["manufacturer"], km["power_meter"]["model"]) == ("Meter", "Thorlabs", "PM100D")
        assert km["measuring_location"] == "OBJECTIVE_FOCAL"
        for ours, theirs in (("mean_mw", "power_mean_mw"), ("median_mw", "power_median_mw"), ("sd_mw", "power_std_mw"),
                             ("min_mw", "power_min_mw"), ("max_mw", "power_max_mw")):
            assert km[theirs] == _value(r, ours), theirs
        assert km["short_term_power_stability"] == _value(r, "stability_pct") / 100.0
        assert km["nr_of_measurements"] == _value(r, "samples") == 20
        rows = list(csv.DictReader((folder / r["series"]).open()))
        assert (km["short_term_power_stability_start_datetime"], km["short_term_power_stability_end_datetime"]) == (rows[0]["utc"], rows[-1]["utc"])
    # every reading is an input measurement, as recorded
    measurements = doc["input_data"]["power_measurements"]
    rows = [row for r in _results(folder) for row in csv.DictReader((folder / r["series"]).open())]
    assert len(measurements) == len(rows) == 40
    for m, row in zip(measurements, rows):
        assert m["power_mw"] == float(row["power_W"]) * 1000.0 and m["acquisition_datetime"] == row["utc"]
        assert m["power_set_point"] == float(row["setpoint_pct_nominal"]) / 100.0 == 0.5
    # what has no field is listed with its value, not dropped
    comment = doc["output"]["comment"]["text"]
    assert f"488 nm: cv_pct = {_value(results['488 nm'], 'cv_pct')!r} % [not judged] (no CV field)" in comment
    assert "drift_pct_per_h" in comment and "warmup_time_s" in comment and "integration time" in comment
    assert "488 nm (stability, power_short_488.csv): verdict pass; stability_pct pass" in comment


def test_a_record_read_every_30_s_is_long_term_stability(folders: dict[str, Path]) -> None:
    cls, doc = _exported(folders["long"])
    assert _errors(doc, cls) == []
    [r] = _results(folders["long"])
    [km] = doc["output"]["key_measurements"]
    assert km["long_term_power_stability"] == _value(r, "stability_pct") / 100.0 and "short_term_power_stability" not in km
    assert "long-term by the reading interval (30.0 s)" in doc["output"]["comment"]["text"]


def test_power_linearity_maps_fit_fields_and_converts_the_slope_to_the_models_set_point(folders: dict[str, Path]) -> None:
    folder = folders["linearity"]
    cls, doc = _exported(folder)
    assert _errors(doc, cls) == []
    [r] = _results(folder)
    [km] = doc["output"]["key_measurements"]
    assert km["power_linearity_intercept"] == _value(r, "intercept_mw")
    assert km["power_linearity_coefficient_of_determination"] == _value(r, "r_squared")
    assert km["power_linearity_slope"] == _value(r, "slope") * 150.0  # the 488 nm laser's nominal power (simulated.yaml)
    assert "x nominal power 150.0 mW -> power_linearity_slope" in doc["output"]["comment"]["text"]
    assert "max_relative_deviation_pct" in doc["output"]["comment"]["text"]
    assert sorted({m["power_set_point"] for m in doc["input_data"]["power_measurements"]}) == [0.1, 0.4, 0.7, 1.0]


def test_flat_field_is_a_valid_field_illumination_dataset_referencing_its_image(folders: dict[str, Path]) -> None:
    folder = folders["flat_field"]
    cls, doc = _exported(folder)
    assert cls == "FieldIlluminationDataset"
    assert _errors(doc, cls) == []
    [image] = doc["input_data"]["field_illumination_images"]
    assert image["name"] == image["data_reference"]["data_uri"] == "flatfield.ome.tif"
    assert (image["shape_x"], image["shape_y"], image["shape_c"], image["shape_t"]) == (1920, 1080, 2, 2)
    assert "array_data" not in image and [c["name"] for c in image["channel_series"]["channels"]] == ["dark", "488"]
    [r] = _results(folder)
    [km] = doc["output"]["key_measurements"]
    assert (km["channel_name"], km["channel_nr"]) == ("488", 1)
    for ours, theirs in (("max_intensity", "max_intensity"), ("reference_zone_x_px", "center_geometric_x"),
                         ("fitted_centre_y_px", "center_fitted_y"), ("fitted_centre_offset_frac", "center_fitted_distance_relative")):
        assert km[theirs] == _value(r, ours), theirs
    assert km["center_fitted_x_relative"] == (_value(r, "fitted_centre_x_px") - 960) / 960
    comment = doc["output"]["comment"]["text"]
    for name in ("uniformity_pct", "centering_accuracy_pct", "cv_pct", "centroid_x_px", "ratio_top_left"):
        assert f"488 nm: {name} = {_value(r, name)!r}" in comment, name


def test_psf_is_a_valid_psf_beads_dataset_at_key_measurement_level(folders: dict[str, Path]) -> None:
    cls, doc = _exported(folders["psf"])
    assert cls == "PSFBeadsDataset"
    assert _errors(doc, cls) == []
    [r] = _results(folders["psf"])
    [km] = doc["output"]["key_measurements"]
    assert (km["channel_name"], km["channel_nr"]) == ("488", 0)
    for ours, theirs in (("fwhm_x_um", "fwhm_micron_x_mean"), ("fwhm_z_sd_um", "fwhm_micron_z_std"), ("fwhm_z_median_um", "fwhm_micron_z_median"),
                         ("beads_found", "total_bead_count"), ("beads_accepted", "considered_valid_count")):
        assert km[theirs] == _value(r, ours), theirs
    assert doc["input_data"]["psf_beads_images"][0]["shape_z"] > 1
    comment = doc["output"]["comment"]["text"]
    assert f"488 nm: lateral_asymmetry = {_value(r, 'lateral_asymmetry')!r}" in comment and "fwhm_x_ratio" in comment


def test_a_broken_document_fails_the_same_validation(folders: dict[str, Path]) -> None:
    cls, doc = _exported(folders["linearity"])
    no_microscope = {k: v for k, v in doc.items() if k != "microscope"}
    assert any("'microscope' is a required property" in e for e in _errors(no_microscope, cls))
    no_processing_time = json.loads(json.dumps(doc))
    del no_processing_time["output"]["processing_datetime"]
    assert _errors(no_processing_time, cls)
    wrong_type = json.loads(json.dumps(doc))
    wrong_type["input_data"]["power_measurements"][0]["power_mw"] = "a lot"
    assert any("'a lot' is not of type 'number'" in e for e in _errors(wrong_type, cls))
    naive_time = dict(doc, acquisition_datetime="2026-12-02T11:22:22")  # no offset: not an RFC 3339 date-time
    assert any("is not a 'date-time'" in e for e in _errors(naive_time, cls))


def test_the_cli_writes_yaml_or_json(folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "LightSourcePowerDataset_run.json"
    assert run(["export", str(folders["stability"]), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert _errors(doc, "LightSourcePowerDataset") == []
    assert "namespace microscopemetrics_schema:analyses/light_source_power/LightSourcePowerDataset" in capsys.readouterr().err
    assert run(["export", str(folders["flat_field"]), "--format", "microscope-metrics"]) == 0
    assert _errors(yaml.safe_load(capsys.readouterr().out), "FieldIlluminationDataset") == []


def test_stage_runs_are_stage_repeatability_datasets_of_the_extension_schema(folders: dict[str, Path]) -> None:
    cls, doc = _exported(folders["stage"])
    assert cls == "StageRepeatabilityDataset"
    assert _errors(doc, cls) == []
    [r] = _results(folders["stage"])
    kms = {km["direction"]: km for km in doc["output"]["key_measurements"]}
    assert set(kms) == {"all", "+x", "-x"}
    assert kms["all"]["displacement_max_2d_um"] == _value(r, "max_displacement_um")
    assert kms["all"]["displacement_x_std_um"] == _value(r, "sd_x_um") and kms["all"]["displacement_y_mean_um"] == _value(r, "mean_y_um")
    assert kms["all"]["nr_of_pairs"] == _value(r, "pairs") == 4 and kms["+x"]["move_size_um"] == 300.0
    assert [(d["direction"], d["round_nr"], d["displacement_x_um"]) for d in doc["output"]["stage_displacements"]] == [
        (d["direction"], d["round"], d["dx_um"]) for d in r["displacements"]]
    assert "OMERO-metrics shows only the schema's own classes" in doc["output"]["comment"]["text"]
    assert doc["input_data"]["stage_images"][0]["data_reference"]["data_uri"] == r["series"]
    cls, doc = _exported(folders["iso230"])
    assert _errors(doc, cls) == []
    [r] = _results(folders["iso230"])
    [km] = doc["output"]["iso230_key_measurements"]
    assert (km["axis"], km["nr_of_targets"]) == ("x", 2)
    assert km["bidirectional_repeatability_um"] == _value(r, "bidirectional_repeatability_R_um")
    assert km["reversal_value_um"] == _value(r, "reversal_B_um")
    assert [t["reversal_value_um"] for t in km["iso230_targets"]] == [t["B_i_um"] for t in r["targets"]]
    # the extension's validation catches a broken document too
    broken = json.loads(json.dumps(doc))
    del broken["output"]["iso230_key_measurements"][0]["axis"]
    assert any("'axis' is a required property" in e for e in _errors(broken, cls))


def test_a_kind_the_model_cannot_hold_is_refused_in_one_line(folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folders["stage"], copy)
    data = json.loads((copy / "results.json").read_text())
    (copy / "results.json").write_text(json.dumps({**data, "results": [{**r, "kind": "camera"} for r in data["results"]]}))
    out = tmp_path / "camera.yaml"
    assert run(["export", str(copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "camera: microscopemetrics-schema 0.0.5 has no dataset for detector characterisation" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and not out.exists()


def test_an_unanalysed_folder_and_a_missing_schema_package_are_one_clear_message(
        folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folders["linearity"], copy)
    (copy / "results.json").unlink()
    assert run(["export", str(copy)]) == 2
    assert "no results.json: analyse the run first (microscope-qc analyze" in capsys.readouterr().err
    document = build_document(folders["linearity"])
    monkeypatch.setitem(sys.modules, "microscopemetrics_schema.datamodel", None)  # as if the extra were not installed
    with pytest.raises(UserError, match=r"pip install 'microscope-qc-harness\[omero-metrics\]'"):
        render(document)
    assert run(["export", str(folders["linearity"])]) == 2
    assert "needs microscopemetrics-schema 0.0.5" in capsys.readouterr().err


def test_a_result_the_model_cannot_hold_is_listed_and_two_dataset_classes_are_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folders["linearity"], copy)
    data = json.loads((copy / "results.json").read_text())
    stage = {"series": "rep.ome.tif", "kind": "camera", "subject": "XY",
             "metrics": {"max_displacement_um": {"value": 1.25, "unit": "um", "limit": None, "verdict": "not judged"}}, "verdict": "not judged"}
    (copy / "results.json").write_text(json.dumps({**data, "results": [*data["results"], stage]}))
    cls, doc = _exported(copy)
    assert _errors(doc, cls) == []
    comment = doc["output"]["comment"]["text"]
    assert "result XY (rep.ome.tif): camera: microscopemetrics-schema 0.0.5 has no dataset for detector characterisation" in comment
    assert "XY: max_displacement_um = 1.25 um [not judged] (a camera result)" in comment
    flat = {**stage, "kind": "flat_field", "series": "flatfield.ome.tif"}
    (copy / "results.json").write_text(json.dumps({**data, "results": [*data["results"], flat]}))
    with pytest.raises(UserError, match="results of FieldIlluminationDataset and LightSourcePowerDataset in one run"):
        build_document(copy)
