"""What a station knows, for checking a protocol against it before anything moves (``preflight``).

Contract:
- ``station_facts(station)`` reads what a *loaded* station knows (laser lines with their nominal power
  and limits, the camera's sensor and binning, every device's properties) -- it only reads, it never
  commands a device. ``file_facts(path)`` learns the same from the station file alone, without
  importing Micro-Manager, and lists in ``skipped`` what it cannot know (C++ devices' properties, a real
  camera's sensor, a real laser's wavelength or nominal power).
- ``station_file_problems(spec, doc)`` checks a station file as it will be loaded, beyond what the
  pydantic model checks by itself (``StationFile._roles_fit_devices``): the Micro-Manager .cfg exists
  (relative to the station file) and every role names a device the station file or the .cfg defines.
  ``read_station_file(path)`` raises them all in one ``UserError``.
- ``facts_for(path)`` tries to load the station (under its lock) and falls back to the file when a
  device cannot be reached or the station is in use, saying so in ``skipped``.
- ``device_label(name, ...)``: the device a protocol names (a role, ``laser:488`` or a label), or None.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.errors import DeviceError
from harness.common.errors import StationError, UserError
from harness.common.optics import Optics
from harness.common.resources import default_station
from harness.common.yaml_source import YamlDocument, load_yaml, validate
from harness.protocol.plan import line_key
from harness.station.run_guard import station_name
from harness.station.station_file import StationFile, role_devices
from harness.station.station_lock import StationBusy, StationLock
from simulators.params import CameraParams, LaserParams


@dataclass
class LineFacts:
    key: str  # "488"
    label: str  # the laser device
    nominal_mw: float | None
    limits: list[tuple[float, str, str]] = field(default_factory=list)  # (mW, what sets it, where that is said)
    where: str = ""  # its role in the station file: "roles.lasers[1]"


@dataclass
class CameraFacts:
    label: str
    sensor: tuple[int, int] | None  # unbinned width, height
    binning: int = 1
    allowed_binning: list[int] | None = None
    bytes_per_pixel: int = 2


@dataclass
class StationFacts:
    path: Path
    name: str
    loaded: bool
    lines: dict[str, LineFacts]
    lines_known: bool  # False: the file does not tell every line's wavelength
    roles: set[str]
    role_labels: dict[str, str]  # power_meter/camera/xy_stage/z_drive -> device label
    devices: set[str] | None  # labels (None: not known, e.g. an unreadable .cfg)
    camera: CameraFacts | None
    core: Any = None  # the loaded MMCore: device properties are read from it
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (action kind it concerns, or "" for all; what was not checked)
    optics: Optics | None = None  # the objective in use (instrument section), None: not given


def _cfg_path(spec: StationFile, station_path: Path) -> Path | None:
    if not spec.micromanager.config:
        return None
    cfg = Path(spec.micromanager.config)
    return cfg if cfg.is_absolute() else station_path.parent / cfg


def cfg_devices(cfg: Path) -> dict[str, tuple[str, str]]:
    """Devices a Micro-Manager .cfg loads: label -> (adapter, device name)."""
    out: dict[str, tuple[str, str]] = {}
    for raw in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = [p.strip() for p in raw.split(",")]
        if len(parts) >= 4 and parts[0] == "Device":
            out[parts[1]] = (parts[2], parts[3])
    return out


def station_file_problems(spec: StationFile, doc: YamlDocument) -> list[str]:
    """What only the file system can tell about a station file: its .cfg exists, and every device a
    role names is defined in the station file or in the .cfg (and not in both)."""
    where = lambda *loc: f"{doc.path}:{doc.line_of(loc)}: station"  # noqa: E731
    problems = []
    cfg = _cfg_path(spec, doc.path)
    from_cfg: dict[str, tuple[str, str]] = {}
    if cfg is not None:
        if not cfg.is_file():
            problems.append(f"{where('micromanager', 'config')}: micromanager.config: {cfg} not found (a path relative to the station file)")
        else:
            try:
                from_cfg = cfg_devices(cfg)
            except OSError as exc:
                return problems + [f"{where('micromanager', 'config')}: micromanager.config: cannot read {cfg}: {exc}"]
            for label in sorted(set(from_cfg) & set(spec.devices)):
                problems.append(f"{where('devices', label)}: devices.{label}: also loaded by {cfg.name}; a label names one device")
    if cfg is None or cfg.is_file():
        known = set(spec.devices) | set(from_cfg)
        # a role's device without a .cfg: the model has said so already
        named = [(loc, label) for _, loc, label in role_devices(spec.roles)] if cfg is not None else []
        named += [(("roles", "lasers", i, "shutter_device"), r.shutter_device) for i, r in enumerate(spec.roles.lasers) if r.shutter_device]
        for loc, label in named:
            if label not in known:
                field_name = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
                problems.append(f"{where(*loc)}: {field_name}: no device {label!r} in the station file{' or in ' + cfg.name if cfg else ''} "
                                f"(devices: {', '.join(sorted(known)) or 'none'})")
    return problems


def read_station_file(path: str | Path | None) -> tuple[StationFile, YamlDocument]:
    """A station file validated as it will be loaded (model and .cfg); all problems in one error."""
    doc = load_yaml(path or default_station())
    spec: StationFile = validate(doc, StationFile, "station")  # type: ignore[assignment]
    problems = station_file_problems(spec, doc)
    if problems:
        raise UserError("\n".join(problems))
    return spec, doc


def file_facts(path: str | Path | None) -> StationFacts:
    """What the station file tells, without loading anything."""
    spec, doc = read_station_file(path)
    skipped = []
    lines: dict[str, LineFacts] = {}
    lines_known = True
    for i, role in enumerate(spec.roles.lasers):
        entry = spec.devices.get(role.device)
        truth = entry.simulation_truth() if entry is not None else None  # any driver's simulated truth
        sim = truth if isinstance(truth, LaserParams) else None
        nm = role.wavelength_nm or (sim.wavelength_nm if sim else None)
        if nm is None:
            lines_known = False
            skipped.append(("laser", f"set points on the line of roles.lasers[{i}] ({role.device}): its wavelength is read from the device"))
            continue
        key = f"{nm:g}"
        limits = [(spec.safety.max_laser_power_mw, "the station's safety limit",
                   f"safety.max_laser_power_mw, {doc.path}:{doc.line_of(('safety', 'max_laser_power_mw'))}")]
        if role.max_power_mw is not None:
            limits.append((role.max_power_mw, "the line's limit", f"roles.lasers[{i}].max_power_mw, {doc.path}:{doc.line_of(('roles', 'lasers', i))}"))
        if sim is not None:
            limits.append((sim.high_limit_mw, "the laser's maximum", f"{role.device}, simulated"))
        nominal = role.nominal_power_mw or (sim.nominal_power_mw if sim else None)
        if nominal is None:
            skipped.append(("laser", f"set points in % on the {key} nm line: its nominal power is read from the device"))
        lines[key] = LineFacts(key, role.device, nominal, limits, f"roles.lasers[{i}]")
    camera = None
    if spec.roles.camera is not None:
        entry = spec.devices.get(spec.roles.camera)
        sensor = None
        truth = entry.simulation_truth() if entry is not None else None
        if isinstance(truth, CameraParams):
            sensor = (truth.width_px, truth.height_px)
        else:
            skipped.append(("acquire", f"ROI and binning against the camera ({spec.roles.camera}): its sensor is read from the device"))
        camera = CameraFacts(spec.roles.camera, sensor)
    cfg = _cfg_path(spec, doc.path)
    devices = set(spec.devices) | (set(cfg_devices(cfg)) if cfg is not None and cfg.is_file() else set())
    skipped.append(("set_property", "set_property: whether the property exists and accepts the value (read from the loaded device)"))
    roles = spec.roles
    return StationFacts(doc.path, spec.name, False, lines, lines_known, _filled(roles.lasers, roles.power_meter, roles.camera, roles.xy_stage, roles.z_drive),
                        _role_labels(spec), devices, camera, None, skipped, spec.instrument.optics())


def _filled(lasers: Any, meter: Any, camera: Any, xy: Any, z: Any) -> set[str]:
    have = {"lasers": bool(lasers), "power_meter": meter is not None, "camera": camera is not None, "xy_stage": xy is not None, "z_drive": z is not None}
    return {role for role, ok in have.items() if ok}


def _role_labels(spec: StationFile) -> dict[str, str]:
    r = spec.roles
    out = {"camera": r.camera, "xy_stage": r.xy_stage, "z_drive": r.z_drive, "power_meter": r.power_meter.device if r.power_meter else None}
    return {k: v for k, v in out.items() if v is not None}


def station_facts(station: Any) -> StationFacts:
    """What a loaded station knows; only reads."""
    core = station.core
    lines: dict[str, LineFacts] = {}
    spec = station.spec
    for key, line in station.lasers.items():
        i = next(n for n, r in enumerate(spec.roles.lasers) if r is line.role)
        if line.role.max_power_mw is not None and line.role.max_power_mw < spec.safety.max_laser_power_mw:
            what = ("the line's limit", f"roles.lasers[{i}].max_power_mw, {station.where('roles', 'lasers', i)}")
        else:
            what = ("the station's safety limit", f"safety.max_laser_power_mw, {station.where('safety', 'max_laser_power_mw')}")
        limits = [(line.max_power_mw, *what)]
        if core.hasProperty(line.label, "MaxPower-mW"):
            limits.append((float(core.getProperty(line.label, "MaxPower-mW")), "the laser's maximum", f"{line.label} MaxPower-mW"))
        sp = line.role.setpoint_property
        if core.hasProperty(line.label, sp) and core.hasPropertyLimits(line.label, sp):
            upper = line._from_device_units(float(core.getPropertyUpperLimit(line.label, sp)))
            limits.append((upper, "the laser's upper limit", f"{line.label} {sp}"))
        lines[key] = LineFacts(key, line.label, line.nominal_mw(), limits, f"roles.lasers[{i}]")
    camera = None
    if station.camera is not None:
        label = station.camera.label
        binning = int(float(core.getProperty(label, "Binning"))) if core.hasProperty(label, "Binning") else 1
        sensor = None
        for wp, hp in (("SensorWidth", "SensorHeight"), ("OnCameraCCDXSize", "OnCameraCCDYSize")):
            if core.hasProperty(label, wp) and core.hasProperty(label, hp):
                sensor = (int(float(core.getProperty(label, wp))), int(float(core.getProperty(label, hp))))
                break
        if sensor is None:
            x, y, w, h = core.getROI(label)
            sensor = (int(w) * binning, int(h) * binning)
        allowed = None
        if core.hasProperty(label, "Binning"):
            values = core.getAllowedPropertyValues(label, "Binning")
            allowed = sorted(int(float(v)) for v in values) or None
        camera = CameraFacts(label, sensor, binning, allowed, int(core.getBytesPerPixel()) or 2)
    role_labels = {name: obj.label for name, obj in (("power_meter", station.power_meter), ("camera", station.camera),
                                                       ("xy_stage", station.xy_stage), ("z_drive", station.z_drive)) if obj is not None}
    devices = {d for d in core.getLoadedDevices() if d != "Core"}
    return StationFacts(station.path, station.name, True, lines, True,
                        _filled(station.lasers, station.power_meter, station.camera, station.xy_stage, station.z_drive),
                        role_labels, devices, camera, core, optics=spec.instrument.optics())


@contextmanager
def facts_for(path: str | Path | None, purpose: str = "preflight") -> Iterator[StationFacts]:
    """The loaded station's facts if it can be brought up (under its lock), else the file's, with
    the reason in ``skipped``. A mistake in the station file is raised."""
    from harness.station.station import Station  # brings Micro-Manager (pymmcore-plus): only when a station is loaded

    read_station_file(path)  # file problems first, all at once, before anything is loaded
    lock = StationLock(station_name(path), purpose=purpose)
    try:
        lock.acquire()
    except StationBusy as exc:
        facts = file_facts(path)
        facts.skipped.insert(0, ("", f"device checks (the station was not loaded): {exc}"))
        yield facts
        return
    with lock:
        try:
            station = Station.load(path)
        except (StationError, DeviceError) as exc:
            facts = file_facts(path)
            facts.skipped.insert(0, ("", f"device checks (the station was not loaded): the devices could not be reached: {exc}"))
            yield facts
            return
        with station:
            yield station_facts(station)


def device_label(name: str, role_labels: dict[str, str], lasers: dict[str, str], devices: set[str] | None) -> str | None:
    """The device a protocol names: a role (``camera``), a laser line (``laser:488``) or a label."""
    if name in role_labels:
        return role_labels[name]
    if name.startswith("laser:") and line_key(name[6:]) in lasers:
        return lasers[line_key(name[6:])]
    if devices is None or name in devices:
        return name
    return None
