"""What a loaded station says about itself for the OME metadata of every image it writes (a run's
stacks, a single ``snap``): lasers, camera and its bit depth, objective, filters, pixel size, the
4DN-BINA-OME fields, plus the caller's provenance (``run``: a run's id and protocol, or the command);
``run_provenance`` gives that of a run."""

from __future__ import annotations

from typing import Any

from harness.records.image_records import InstrumentInfo, LineInfo


def instrument_info(station: Any, run: dict[str, str]) -> InstrumentInfo:
    st = station
    inst = st.spec.instrument
    lines = []
    for key in sorted(st.lasers, key=float):
        line = st.lasers[key]
        ident = st.identities.get(line.label)
        lines.append(LineInfo(key, line.wavelength_nm, line.nominal_mw(),
                              ident.vendor if ident else "", ident.model if ident else "", ident.serial if ident else ""))
    camera: dict[str, str] = {}
    bit_depth = 16
    if st.camera is not None:
        ident = st.identities[st.camera.label]
        camera = {"vendor": ident.vendor, "model": ident.model, "serial": ident.serial}
        bit_depth = int(st.core.getProperty(st.camera.label, "BitDepth")) if st.core.hasProperty(st.camera.label, "BitDepth") else st.core.getImageBitDepth()
    objective = next((o.model_dump() for o in inst.objectives if o.id == inst.objective_in_use), None)
    nbo: dict[str, Any] = {
        "Microscope.Stand.Type": inst.microscope.type,
        "Station.Name": st.name,
        "Station.Simulated": str(st.sim is not None),
    }
    if st.power_meter is not None:
        meter = st.identities[st.power_meter.label]
        nbo.update({
            "PowerMeter.Location": st.power_meter.location, "PowerMeter.Model": meter.model,
            "PowerMeter.SerialNumber": meter.serial, "PowerMeter.Sensor": meter.details.get("sensor", ""),
            "PowerMeter.SensorSerialNumber": meter.details.get("sensor_serial", ""),
        })
    return InstrumentInfo(
        microscope=inst.microscope.model_dump(), lines=lines, camera=camera, objective=objective,
        filters=[f.model_dump() for f in inst.filters], pixel_size_um=st.camera.pixel_size_um if st.camera else 1.0,
        bit_depth=bit_depth, run=run, nbo=nbo,
    )


def run_provenance(station: Any, run_id: str, protocol: Any, protocol_sha256: str, software: dict[str, Any], operator: str,
                   station_sha256: str) -> dict[str, str]:
    """The provenance a run's images carry (``InstrumentInfo.run``): run, protocol, station, tool, operator."""
    git = software["git"]
    return {
        "RunId": run_id, "Protocol": protocol.protocol, "ProtocolTitle": protocol.title,
        "ProtocolVersion": protocol.version, "ProtocolSHA256": protocol_sha256,
        "Station": station.name, "StationSHA256": station_sha256, "ToolVersion": software["version"],
        "GitCommit": git["commit"] if git else "", "Operator": operator,
    }
