"""PSF results (kind ``psf``) as a microscope-metrics ``PSFBeadsDataset`` (plain dicts;
microscopemetrics-schema 0.0.5), at the level of its key measurements (no bead ROIs, no tables).

Contract: ``psf_dataset(folder, run, results, mapped)`` returns the dataset's ``input_data`` (the bead
z-stacks by reference, dimensions and channels from their OME-XML) and one ``PSFBeadsKeyMeasurement``
per result (one per line). Copied unchanged: the mean and SD of the x, y, z FWHMs over the accepted
beads (``fwhm_micron_*_mean``/``_std``, both of fitted Gaussians), the median axial FWHM
(``fwhm_micron_z_median``), the beads found and accepted (``total_bead_count``,
``considered_valid_count``). Our lateral asymmetry (min/max of the mean FWHMs), the median lateral
FWHM ((x + y) / 2 per bead), the theoretical FWHMs and the ratios to them have no field of the same
meaning and are listed as not mapped; so are the per-bead tables. Raises ``OSError``/``ValueError``
for an unreadable OME-TIFF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.export.mm_common import Mapped, metric, verdict_line
from harness.export.mm_flat_field import ome_image
from harness.records.run_folder import RunFolder
from harness.records.run_record import ResultsRecord, RunRecord

KINDS = ("psf",)
COPIED = {**{f"fwhm_{a}_um": f"fwhm_micron_{a}_mean" for a in "xyz"}, **{f"fwhm_{a}_sd_um": f"fwhm_micron_{a}_std" for a in "xyz"},
          "fwhm_z_median_um": "fwhm_micron_z_median"}
COUNTS = {"beads_found": "total_bead_count", "beads_accepted": "considered_valid_count"}
WHY = {"lateral_asymmetry": "min/max of the mean x and y FWHMs; the model's asymmetry ratio is per bead",
       "fwhm_lateral_median_um": "median of (x + y) / 2 per bead; the model has per-axis medians only",
       "theoretical_lateral_fwhm_um": "no theoretical FWHM field", "theoretical_axial_fwhm_um": "no theoretical FWHM field",
       "beads_rejected": "total_bead_count - considered_valid_count"}


def psf_dataset(folder: Path, run: RunRecord, results: ResultsRecord, mapped: Mapped) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(input_data, key_measurements, verdict lines) of the run's PSF results."""
    images: dict[str, dict[str, Any]] = {}
    key_measurements: list[dict[str, Any]] = []
    verdicts: list[str] = []
    for result in results.results or []:
        if result.get("kind") not in KINDS:
            continue
        name = result["series"]
        if name not in images:
            images[name] = ome_image(RunFolder(folder).file(name))
        channel_names = [c["name"] for c in images[name].get("channel_series", {}).get("channels", [])]
        lines = [str(x) for x in result.get("lines_on") or []]
        km: dict[str, Any] = {"channel_name": "+".join(lines) or str(result.get("subject"))}
        if km["channel_name"] in channel_names:
            km["channel_nr"] = channel_names.index(km["channel_name"])
        used: list[str] = []
        for ours, theirs in {**COPIED, **COUNTS}.items():
            value = metric(result, ours)
            if value is not None:
                km[theirs] = int(value) if ours in COUNTS else value
                used.append(ours)
        for metric_name in result.get("metrics", {}):
            if metric_name not in used:
                mapped.metric_left(result, metric_name, WHY.get(metric_name, "no field of the same meaning"))
        if result.get("beads"):
            mapped.unmapped.append(f"{result['subject']}: the per-bead table ({len(result['beads'])} beads; results.json) "
                                   "(the model holds beads as ROIs and tables)")
        key_measurements.append(km)
        verdicts.append(verdict_line(result, used))
    mapped.notes.append("FWHMs of fitted Gaussians, means and SDs (n - 1) over the accepted beads")
    mapped.unmapped.append("sample: the protocol's bead slide (the model's sample needs a preparation protocol with a URL: left out)")
    return {"psf_beads_images": list(images.values())}, key_measurements, verdicts
