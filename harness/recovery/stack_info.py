"""What an OME-TIFF stack of a crashed run still holds: which pages are complete (``scan_pages``)
and the instrument its XML described (``info_from_ome``), or, where that XML is lost, what run.json,
the TIFF tags and the journal know of it (``info_from_run``). Read only: nothing here writes a file.
``scan_pages`` never raises for a damaged file (it finds fewer pages); ``info_from_ome`` expects an
XML that ``build_ome`` made; ``info_from_run`` leaves unknown parts empty.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile
import yaml

from harness.records.image_records import NS_NBO, NS_NBO_QC, NS_QC, NS_RUN, InstrumentInfo, LineInfo
from harness.records.journal import read_journal
from harness.records.run_folder import RunFolder

if TYPE_CHECKING:
    from ome_types import model as m


@dataclass
class PageScan:
    pages: int  # complete pages, from the first
    chain: int  # pages the IFD chain names (complete or not)
    shape: tuple[int, int] | None
    description: str
    dropped_bytes: int  # bytes past the end of the last complete page


def scan_pages(path: Path) -> PageScan:
    """Which pages of a (possibly cut short) TIFF are complete: IFD readable, the frame's shape and
    type, every strip inside the file and all of it there."""
    size = path.stat().st_size
    tif_log = logging.getLogger("tifffile")
    level = tif_log.level
    tif_log.setLevel(logging.CRITICAL)  # a cut-short IFD chain is what we are here for
    try:
        try:
            tif = tifffile.TiffFile(path)
        except Exception:
            return PageScan(0, 0, None, "", size)
        with tif:
            try:
                chain = len(tif.pages)
            except Exception:
                chain = 1
            shape: tuple[int, int] | None = None
            description = ""
            good, end = 0, 0
            for i in range(chain):
                try:
                    page = tif.pages[i]
                    if not isinstance(page, tifffile.TiffPage) or page.dtype != np.uint16 or len(page.shape) != 2:
                        break
                    if shape is None:
                        shape, description = (int(page.shape[0]), int(page.shape[1])), page.description
                    elif page.shape != shape:
                        break
                    offsets, counts = page.dataoffsets, page.databytecounts
                    if sum(counts) != shape[0] * shape[1] * 2 or any(o <= 0 or o + n > size for o, n in zip(offsets, counts)):
                        break
                    if page.offset <= 0 or page.offset >= size:
                        break
                except Exception:
                    break
                good += 1
                end = max(end, page.offset + 8, *(o + n for o, n in zip(offsets, counts)))
            if good:
                try:  # the last one read for real (a cut-short file ends there)
                    tif.pages[good - 1].asarray()
                except Exception:
                    good -= 1
            dropped = (max(size - end, 0) if good else size) if good < chain else 0
            return PageScan(good, chain, shape if good else None, description if good else "", dropped)
    finally:
        tif_log.setLevel(level)


def _map_values(ome: m.OME, annotation_id: str) -> dict[str, str]:
    for a in (ome.structured_annotations.map_annotations if ome.structured_annotations else []):
        if a.id == annotation_id:
            return {item.k: item.value for item in a.value.ms if item.k is not None}
    return {}


def _enum(value: Any) -> Any:
    return getattr(value, "value", value)


def info_from_ome(ome: m.OME, line_keys: list[str] | None = None) -> tuple[InstrumentInfo, dict[str, dict[str, Any]]]:
    """What the runner's InstrumentInfo held, read back from an OME-XML that ``build_ome`` made (the
    planned XML of page 0), and the image's other annotations (namespace -> values)."""
    inst = ome.instruments[0]
    lasers = list(inst.lasers)
    keys = line_keys if line_keys and len(line_keys) == len(lasers) else [f"{float(laser.wavelength or 0):g}" for laser in lasers]
    lines = [LineInfo(k, float(laser.wavelength or 0), laser.power, laser.manufacturer or "", laser.model or "", laser.serial_number or "")
             for k, laser in zip(keys, lasers)]
    mic = inst.microscope
    microscope = {"manufacturer": mic.manufacturer or "", "model": mic.model or "", "serial": mic.serial_number or "",
                  "type": str(_enum(mic.type)) if mic and mic.type is not None else ""} if mic else {}
    det = inst.detectors[0] if inst.detectors else None
    camera: dict[str, Any] = {"vendor": det.manufacturer, "model": det.model, "serial": det.serial_number} if det else {}  # None: not in the XML
    objective = None
    if inst.objectives:
        o = inst.objectives[0]
        objective = {"manufacturer": o.manufacturer, "model": o.model, "nominal_magnification": o.nominal_magnification,
                     "lens_na": o.lens_na, "immersion": _enum(o.immersion), "working_distance_um": o.working_distance}
    filters = [{"manufacturer": f.manufacturer, "model": f.model, "type": _enum(f.type)} for f in inst.filters]
    px = ome.images[0].pixels
    run = {k: v for k, v in _map_values(ome, "Annotation:0").items() if k != "Stack"}
    nbo = {k: v for k, v in _map_values(ome, "Annotation:1").items() if not k.startswith("Channel:")}
    info = InstrumentInfo(
        microscope=microscope, lines=lines, camera=camera, objective=objective, filters=filters,
        pixel_size_um=float(px.physical_size_x or 1.0), bit_depth=int(px.significant_bits or 16), run=run, nbo=nbo,
    )
    ours = {"Annotation:0", "Annotation:1"}
    image_refs = {r.id for r in ome.images[0].annotation_refs}
    extra: dict[str, dict[str, Any]] = {}
    for a in (ome.structured_annotations.map_annotations if ome.structured_annotations else []):
        if a.id in image_refs and a.id not in ours and a.namespace not in (NS_RUN, NS_NBO, NS_QC, NS_NBO_QC):
            extra[a.namespace or a.id] = {str(item.k): item.value for item in a.value.ms}
    return info, extra


def parse_ome(text: str) -> tuple[m.OME | None, str]:
    """The OME of page 0's description, or (None, what is wrong with it)."""
    if not text.strip():
        return None, "missing (page 0 has no readable description: a metadata rewrite was cut short)"
    try:
        from ome_types import from_xml  # the OME model costs about a second of start-up: loaded only where an image stack is handled

        ome = from_xml(text)
        ome.images[0].pixels  # noqa: B018 - one Image with Pixels, or it is not ours
        return ome, ""
    except Exception as exc:
        return None, f"unreadable ({type(exc).__name__})"


def started(run: dict[str, Any] | None, path: Path) -> datetime:
    try:
        return datetime.fromisoformat(str((run or {})["started_utc"]))
    except (KeyError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def info_from_run(run: dict[str, Any] | None, path: Path) -> InstrumentInfo:
    """What the runner's InstrumentInfo held, from run.json alone (the station file's text and the
    devices' identities it records), the pixel size from the TIFF's resolution tags and the specimen
    from the journal: for a stack whose XML is lost. Unknown parts are left empty."""
    run = run or {}
    try:
        station = yaml.safe_load(run.get("station", {}).get("text") or "") or {}
    except yaml.YAMLError:
        station = {}
    station = _dict(station)
    inst = _dict(station.get("instrument"))
    devices = _dict(run.get("devices"))

    def device(role: str) -> dict[str, Any]:
        return next((d for d in devices.values() if isinstance(d, dict) and d.get("role") == role), {})

    lines = []
    for key in sorted(run.get("protocol", {}).get("plan", {}).get("lines", []) or [], key=lambda k: float(k) if to_float(k) is not None else 0.0):
        d = device(f"laser {key} nm")
        details = d.get("details") or {}
        lines.append(LineInfo(str(key), to_float(details.get("wavelength_nm")) or to_float(str(key)) or 0.0, to_float(details.get("nominal_power_mw")),
                              d.get("vendor", ""), d.get("model", ""), d.get("serial", "")))
    cam = device("camera")
    mic = _dict(inst.get("microscope"))
    objective = next((o for o in inst.get("objectives") or [] if isinstance(o, dict) and o.get("id") == inst.get("objective_in_use")), None)
    pixel_um = 1.0
    try:
        with tifffile.TiffFile(path) as tif:
            num, den = tif.pages[0].tags["XResolution"].value
            pixel_um = 1e4 * den / num if num else 1.0  # the writer's resolution: pixels per cm
    except Exception:
        pass
    software = _dict(run.get("software"))
    protocol = _dict(run.get("protocol"))
    st = _dict(run.get("station"))
    git = _dict(software.get("git"))
    nbo = {"Microscope.Stand.Type": mic.get("type", ""), "Station.Name": st.get("name", ""), "Station.Simulated": str(bool(st.get("simulated")))}
    meter = device("power meter")
    if meter:
        location = _dict(station.get("roles")).get("power_meter", {})
        nbo.update({"PowerMeter.Location": location.get("location", "") if isinstance(location, dict) else "",
                    "PowerMeter.Model": meter.get("model", ""), "PowerMeter.SerialNumber": meter.get("serial", ""),
                    "PowerMeter.Sensor": (meter.get("details") or {}).get("sensor", ""),
                    "PowerMeter.SensorSerialNumber": (meter.get("details") or {}).get("sensor_serial", "")})
    specimen = next((r.get("sample") for r in reversed(read_journal(RunFolder(path.parent).journal, missing_ok=True)) if r.get("type") == "specimen"), None)
    if specimen:  # the runner's is the last specimen step's
        nbo["Specimen"] = str(specimen)
    return InstrumentInfo(
        microscope={k: str(mic.get(k, "")) for k in ("manufacturer", "model", "type", "serial")},
        lines=lines, camera={k: cam.get(k, "") for k in ("vendor", "model", "serial")} if cam else {},
        objective=objective, filters=[f for f in inst.get("filters") or [] if isinstance(f, dict)],
        pixel_size_um=pixel_um, bit_depth=int(to_float((cam.get("details") or {}).get("bit_depth")) or 16),
        run={"RunId": run.get("run_id", ""), "Protocol": protocol.get("id", ""), "ProtocolTitle": protocol.get("title", ""),
             "ProtocolVersion": protocol.get("version", ""), "ProtocolSHA256": protocol.get("sha256", ""),
             "Station": st.get("name", ""), "StationSHA256": st.get("sha256", ""), "ToolVersion": software.get("version", ""),
             "GitCommit": git.get("commit", "") if git else "", "Operator": run.get("operator", ""),
             "MetadataRebuilt": "from the pages, the frame log and run.json (the file's own XML was lost)"},
        nbo=nbo,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def to_float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None
