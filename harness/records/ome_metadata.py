"""OME-XML for our image stacks, built with ome-types and validated against the OME 2016-06 schema.

Native elements carry what they can: Instrument (microscope, laser lines, detector, objective,
filters from the station file plus identities read from the devices), Pixels with physical size,
Channels with excitation wavelength and light-source settings, detector settings, Planes with
DeltaT, ExposureTime and stage position. What has no OME element (run provenance, 4DN-BINA-OME
Tier 1/2 fields, set points, the power meter's location) goes into namespaced MapAnnotations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ome_types import model as m
from ome_types import to_xml

from harness.records.image_records import NS_NBO, NS_RUN, ChannelInfo, InstrumentInfo, PlaneInfo

_MICROSCOPE_TYPES = {"Upright", "Inverted", "Dissection", "Electrophysiology", "Other"}


def _kw(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments without the ones that are None (ome-types refuses None for units)."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def instrument(info: InstrumentInfo) -> m.Instrument:
    mic = info.microscope
    lasers = [
        m.Laser(**_kw(
            id=f"LightSource:{i}", manufacturer=line.vendor, model=line.model, serial_number=line.serial,
            wavelength=line.wavelength_nm, wavelength_unit=m.UnitsLength.NANOMETER,
            power=line.nominal_mw, power_unit=m.UnitsPower.MILLIWATT, type=m.Laser_Type.SEMICONDUCTOR,
        ))
        for i, line in enumerate(info.lines)
    ]
    cam = info.camera
    detector = m.Detector(
        id="Detector:0", manufacturer=cam.get("vendor"), model=cam.get("model"), serial_number=cam.get("serial"),
        type=m.Detector_Type.CMOS,
    )
    objectives = []
    if info.objective:
        o = info.objective
        objectives.append(m.Objective(**_kw(
            id="Objective:0", manufacturer=o.get("manufacturer") or None, model=o.get("model") or None,
            nominal_magnification=o.get("nominal_magnification"), lens_na=o.get("lens_na"),
            immersion=o.get("immersion"), working_distance=o.get("working_distance_um"),
            working_distance_unit=m.UnitsLength.MICROMETER if o.get("working_distance_um") else None,
        )))
    filters = [
        m.Filter(id=f"Filter:{i}", manufacturer=f.get("manufacturer") or None, model=f.get("model") or None, type=f.get("type"))
        for i, f in enumerate(info.filters)
    ]
    return m.Instrument(
        id="Instrument:0",
        microscope=m.Microscope(
            manufacturer=mic.get("manufacturer") or None, model=mic.get("model") or None,
            serial_number=mic.get("serial") or None,
            type=m.Microscope_Type(mic["type"] if mic.get("type") in _MICROSCOPE_TYPES else "Other"),
        ),
        lasers=lasers, detectors=[detector], objectives=objectives, filters=filters,
    )


def _map(id_: str, namespace: str, values: dict[str, Any]) -> m.MapAnnotation:
    return m.MapAnnotation(
        id=id_, namespace=namespace,
        value=m.Map(ms=[m.Map.M(k=k, value=_str(v)) for k, v in values.items() if v is not None and v != ""]),
    )


def build_ome(
    info: InstrumentInfo,
    stack: str,
    shape: tuple[int, int],
    channels: list[ChannelInfo],
    planes: list[PlaneInfo],
    acquisition_date: datetime,
    file_uuid: str,
    extra_annotations: dict[str, dict[str, Any]] | None = None,
    z_planes: int = 1,
    z_step_um: float | None = None,
) -> m.OME:
    """One Image for one stack; ``planes`` only those actually written, each mapped to its IFD.
    With ``z_planes`` > 1 a channel's frames are z-stacks: frame ``t`` is plane ``t % z_planes`` of
    time point ``t // z_planes`` (SizeZ = ``z_planes``, PhysicalSizeZ = ``z_step_um``)."""
    nz = max(z_planes, 1)
    line_index = {line.key: i for i, line in enumerate(info.lines)}
    nominal = {line.key: line.nominal_mw for line in info.lines}
    ome_channels = []
    per_channel_setpoints: dict[str, Any] = {}
    for c, ch in enumerate(channels):
        lit = [k for k in ch.name.split("+") if k in line_index]
        lss = None
        if lit:
            first = lit[0]
            sp = ch.setpoints_mw.get(first)
            attenuation = None
            if sp is not None and nominal.get(first):
                attenuation = min(max(1.0 - sp / nominal[first], 0.0), 1.0)  # type: ignore[operator]
            lss = m.LightSourceSettings(id=f"LightSource:{line_index[first]}", attenuation=attenuation)
        for k in lit:
            if k in ch.setpoints_mw:
                per_channel_setpoints[f"Channel:0:{c}.PowerSetpoint_mW[{k}nm]"] = f"{ch.setpoints_mw[k]:.6g}"
                if nominal.get(k):
                    per_channel_setpoints[f"Channel:0:{c}.PercentageNominalPowerSetting[{k}nm]"] = f"{100 * ch.setpoints_mw[k] / nominal[k]:.6g}"  # type: ignore[operator]
        ome_channels.append(m.Channel(**_kw(
            id=f"Channel:0:{c}", name=ch.name, samples_per_pixel=1,
            excitation_wavelength=float(info.lines[line_index[lit[0]]].wavelength_nm) if lit else None,
            excitation_wavelength_unit=m.UnitsLength.NANOMETER if lit else None,
            illumination_type="Epifluorescence" if lit else None,
            light_source_settings=lss,
            detector_settings=m.DetectorSettings(**_kw(id="Detector:0", gain=ch.gain_db, offset=ch.offset,
                                                       binning=f"{ch.binning}x{ch.binning}" if ch.binning in (1, 2, 4, 8) else "Other")),
        )))
    size_t = -(-(max((p.t for p in planes), default=-1) + 1) // nz)
    # a placeholder plane was never acquired: it has no DeltaT and no ExposureTime (a failed frame's
    # attempt time is kept in its note)
    placeholder_notes = [
        _map(f"Annotation:{100 + i}", NS_RUN, {"FrameStatus": p.status, "Reason": p.note, "Pixels": "all zero: no image was recorded",
                                               **({"AttemptedAt_s": f"{p.delta_t_s:.6f}"} if p.status == "missing" and p.delta_t_s else {})})
        for i, p in enumerate(q for q in planes if q.status)
    ]
    note_ids = iter(a.id for a in placeholder_notes)
    pixels = m.Pixels(
        id="Pixels:0", dimension_order=m.Pixels_DimensionOrder.XYCZT if nz == 1 else m.Pixels_DimensionOrder.XYZTC,
        type=m.PixelType.UINT16, significant_bits=info.bit_depth,
        size_x=shape[1], size_y=shape[0], size_z=nz, size_c=max(len(channels), 1), size_t=max(size_t, 1),
        **_kw(physical_size_x=info.pixel_size_um, physical_size_y=info.pixel_size_um,
              physical_size_z=z_step_um if nz > 1 else None,
              physical_size_z_unit=m.UnitsLength.MICROMETER if nz > 1 and z_step_um else None),
        physical_size_x_unit=m.UnitsLength.MICROMETER, physical_size_y_unit=m.UnitsLength.MICROMETER,
        big_endian=False, interleaved=False, channels=ome_channels,
        tiff_data_blocks=[m.TiffData(ifd=p.ifd, first_c=p.c, first_t=p.t // nz, first_z=p.t % nz, plane_count=1) for p in planes],
        planes=[
            m.Plane(**_kw(
                the_c=p.c, the_t=p.t // nz, the_z=p.t % nz,
                delta_t=None if p.status else p.delta_t_s, delta_t_unit=None if p.status else m.UnitsTime.SECOND,
                exposure_time=None if p.status else p.exposure_s, exposure_time_unit=None if p.status else m.UnitsTime.SECOND,
                position_x=p.x_um, position_y=p.y_um, position_z=p.z_um,
                position_x_unit=m.UnitsLength.MICROMETER if p.x_um is not None else None,
                position_y_unit=m.UnitsLength.MICROMETER if p.y_um is not None else None,
                position_z_unit=m.UnitsLength.MICROMETER if p.z_um is not None else None,
                annotation_refs=[m.AnnotationRef(id=next(note_ids))] if p.status else None,
            ))
            for p in planes
        ],
    )
    annotations = [
        _map("Annotation:0", NS_RUN, {**info.run, "Stack": stack}),
        _map("Annotation:1", NS_NBO, {**info.nbo, **per_channel_setpoints}),
    ]
    for i, (namespace, values) in enumerate((extra_annotations or {}).items(), start=2):
        annotations.append(_map(f"Annotation:{i}", namespace, values))
    image_refs = [m.AnnotationRef(id=a.id) for a in annotations]
    annotations += placeholder_notes
    image = m.Image(
        id="Image:0", name=stack, acquisition_date=acquisition_date,
        instrument_ref=m.InstrumentRef(id="Instrument:0"),
        objective_settings=m.ObjectiveSettings(id="Objective:0") if info.objective else None,
        pixels=pixels,
        annotation_refs=image_refs,
    )
    return m.OME(
        uuid=f"urn:uuid:{file_uuid}",
        creator=f"microscope-qc-harness {info.run.get('ToolVersion', '')}".strip(),
        instruments=[instrument(info)], images=[image],
        structured_annotations=m.StructuredAnnotations(map_annotations=annotations),
    )


def ome_xml_bytes(ome: m.OME) -> bytes:
    """Schema-validated OME-XML as UTF-8 bytes (``µm`` is not 7-bit ASCII)."""
    return to_xml(ome, validate=True).encode("utf-8")
