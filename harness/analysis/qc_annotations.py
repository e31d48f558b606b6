"""Put a run's QC results into its own OME-TIFF files, so the data carry their QC.

Each analysed stack gets two namespaced MapAnnotations linked from its Image:
- ``NS_QC``: every metric of the results computed from that file, ``<subject>/<metric>`` = value,
  with ``.unit``, ``.limit`` and ``.verdict`` entries, each result's verdict, the overall verdict,
  the run id, when it was analysed and by which version;
- ``NS_NBO_QC``: the values that have a 4DN-BINA-OME Calibration+Performance name
  (``FieldUniformityEvaluation``, ``XYRepeatability``, ...: the analyses' ``AnalysisSpec.nbo_names``,
  passed in as ``nbo_names``), keyed ``<name>[<subject>]``.
Re-analysing replaces both (the file's other annotations and its pixels are untouched). The XML is
validated against the OME schema before it is written, crash-safely
(``tiff_description.rewrite_description``: a kill or a full disk leaves the previous XML).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tifffile
from ome_types import from_xml
from ome_types import model as m

from harness.common.safe_paths import inside
from harness.records.image_records import NS_NBO_QC, NS_QC
from harness.records.ome_metadata import ome_xml_bytes
from harness.records.tiff_description import rewrite_description


def _fmt(value: Any) -> str:
    if value is None:
        return "NaN"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


NboNames = Mapping[tuple[str, str], str]  # (result kind, metric) -> 4DN-BINA-OME Calibration+Performance field


def qc_values(results: list[dict[str, Any]], data: dict[str, Any], nbo_names: NboNames) -> tuple[dict[str, str], dict[str, str]]:
    """The two annotations' key/value pairs for the results computed from one file."""
    qc: dict[str, str] = {
        "RunId": data["run_id"], "Protocol": data["protocol"], "OverallVerdict": data["verdict"],
        "AnalysedUTC": data["analysed_utc"], "ToolVersion": data["tool_version"],
    }
    nbo: dict[str, str] = {}
    for r in results:
        qc[f"{r['subject']}/verdict"] = r["verdict"]
        for name, metric in r["metrics"].items():
            key = f"{r['subject']}/{name}"
            qc[key] = _fmt(metric["value"])
            if metric["unit"]:
                qc[f"{key}.unit"] = metric["unit"]
            if metric["limit"]:
                qc[f"{key}.limit"] = json.dumps(metric["limit"], separators=(",", ":"))
                qc[f"{key}.verdict"] = metric["verdict"]
            nbo_name = nbo_names.get((r["kind"], name))
            if nbo_name and metric["value"] is not None:
                nbo[f"{nbo_name}[{r['subject']}]"] = f"{_fmt(metric['value'])} {metric['unit']}".strip()
    return qc, nbo


def _map(id_: str, namespace: str, values: dict[str, str]) -> m.MapAnnotation:
    return m.MapAnnotation(id=id_, namespace=namespace, value=m.Map(ms=[m.Map.M(k=k, value=v) for k, v in values.items()]))


def annotate_file(path: Path, results: list[dict[str, Any]], data: dict[str, Any], nbo_names: NboNames) -> None:
    """Replace the file's QC annotations by those of ``results`` (its pixels untouched)."""
    with tifffile.TiffFile(path) as tif:
        ome = from_xml(tif.ome_metadata)
    qc, nbo = qc_values(results, data, nbo_names)
    ours = {NS_QC, NS_NBO_QC}
    sa = ome.structured_annotations or m.StructuredAnnotations()
    old_ids = {a.id for a in sa.map_annotations if a.namespace in ours}
    sa.map_annotations = [a for a in sa.map_annotations if a.namespace not in ours]
    new = [_map("Annotation:QC0", NS_QC, qc)] + ([_map("Annotation:QC1", NS_NBO_QC, nbo)] if nbo else [])
    sa.map_annotations.extend(new)
    ome.structured_annotations = sa
    image = ome.images[0]
    image.annotation_refs = [r for r in image.annotation_refs if r.id not in old_ids] + [m.AnnotationRef(id=a.id) for a in new]
    rewrite_description(path, ome_xml_bytes(ome))


def annotate_run(folder: Path, data: dict[str, Any], nbo_names: NboNames | None = None) -> list[str]:
    """Annotate every OME-TIFF that results were computed from; the names of the files changed.
    Raises ``UnsafePath`` for a result's file outside the folder, and what reading or validating
    the XML raises (the caller records it: the results stand without the copy in the files)."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in data["results"]:
        if r["series"].endswith(".ome.tif") and not r.get("damaged"):  # a stack without readable XML is not rewritten
            by_file.setdefault(r["series"], []).append(r)
    for name, results in by_file.items():
        annotate_file(inside(folder, name), results, data, nbo_names or {})
    return sorted(by_file)
