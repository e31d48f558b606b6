"""A run folder's results as one microscope-metrics dataset (the LinkML model of PyPI
``microscopemetrics-schema`` 0.0.5, which OMERO-metrics reads and displays), written as YAML or JSON.

Contract:
- ``build_document(folder)`` -> ``Document``: the dataset as a plain dict shaped like the model, its
  class name (``LightSourcePowerDataset`` for power stability/linearity, ``FieldIlluminationDataset``
  for flat field, ``PSFBeadsDataset`` for PSF; ``StageRepeatabilityDataset`` of the extension schema ``qc_extensions.yaml`` for
  stage repeatability and ISO 230-2, which the model lacks), and what did not map. Needs no optional package. Numbers are results.json's,
  unchanged where the model's unit is ours; where it is not, the conversion is listed in the output's
  comment (``Conversions``). Every metric, input or file with no field in the model is listed in the
  output's comment (``Not mapped``) with its value, unit and verdict: nothing is dropped silently.
  Images are referenced by file name (and their OME dimensions), never embedded.
- ``render(document, fmt)`` -> text: the dataset instantiated as the model's Python class (so its
  required fields and types are checked as OMERO-metrics' loader checks them), dumped by LinkML's
  YAML or JSON dumper, and loaded back from that text; an extension class (no Python class) is
  written as plain YAML/JSON. Needs the ``omero-metrics`` extra.
- ``file_name(document, fmt)``: ``<DatasetClass>_<run folder>.<yaml|json>`` (OMERO-metrics takes a
  project's dataset file annotations by the class name before the first ``_``; attach it with
  namespace ``NAMESPACE[class]``).
- Raises ``UserError`` for what the user can fix or must know: no run.json/results.json, a run whose
  results are all of kinds the model cannot hold (the message names each kind and what the model
  lacks), results of two dataset classes in one run, a missing ``microscopemetrics-schema``.
  ``OSError``/``ValueError`` from an unreadable data file pass through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.common.errors import UserError
from harness.export.mm_common import Mapped, common_fields, output_fields
from harness.export.mm_flat_field import KINDS as FLAT_FIELD_KINDS
from harness.export.mm_flat_field import flat_field_dataset
from harness.export.mm_power import KINDS as POWER_KINDS
from harness.export.mm_power import power_dataset
from harness.export.mm_psf import KINDS as PSF_KINDS
from harness.export.mm_psf import psf_dataset
from harness.export.mm_stage import KINDS as STAGE_KINDS
from harness.export.mm_stage import stage_dataset
from harness.records.run_folder import RunFolder
from harness.records.run_record import ResultsRecord, RunRecord, read_results, read_run

SCHEMA_VERSION = "0.0.5"
EXTRA = "omero-metrics"
MISSING_SCHEMA = (f"the microscope-metrics export needs microscopemetrics-schema {SCHEMA_VERSION}: "
                  f"pip install 'microscope-qc-harness[{EXTRA}]'")
FORMATS = ("yaml", "json")

CLASSES = {**{k: "LightSourcePowerDataset" for k in POWER_KINDS}, **{k: "FieldIlluminationDataset" for k in FLAT_FIELD_KINDS},
           **{k: "PSFBeadsDataset" for k in PSF_KINDS}, **{k: "StageRepeatabilityDataset" for k in STAGE_KINDS}}
"""our result kind -> the model's dataset class."""

EXTENSION_CLASSES = ("StageRepeatabilityDataset",)
"""classes of microscope-qc's extension schema (harness/export/qc_extensions.yaml), not of microscopemetrics-schema."""

NAMESPACE = {"LightSourcePowerDataset": "microscopemetrics_schema:analyses/light_source_power/LightSourcePowerDataset",
             "FieldIlluminationDataset": "microscopemetrics_schema:analyses/field_illumination/FieldIlluminationDataset",
             "PSFBeadsDataset": "microscopemetrics_schema:analyses/psf_beads/PSFBeadsDataset",
             "StageRepeatabilityDataset": "microscope_qc:StageRepeatabilityDataset"}
"""dataset class -> the class CURIE OMERO-metrics expects as the file annotation's namespace."""

LACKS = {
    "camera": "has no dataset for detector characterisation (no EMVA 1288 gain, noise, dark current or linearity fields)",
    "focus_stability": "has no dataset for focus drift over time",
    "z_repeatability": "has no dataset for Z positioning repeatability",
    "coregistration": "has no dataset for chromatic co-registration",
}
"""result kinds the model cannot hold here -> what it lacks (the refusal names it)."""

NO_RESULT = ("analysis failed", "empty")
"""result kinds that hold no metrics (listed in the output's comment, errors in ``errors``)."""


@dataclass
class Document:
    """One dataset of the model as a plain dict, its class, and what did not map."""

    dataset_class: str
    data: dict[str, Any]
    mapped: Mapped = field(default_factory=Mapped)


def _lacks(kind: str) -> str:
    return f"{kind}: microscopemetrics-schema {SCHEMA_VERSION} {LACKS.get(kind, 'has no dataset for this kind')}"


def build_document(folder: Path) -> Document:
    """The run's results as one dataset of the model (see the module's contract)."""
    folder = Path(folder)
    rf = RunFolder(folder)
    if not rf.run_json.is_file():
        raise UserError(f"{folder}: no run.json: not a run folder")
    if not rf.results_json.is_file():
        raise UserError(f"{folder}: no results.json: analyse the run first (microscope-qc analyze {folder})")
    try:
        run: RunRecord = read_run(folder)
        results: ResultsRecord = read_results(folder)
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder}: cannot read its records ({exc})") from exc
    kinds = [str(r.get("kind")) for r in results.results or []]
    classes = sorted({CLASSES[k] for k in kinds if k in CLASSES})
    left = sorted({k for k in kinds if k not in CLASSES and k not in NO_RESULT})
    if not classes:
        what = "; ".join(_lacks(k) for k in left) if left else "no analysed result" + (
            f" ({results.analysis_error})" if results.analysis_error else "")
        raise UserError(f"{folder.name}: nothing to export to the microscope-metrics model: {what}")
    if len(classes) > 1:
        raise UserError(f"{folder.name}: results of {' and '.join(classes)} in one run: the export writes one dataset per file, "
                        "and this run would need two")
    mapped = Mapped()
    for r in results.results or []:
        if r.get("kind") in left:
            mapped.unmapped.append(f"result {r.get('subject')} ({r.get('series')}): {_lacks(str(r.get('kind')))}")
            for name in r.get("metrics", {}):
                mapped.metric_left(r, name, f"a {r.get('kind')} result")
        elif r.get("kind") in NO_RESULT:
            mapped.unmapped.append(f"result {r.get('subject')} ({r.get('series')}): {r.get('kind')}: {r.get('error') or r.get('note') or ''}")
    data = common_fields(folder, run, mapped)
    dataset_class = classes[0]
    parts: dict[str, Any]
    if dataset_class == "StageRepeatabilityDataset":
        input_data, parts, verdicts = stage_dataset(folder, run, results, mapped)
    else:
        build = {"LightSourcePowerDataset": power_dataset, "FieldIlluminationDataset": flat_field_dataset, "PSFBeadsDataset": psf_dataset}[dataset_class]
        input_data, key_measurements, verdicts = build(folder, run, results, mapped)
        parts = {"key_measurements": key_measurements}
    data["input_data"] = input_data
    data["processed"] = True
    data["output"] = {**parts, **output_fields(results, mapped, verdicts)}
    if results.run_status and str(results.run_status) != "completed":
        data["output"]["warnings"] = [f"the run {results.run_status}: its results are partial", *data["output"].get("warnings", [])]
    return Document(dataset_class, data, mapped)


def _schema() -> Any:
    try:
        # optional and heavy (LinkML runtime, rdflib): loaded only when a document is written
        import microscopemetrics_schema.datamodel as mm_schema
    except ImportError as exc:
        raise UserError(MISSING_SCHEMA) from exc
    return mm_schema


def render(document: Document, fmt: str = "yaml") -> str:
    """The document as text in ``fmt`` (yaml or json), checked by instantiating the model's class
    and loading the text back (a failure there is a bug of the mapping: ``ValueError``)."""
    if fmt not in FORMATS:
        raise UserError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    mm_schema = _schema()
    from linkml_runtime.dumpers import json_dumper, yaml_dumper  # comes with microscopemetrics-schema (see _schema)
    from linkml_runtime.loaders import json_loader, yaml_loader

    if document.dataset_class in EXTENSION_CLASSES:
        # no generated Python class: written as plain YAML/JSON (the tests validate it against the extension schema)
        return yaml.safe_dump(document.data, sort_keys=False, allow_unicode=True) if fmt == "yaml" else json.dumps(document.data, indent=2) + "\n"
    cls = getattr(mm_schema, document.dataset_class)
    try:
        instance = cls(**document.data)
        # JSON without LinkML's "@type" key: the schema's JSON form has no such property
        text: str = yaml_dumper.dumps(instance) if fmt == "yaml" else json_dumper.dumps(instance, inject_type=False)
        (yaml_loader if fmt == "yaml" else json_loader).loads(text, target_class=cls)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the {document.dataset_class} document does not fit microscopemetrics-schema {SCHEMA_VERSION}: {exc}") from exc
    return text


def file_name(document: Document, fmt: str = "yaml") -> str:
    """``<DatasetClass>_<run folder name>.<fmt>`` (see the module's contract)."""
    return f"{document.dataset_class}_{document.data['name']}.{fmt}"
