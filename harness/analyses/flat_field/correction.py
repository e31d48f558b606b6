"""Write a flat-field correction image as OME-TIFF: the smoothed, dark-subtracted mean image of one
channel, normalised to mean 1, in 32-bit float. Dividing a dark-subtracted image of the same
channel by it evens out the illumination (``corrected = (raw - dark) / correction``).

The file carries the source stack's Instrument, the channel, the pixel size and a namespaced
MapAnnotation saying how it was made and how to use it; it is validated against the OME schema.
It is written whole to ``<name>.tmp``, fsynced and renamed (never rewritten in place).
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from ome_types import model as m

from harness.records.image_records import NS_RUN
from harness.records.ome_metadata import ome_xml_bytes

NS_CORRECTION = "urn:microscope-qc-harness:flat-field-correction:1"


def correction_image(smoothed: np.ndarray) -> np.ndarray:
    """``smoothed`` normalised to mean 1 (float32); non-positive pixels (no light) become NaN-free 0."""
    img = np.asarray(smoothed, dtype=np.float64)
    mean = float(img.mean())
    if not np.isfinite(mean) or mean <= 0:
        raise ValueError("the mean image has no signal above the dark level")
    return np.clip(img / mean, 0.0, None).astype(np.float32)


def write_correction(path: Path, correction: np.ndarray, source: m.OME, channel: str, provenance: dict[str, Any]) -> None:
    """One single-plane float image; ``source`` is the OME of the stack it was computed from."""
    src_image = source.images[0]
    src_px = src_image.pixels
    src_channel = next((c for c in src_px.channels if c.name == channel), None)
    ome_channel = m.Channel(
        id="Channel:0:0", name=channel, samples_per_pixel=1,
        excitation_wavelength=src_channel.excitation_wavelength if src_channel else None,
        excitation_wavelength_unit=src_channel.excitation_wavelength_unit if src_channel else None,  # type: ignore[arg-type]  # None: accepted
    )
    h, w = correction.shape
    note = m.MapAnnotation(id="Annotation:0", namespace=NS_CORRECTION, value=m.Map(ms=[
        m.Map.M(k=k, value=str(v)) for k, v in {
            "Kind": "flat-field correction (normalised to mean 1)",
            "Use": "corrected = (raw - dark) / correction, for images of this channel, objective and binning",
            "SourceStack": src_image.name,
            "Channel": channel,
            **provenance,
        }.items()
    ]))
    run_notes = [a for a in source.structured_annotations.map_annotations if a.namespace == NS_RUN][:1] if source.structured_annotations else []
    run_copy = [m.MapAnnotation(id="Annotation:1", namespace=NS_RUN, value=run_notes[0].value)] if run_notes else []
    annotations = [note, *run_copy]
    ome = m.OME(
        uuid=f"urn:uuid:{uuid.uuid4()}", creator=source.creator,
        instruments=source.instruments,
        images=[m.Image(
            id="Image:0", name=f"{src_image.name} flat-field correction {channel}",
            acquisition_date=src_image.acquisition_date or datetime.now(timezone.utc),
            instrument_ref=src_image.instrument_ref, objective_settings=src_image.objective_settings,
            pixels=m.Pixels(
                id="Pixels:0", dimension_order=m.Pixels_DimensionOrder.XYCZT, type=m.PixelType.FLOAT, size_x=w, size_y=h, size_z=1, size_c=1, size_t=1,
                physical_size_x=src_px.physical_size_x, physical_size_y=src_px.physical_size_y,
                physical_size_x_unit=src_px.physical_size_x_unit, physical_size_y_unit=src_px.physical_size_y_unit,
                big_endian=False, channels=[ome_channel],
                tiff_data_blocks=[m.TiffData(ifd=0, first_c=0, first_t=0, first_z=0, plane_count=1)],
                planes=[m.Plane(the_c=0, the_t=0, the_z=0)],
            ),
            annotation_refs=[m.AnnotationRef(id=a.id) for a in annotations],
        )],
        structured_annotations=m.StructuredAnnotations(map_annotations=annotations),
    )
    tmp = path.with_name(path.name + ".tmp")
    per_cm = 1e4 / float(src_px.physical_size_x) if src_px.physical_size_x else None
    try:
        with tifffile.TiffWriter(tmp, bigtiff=False, ome=False) as tif:
            tif.write(
                np.ascontiguousarray(correction, dtype=np.float32), photometric="minisblack", description=ome_xml_bytes(ome),
                metadata=None, **({"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"} if per_cm else {}),
            )
        with open(tmp, "rb+") as f:  # on disk before it takes the name: a crash leaves the old file or the new
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk: no half-written .tmp left behind
