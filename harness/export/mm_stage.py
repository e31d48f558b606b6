"""Stage results (kinds ``stage_repeatability`` and ``iso230``) as a ``StageRepeatabilityDataset`` of
the extension schema ``qc_extensions.yaml`` beside this module (microscopemetrics-schema 0.0.5 has no
dataset for stage positioning; the extension builds on its core classes, as its own analyses do).

Contract: ``stage_dataset(folder, run, results, mapped)`` returns the dataset's ``input_data`` (the
registered OME-TIFFs by reference) and its output parts: ``key_measurements`` (one per move size and
direction, ``all`` included, from a repeatability result's ``table``), ``iso230_key_measurements``
(one per axis, with its targets) and ``stage_displacements`` (every measured displacement). Numbers
are results.json's, unchanged. ``extension_schema()`` is the extension with the core schema's
elements merged in (a ``SchemaDefinition`` for LinkML's validator; needs linkml-runtime, which the
``omero-metrics`` extra brings). Raises ``OSError``/``ValueError`` for an unreadable OME-TIFF.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from harness.export.mm_common import Mapped, metric, verdict_line
from harness.export.mm_flat_field import ome_image
from harness.records.run_folder import RunFolder
from harness.records.run_record import ResultsRecord, RunRecord

KINDS = ("stage_repeatability", "iso230")
EXTENSION_SCHEMA = Path(__file__).with_name("qc_extensions.yaml")
NOT_SHOWN = ("StageRepeatabilityDataset is a class of microscope-qc's extension of microscopemetrics-schema (qc_extensions.yaml): "
             "it validates as a microscope-metrics dataset, but OMERO-metrics shows only the schema's own classes")
ISO_FIELDS = {"bidirectional_repeatability_R_um": "bidirectional_repeatability_um", "repeatability_R_up_um": "unidirectional_repeatability_up_um",
              "repeatability_R_down_um": "unidirectional_repeatability_down_um", "reversal_B_um": "reversal_value_um", "targets": "nr_of_targets"}
TARGET_FIELDS = {"n_up": "nr_up", "n_down": "nr_down", "mean_up_um": "mean_deviation_up_um", "mean_down_um": "mean_deviation_down_um",
                 "s_up_um": "std_up_um", "s_down_um": "std_down_um", "B_i_um": "reversal_value_um", "R_up_i_um": "unidirectional_repeatability_up_um",
                 "R_down_i_um": "unidirectional_repeatability_down_um", "R_i_um": "bidirectional_repeatability_um"}


def _um(text: Any) -> float | None:
    """``300 um`` -> 300.0 (None for anything else)."""
    parts = str(text).split()
    try:
        return float(parts[0]) if len(parts) == 2 and parts[1] == "um" else None
    except ValueError:
        return None


def _repeatability(result: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    sizes = {_um(d.get("size")) for d in result.get("displacements") or []} - {None}
    size = sizes.pop() if len(sizes) == 1 else _um(str(result.get("subject", "")).replace(" moves", ""))
    kms: list[dict[str, Any]] = []
    for direction, row in (result.get("table") or {}).items():
        km: dict[str, Any] = {"direction": direction, "nr_of_pairs": int(row["n"]), "displacement_max_2d_um": row["max_abs_2d_um"]}
        if size is not None:
            km["move_size_um"] = size
        for axis in "xy":
            for ours, theirs in (("mean_um", "mean_um"), ("sd_um", "std_um"), ("max_abs_um", "max_abs_um")):
                if row.get(axis, {}).get(ours) is not None:
                    km[f"displacement_{axis}_{theirs}"] = row[axis][ours]
        kms.append(km)
    displacements = [{"move_size_um": _um(d.get("size")), "direction": d.get("direction"), "round_nr": d.get("round"),
                      "displacement_x_um": d.get("dx_um"), "displacement_y_um": d.get("dy_um")} for d in result.get("displacements") or []]
    displacements = [{k: v for k, v in d.items() if v is not None} for d in displacements]
    # the metrics are the table's "all" row
    return kms, displacements, ["max_displacement_um", "sd_x_um", "sd_y_um", "mean_x_um", "mean_y_um", "pairs"]


def _iso230(result: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    km: dict[str, Any] = {"axis": str(result.get("subject", "")).replace(" axis", "")}
    used = []
    for ours, theirs in ISO_FIELDS.items():
        value = metric(result, ours)
        if value is not None:
            km[theirs] = int(value) if theirs == "nr_of_targets" else value
            used.append(ours)
    targets = []
    for t in result.get("targets") or []:
        target: dict[str, Any] = {"target_position_um": _um(t.get("target"))}
        target.update({theirs: t[ours] for ours, theirs in TARGET_FIELDS.items() if t.get(ours) is not None})
        targets.append(target)
    km["iso230_targets"] = targets
    return km, used


def stage_dataset(folder: Path, run: RunRecord, results: ResultsRecord, mapped: Mapped
                  ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(input_data, output parts, verdict lines) of the run's stage results."""
    images: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"key_measurements": [], "iso230_key_measurements": [], "stage_displacements": []}
    verdicts: list[str] = []
    for result in results.results or []:
        if result.get("kind") not in KINDS:
            continue
        if result["series"] not in images:
            images[result["series"]] = ome_image(RunFolder(folder).file(result["series"]))
        if result["kind"] == "stage_repeatability":
            kms, displacements, used = _repeatability(result)
            out["key_measurements"] += kms
            out["stage_displacements"] += displacements
        else:
            km, used = _iso230(result)
            out["iso230_key_measurements"].append(km)
            if result.get("not_reported"):
                mapped.unmapped.append(f"{result['subject']}: ISO 230-2 values not reported: {result['not_reported']}")
        for name in result.get("metrics", {}):
            if name not in used:
                mapped.metric_left(result, name, "no field")
        verdicts.append(verdict_line(result, used))
    mapped.notes.append(NOT_SHOWN)
    return {"stage_images": list(images.values())}, {k: v for k, v in out.items() if v}, verdicts


def extension_schema() -> Any:
    """The extension schema with microscopemetrics-schema's core merged in (a LinkML ``SchemaDefinition``)."""
    # linkml-runtime comes with microscopemetrics-schema (the omero-metrics extra): loaded only here
    from linkml_runtime.utils.schemaview import SchemaView

    core = importlib.resources.files("microscopemetrics_schema") / "schema" / "core"
    view = SchemaView(str(EXTENSION_SCHEMA), importmap={"core": str(core)})
    view.merge_imports()
    return view.schema
