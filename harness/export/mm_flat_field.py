"""Flat-field results (kind ``flat_field``) as a microscope-metrics ``FieldIlluminationDataset``
(plain dicts; microscopemetrics-schema 0.0.5).

Contract: ``flat_field_dataset(folder, run, results, mapped)`` returns the dataset's ``input_data``
(one ``Image`` per analysed OME-TIFF, by reference: its file name in ``data_reference.data_uri`` and
its dimensions, pixel size and channels from its OME-XML; no pixel data) and one
``FieldIlluminationKeyMeasurement`` per result (one per lit channel). Only metrics whose definition
matches the model's field are mapped, copied unchanged:
- ``max_intensity`` (the smoothed, dark-subtracted image's maximum, ADU);
- ``reference_zone_x/y_px`` -> ``center_geometric_x/y`` (the centroid of the region of maximum
  illumination; ours: pixels >= 90 % of the maximum, theirs: an adaptive top bin);
- ``fitted_centre_x/y_px`` -> ``center_fitted_x/y``, ``fitted_centre_offset_frac`` ->
  ``center_fitted_distance_relative`` (both: distance to the centre / distance to a corner);
- the relative positions, (x - W/2) / (W/2) as the model describes them, from those.
Pixel coordinates are ours (pixel centres at k + 0.5; the model does not say): stated in the notes.
The intensity-weighted centroid (the model's center of mass is of the central region), the corner
ratios (single smoothed pixels; the model's are means over corner squares), U, field uniformity,
centering accuracy and CV have no field and are listed as not mapped.
Raises ``OSError``/``ValueError`` for an OME-TIFF whose OME-XML cannot be read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import tifffile

from harness.export.mm_common import Mapped, metric, verdict_line
from harness.records.run_folder import RunFolder
from harness.records.run_record import ResultsRecord, RunRecord

KINDS = ("flat_field",)
COPIED = {"max_intensity": "max_intensity", "reference_zone_x_px": "center_geometric_x", "reference_zone_y_px": "center_geometric_y",
          "fitted_centre_x_px": "center_fitted_x", "fitted_centre_y_px": "center_fitted_y",
          "fitted_centre_offset_frac": "center_fitted_distance_relative"}
WHY = {
    "uniformity_pct": "no uniformity field", "field_uniformity_pct": "no field-uniformity field",
    "centering_accuracy_pct": "no centering-accuracy field", "cv_pct": "no CV field",
    "centroid_x_px": "intensity-weighted centroid of the whole image; the model's center of mass is of the central region",
    "centroid_y_px": "intensity-weighted centroid of the whole image; the model's center of mass is of the central region",
    "centroid_offset_px": "no field", "centroid_offset_frac": "no field (see centroid_x_px)",
    "reference_zone_offset_px": "in px; the model's distance is relative", "fitted_centre_offset_px": "in px; the relative distance is mapped",
    "saturated_pixels": "no field", "defect_pixels": "no field",
}


def ome_image(path: Path) -> dict[str, Any]:
    """The Image (by reference) of an OME-TIFF: dimensions, pixel size, channels."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    if not xml:
        raise ValueError(f"{path.name}: no OME-XML")
    root = ET.fromstring(xml)
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    image = root.find(f"{ns}Image")
    pixels = image.find(f"{ns}Pixels") if image is not None else None
    if image is None or pixels is None:
        raise ValueError(f"{path.name}: no Image/Pixels in its OME-XML")
    out: dict[str, Any] = {"name": path.name, "data_reference": {"data_uri": path.name}}
    for axis in "xyzct":
        out[f"shape_{axis}"] = int(pixels.get(f"Size{axis.upper()}", "1"))
    for axis in "xyz":
        size = pixels.get(f"PhysicalSize{axis.upper()}")
        if size is not None and pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm") in ("µm", "um"):
            out[f"voxel_size_{axis}_micron"] = float(size)
    if image.findtext(f"{ns}AcquisitionDate"):
        out["acquisition_datetime"] = image.findtext(f"{ns}AcquisitionDate")
    channels = []
    for c in pixels.findall(f"{ns}Channel"):
        ch: dict[str, Any] = {"name": c.get("Name", "")}
        for attr, slot in (("ExcitationWavelength", "excitation_wavelength_nm"), ("EmissionWavelength", "emission_wavelength_nm")):
            if c.get(attr) is not None and c.get(f"{attr}Unit", "nm") == "nm":
                ch[slot] = float(c.get(attr, ""))
        channels.append(ch)
    if channels:
        out["channel_series"] = {"channels": channels}
    return out


def _relative(value: float | None, size: int) -> float | None:
    return None if value is None else (value - size / 2) / (size / 2)


def flat_field_dataset(folder: Path, run: RunRecord, results: ResultsRecord, mapped: Mapped) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(input_data, key_measurements, verdict lines) of the run's flat-field results."""
    images: dict[str, dict[str, Any]] = {}
    key_measurements: list[dict[str, Any]] = []
    verdicts: list[str] = []
    for result in results.results or []:
        if result.get("kind") not in KINDS:
            continue
        name = result["series"]
        if name not in images:
            images[name] = ome_image(RunFolder(folder).file(name))
        image = images[name]
        channel_names = [c["name"] for c in image.get("channel_series", {}).get("channels", [])]
        lines = [str(x) for x in result.get("lines_on") or []]
        km: dict[str, Any] = {"image_name": name, "channel_name": "+".join(lines) or str(result.get("subject"))}
        if km["channel_name"] in channel_names:
            km["channel_nr"] = channel_names.index(km["channel_name"])
        used: list[str] = []
        for ours, theirs in COPIED.items():
            if metric(result, ours) is not None:
                km[theirs] = metric(result, ours)
                used.append(ours)
        for axis in "xy":
            for ours, theirs in ((f"reference_zone_{axis}_px", "center_geometric"), (f"fitted_centre_{axis}_px", "center_fitted")):
                relative = _relative(metric(result, ours), image[f"shape_{axis}"])
                if relative is not None:
                    km[f"{theirs}_{axis}_relative"] = relative
        offset = metric(result, "reference_zone_offset_px")
        if offset is not None:
            km["center_geometric_distance_relative"] = offset / (0.5 * (image["shape_x"] ** 2 + image["shape_y"] ** 2) ** 0.5)
        for metric_name in result.get("metrics", {}):
            if metric_name not in used:
                mapped.metric_left(result, metric_name, WHY.get(metric_name, "corner or edge-midpoint pixel / Imax; the model's ratios are "
                                                                "means over corner squares" if metric_name.startswith("ratio_") else "no field"))
        if result.get("correction_image"):
            mapped.unmapped.append(f"{result['subject']}: flat-field correction image {result['correction_image']} (the model has no output image for it)")
        key_measurements.append(km)
        verdicts.append(verdict_line(result, used))
    mapped.notes.append("pixel coordinates as microscope-qc gives them: x right, y down, pixel centres at k + 0.5 (the image centre at W/2, H/2); "
                        "relative positions (x - W/2) / (W/2); distances relative to the centre-to-corner distance")
    mapped.notes.append("max_intensity: of the dark-subtracted mean image smoothed with a Gaussian of sigma 2 px "
                        "(microscope-metrics: sigma 5, not dark-subtracted)")
    mapped.notes.append("center_geometric_*: the centroid of the pixels >= 90 % of the maximum (microscope-metrics: an adaptive top intensity bin)")
    mapped.unmapped.append("sample: the protocol's specimen (the model's sample needs a preparation protocol with a URL: left out)")
    return {"field_illumination_images": list(images.values())}, key_measurements, verdicts
