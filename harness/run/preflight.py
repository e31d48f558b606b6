"""Preflight: a protocol is checked against its station before anything moves.

Contract:
- ``station_facts(station)`` reads what a *loaded* station knows (laser lines with their nominal power
  and limits, the camera's sensor and binning, every device's properties) -- it only reads, it never
  commands a device. ``file_facts(path)`` learns the same from the station file alone, without
  importing Micro-Manager, and lists in ``skipped`` what it cannot know (C++ devices' properties, a real
  camera's sensor, a real laser's wavelength or nominal power).
- ``check_plan(...)`` checks an expanded plan (loops unrolled, % converted with the line's nominal
  power) against those facts and returns a ``Report`` with EVERY problem found, each naming the
  protocol file:line of its step: roles the station does not fill; set points above the line's own
  ``max_power_mw``, the station's ``safety.max_laser_power_mw`` or the laser's maximum; ``move: {to:}``
  before the mark; ROI / centre_roi / binning that the camera cannot give; ``set_property`` on a
  device or role the station lacks, a property the device does not have, a read-only one, or a value
  outside its allowed values or limits. It also gives the estimated station time and data volume;
  data that would not fit on the disk of the runs folder (estimated data x 1.2 + 100 MB must be free)
  is ``no_space``: a precondition (the run is not started, exit 5; a scheduled job is postponed),
  not a mistake in a file.
- ``station_file_problems(spec, doc)`` checks a station file as it will be loaded, beyond what the
  pydantic model checks by itself (``StationFile._roles_fit_devices``): the Micro-Manager .cfg exists
  (relative to the station file) and every role names a device the station file or the .cfg defines.
- ``facts_for(path)`` tries to load the station (under its lock) and falls back to the file when a
  device cannot be reached or the station is in use, saying so in ``skipped``.
- A refused preflight raises ``PreflightFailed`` (a ``UserError``: exit status 2); nothing has been
  touched by then (the station may have been loaded, which puts it into its safe state).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from harness.common.errors import StationError, UserError
from harness.common.yaml_source import YamlDocument, load_yaml, validate
from harness.protocol.plan import Plan, expand, line_key, lines_named
from harness.protocol.protocol_file import ProtocolFile, read_protocol_file
from harness.station.station_file import LaserEntry, StationFile, TsiCameraEntry, role_devices

ROW_BYTES = 400  # one reading: a CSV row and its journal line
FRAME_EXTRA_BYTES = 1500  # one frame besides its pixels: frame log row, journal line, OME-XML plane
DISK_FACTOR, DISK_RESERVE = 1.2, 100e6  # free space needed: data x 1.2 + 100 MB
ASSUMED_SENSOR = (2048, 2048)  # for the data estimate when the camera's sensor is not known


class PreflightFailed(UserError):
    """The protocol cannot run on this station as written; nothing was touched."""


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


@dataclass
class Report:
    protocol: Path
    station: Path
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    actions: int = 0
    estimate_s: float = 0.0
    data_bytes: float = 0.0
    free_bytes: float | None = None
    loaded: bool = False
    no_space: str = ""  # the data would not fit: a precondition (the disk may be freed), not a mistake in a file

    @property
    def ok(self) -> bool:
        return not self.problems and not self.no_space

    @property
    def failures(self) -> list[str]:
        return self.problems + ([self.no_space] if self.no_space else [])

    def line(self) -> str:
        free = f", {self.free_bytes / 1e9:.1f} GB free" if self.free_bytes is not None else ""
        how = "checked against the loaded station" if self.loaded else "checked against the station file"
        return (f"{self.protocol} on {self.station}: preflight passed ({self.actions} actions, about {self.estimate_s / 60:.1f} min of station time, "
                f"{self.data_bytes / 1e6:.1f} MB of data{free}; {how})")

    def raise_if_failed(self) -> None:
        """``PreflightFailed`` (exit 2) for mistakes, else ``PreconditionFailed`` (not started, exit 5) for disk space."""
        if self.problems:
            raise PreflightFailed("\n".join(self.failures))
        if self.no_space:
            from harness.station.run_guard import PreconditionFailed

            raise PreconditionFailed(self.no_space)


# --- what the station knows ----------------------------------------------------------------------
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
    from harness.common.resources import default_station

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
        sim = entry.simulation if isinstance(entry, LaserEntry) and entry.simulated else None
        nm = role.wavelength_nm or (sim.wavelength_nm if sim else None)
        if nm is None:
            lines_known = False
            skipped.append(("laser", f"set points on the line of roles.lasers[{i}] ({role.device}): its wavelength is read from the device"))
            continue
        key = f"{nm:g}"
        limits = [(spec.safety.max_laser_power_mw, "the station's safety limit", f"safety.max_laser_power_mw, {doc.path}:{doc.line_of(('safety', 'max_laser_power_mw'))}")]
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
        if isinstance(entry, TsiCameraEntry) and entry.simulated and entry.simulation is not None:
            sensor = (entry.simulation.width_px, entry.simulation.height_px)
        else:
            skipped.append(("acquire", f"ROI and binning against the camera ({spec.roles.camera}): its sensor is read from the device"))
        camera = CameraFacts(spec.roles.camera, sensor)
    cfg = _cfg_path(spec, doc.path)
    devices = set(spec.devices) | (set(cfg_devices(cfg)) if cfg is not None and cfg.is_file() else set())
    skipped.append(("set_property", "set_property: whether the property exists and accepts the value (read from the loaded device)"))
    return StationFacts(doc.path, spec.name, False, lines, lines_known, _filled(spec.roles.lasers, spec.roles.power_meter, spec.roles.camera, spec.roles.xy_stage, spec.roles.z_drive),
                        _role_labels(spec), devices, camera, None, skipped)


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
                        role_labels, devices, camera, core)


@contextmanager
def facts_for(path: str | Path | None, purpose: str = "preflight") -> Iterator[StationFacts]:
    """The loaded station's facts if it can be brought up (under its lock), else the file's, with
    the reason in ``skipped``. A mistake in the station file is raised."""
    from devices.errors import DeviceError
    from harness.station.run_guard import station_name
    from harness.station.station import Station
    from harness.station.station_lock import StationBusy, StationLock

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


# --- checking a plan -------------------------------------------------------------------------------
def device_label(name: str, role_labels: dict[str, str], lasers: dict[str, str], devices: set[str] | None) -> str | None:
    """The device a protocol names: a role (``camera``), a laser line (``laser:488``) or a label."""
    if name in role_labels:
        return role_labels[name]
    if name.startswith("laser:") and line_key(name[6:]) in lasers:
        return lasers[line_key(name[6:])]
    if devices is None or name in devices:
        return name
    return None


def roles_problems(plan: Plan, have: set[str], protocol_path: Path, station_path: Path) -> list[str]:
    return [f"{protocol_path}:{plan.role_lines.get(role, 1)}: protocol: needs the role '{role}', which station {station_path} does not fill"
            for role in sorted(plan.roles - have)]


def _ctx(action: Any) -> str:
    return f" (with {', '.join(f'{k}={v}' for k, v in action.context.items())})" if action.context else ""


def _frame_size(p: Any, camera: CameraFacts | None) -> tuple[int, int]:
    if p.roi is not None:
        return p.roi[2], p.roi[3]
    if p.centre_roi is not None:
        return p.centre_roi
    sensor = camera.sensor if camera and camera.sensor else ASSUMED_SENSOR
    b = p.binning or (camera.binning if camera else 1)
    return sensor[0] // b, sensor[1] // b


def _free_bytes(runs_dir: Path) -> float:
    here = runs_dir.resolve()
    while not here.exists() and here != here.parent:
        here = here.parent
    return float(shutil.disk_usage(here).free)


def check_plan(protocol: ProtocolFile, doc: YamlDocument, plan: Plan, facts: StationFacts, runs_dir: Path | None) -> Report:
    path = doc.path
    kinds = {a.kind for a in plan.actions}
    report = Report(path, facts.path, actions=len(plan.actions), estimate_s=plan.estimate_s, loaded=facts.loaded,
                    skipped=[text for kind, text in facts.skipped if not kind or kind in kinds])
    problems = report.problems
    seen: set[str] = set()

    def add(line: int, text: str) -> None:
        message = f"{path}:{line}: protocol: {text}"
        if message not in seen:
            seen.add(message)
            problems.append(message)

    problems += roles_problems(plan, facts.roles, path, facts.path)
    over: dict[tuple[int, str, str, float, str], list[tuple[float, str, Any]]] = {}
    marks: set[str] = set()
    camera = facts.camera
    binning = camera.binning if camera else 1
    data = 0.0
    lasers = {k: lf.label for k, lf in facts.lines.items()}
    for action in plan.actions:
        p = action.params
        if action.kind == "laser" and p.setpoint is not None:
            targets = list(facts.lines) if str(p.line) == "all" else [str(p.line)]
            for key in targets:
                lf = facts.lines.get(key)
                if lf is None:
                    continue  # a line the file cannot tell (skipped) or not on the station (said by expand)
                if p.setpoint.unit == "%" and lf.nominal_mw is None:
                    if facts.loaded or lf.where:
                        add(action.line, f"laser: set point {p.setpoint} on the {key} nm line needs the line's nominal power, which neither the laser nor "
                                         f"the station file ({lf.where or 'roles.lasers'}.nominal_power_mw) gives")
                    continue
                mw = p.setpoint.to_mw(lf.nominal_mw)
                for limit, what, where in lf.limits:
                    if mw > limit * (1 + 1e-9):
                        over.setdefault((action.line, key, what, limit, where), []).append((mw, str(p.setpoint), action))
        elif action.kind == "mark":
            marks.add(p)
        elif action.kind == "move" and p.to is not None and p.to not in marks:
            known = f" (marked so far: {', '.join(sorted(marks))})" if marks else " (no mark before it)"
            add(action.line, f"move: to: no position marked {p.to!r} before this step{known}; add a 'mark: {p.to}' step before it")
        elif action.kind == "acquire":
            if p.binning is not None:
                if camera and camera.allowed_binning and p.binning not in camera.allowed_binning:
                    add(action.line, f"acquire: binning {p.binning}: the camera {camera.label} allows {', '.join(map(str, camera.allowed_binning))}")
                else:
                    binning = p.binning
            if camera and camera.sensor:
                full = (camera.sensor[0] // binning, camera.sensor[1] // binning)
                shown = f"{full[0]}x{full[1]}" + (f" at binning {binning}" if binning > 1 else "")
                if p.roi is not None:
                    x, y, w, h = p.roi
                    if w < 1 or h < 1 or x < 0 or y < 0:
                        add(action.line, f"acquire: roi {list(p.roi)}: x and y must be >= 0, width and height >= 1")
                    elif x + w > full[0] or y + h > full[1]:
                        add(action.line, f"acquire: roi {list(p.roi)} (x, y, width, height) reaches {x + w}x{y + h}, outside the camera's {shown} pixels{_ctx(action)}")
                elif p.centre_roi is not None:
                    w, h = p.centre_roi
                    if w < 1 or h < 1:
                        add(action.line, f"acquire: centre_roi {list(p.centre_roi)}: width and height must be >= 1")
                    elif w > full[0] or h > full[1]:
                        add(action.line, f"acquire: centre_roi {w}x{h} is larger than the camera's {shown} pixels{_ctx(action)}")
            w, h = _frame_size(p, camera if camera else None)
            data += len(action.frames) * (max(w, 1) * max(h, 1) * (camera.bytes_per_pixel if camera else 2) + FRAME_EXTRA_BYTES)
        elif action.kind == "sample":
            data += round(float(p.duration) / float(p.every)) * ROW_BYTES
        elif action.kind == "set_property":
            _check_property(action, p, facts, lasers, add)
    for (line, key, what, limit, where), hits in over.items():
        mw, requested, action = hits[0]
        more = f"; {len(hits) - 1} more set point{'s' if len(hits) > 2 else ''} of this step exceed it too, up to {max(h[0] for h in hits):g} mW" if len(hits) > 1 else ""
        add(line, f"laser: set point {requested} = {mw:g} mW on the {key} nm line exceeds {what} of {limit:g} mW ({where}){_ctx(action)}{more}")
    if camera is not None and camera.sensor is None and any(a.kind == "acquire" for a in plan.actions):
        report.skipped.append(f"data volume: full frames counted as {ASSUMED_SENSOR[0]}x{ASSUMED_SENSOR[1]} pixels (the sensor size is not known)")
    report.data_bytes = data
    if runs_dir is not None:
        free = _free_bytes(Path(runs_dir))
        report.free_bytes = free
        need = data * DISK_FACTOR + DISK_RESERVE
        if need > free:
            report.no_space = (f"{path}:1: protocol: about {data / 1e9:.3g} GB of data would be written to {runs_dir}, which has {free / 1e9:.3g} GB free "
                               f"(needed with margin: {need / 1e9:.3g} GB); free space, choose another --runs-dir, or acquire less")
    return report


def _check_property(action: Any, p: Any, facts: StationFacts, lasers: dict[str, str], add: Any) -> None:
    label = device_label(p.device, facts.role_labels, lasers, facts.devices)
    if label is None:
        add(action.line, f"set_property: no device or role {p.device!r} on station {facts.name} "
                         f"(roles: {', '.join(sorted(facts.role_labels)) or 'none'}; devices: {', '.join(sorted(facts.devices or ())) or 'none'})")
        return
    core = facts.core
    if core is None:
        return  # said in skipped
    names = [str(getattr(n, "value", n)) for n in core.getDevicePropertyNames(label)]  # some names are Keyword enums
    if p.property not in names:
        close = get_close_matches(p.property, names, n=1)
        add(action.line, f"set_property: device {label} has no property {p.property!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; it has {', '.join(names)}")
        return
    if core.isPropertyReadOnly(label, p.property):
        add(action.line, f"set_property: {label}.{p.property} is read-only")
        return
    value = p.value
    text = ("1" if value else "0") if isinstance(value, bool) else str(value)
    allowed = [str(getattr(v, "value", v)) for v in core.getAllowedPropertyValues(label, p.property)]
    if allowed and text not in allowed and not any(_same_number(text, a) for a in allowed):
        add(action.line, f"set_property: {label}.{p.property} = {value!r} is not allowed; allowed: {', '.join(allowed)}")
        return
    kind = int(core.getPropertyType(label, p.property))  # 1 string, 2 float, 3 integer
    if kind in (2, 3):
        try:
            number = float(text)
        except ValueError:
            add(action.line, f"set_property: {label}.{p.property} takes a number, not {value!r}")
            return
        if kind == 3 and number != int(number):
            add(action.line, f"set_property: {label}.{p.property} takes an integer, not {value!r}")
        if core.hasPropertyLimits(label, p.property):
            lo, hi = float(core.getPropertyLowerLimit(label, p.property)), float(core.getPropertyUpperLimit(label, p.property))
            if not lo <= number <= hi:
                add(action.line, f"set_property: {label}.{p.property} = {value!r} is outside its limits {lo:g} .. {hi:g}")


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def preflight(protocol_path: str | Path, facts: StationFacts, runs_dir: Path | None) -> Report:
    """Read, expand and check a protocol file against a station; file mistakes become problems."""
    try:
        protocol, doc = read_protocol_file(protocol_path)
        lines = sorted(facts.lines, key=float) if facts.lines_known else sorted(set(facts.lines) | set(lines_named(doc.data)), key=float)
        plan = expand(protocol, doc, lines)
    except UserError as exc:
        return Report(Path(protocol_path), facts.path, problems=[str(exc)], loaded=facts.loaded)
    return check_plan(protocol, doc, plan, facts, runs_dir)


# --- schedules ---------------------------------------------------------------------------------------
def preflight_job(schedule: Any, job: Any, facts: StationFacts) -> Report:
    report = preflight(schedule.protocol_of(job), facts, schedule.runs_dir)
    report.problems = [f"job {job.name!r}: {p}" for p in report.problems]
    report.no_space = f"job {job.name!r}: {report.no_space}" if report.no_space else ""
    return report


def preflight_schedule(schedule: Any, load: bool = True) -> list[tuple[Any, Report]]:
    """Every enabled job's protocol against its station (each station loaded once when ``load``)."""
    out: list[tuple[Any, Report]] = []
    by_station: dict[Path, list[Any]] = {}
    for job in schedule.spec.jobs:
        by_station.setdefault(schedule.station_of(job), []).append(job)
    for station_path, jobs in by_station.items():
        try:
            if load:
                with facts_for(station_path, purpose=f"preflight of schedule {schedule.spec.schedule}") as facts:
                    out += [(job, preflight_job(schedule, job, facts)) for job in jobs]
            else:
                facts = file_facts(station_path)
                out += [(job, preflight_job(schedule, job, facts)) for job in jobs]
        except UserError as exc:  # the station itself cannot be used
            for job in jobs:
                out.append((job, Report(schedule.protocol_of(job), station_path, problems=[f"job {job.name!r}: its station cannot load: {exc}"])))
    return out


# --- the validate command ------------------------------------------------------------------------------
def _say(report: Report, out: Any) -> None:
    if report.ok:
        out(report.line())
    for note in report.skipped:
        out(f"  skipped: {note}")


def validate_protocols(paths: list[Path], station: Path, runs_dir: Path, out: Any) -> list[str]:
    """``validate PROTOCOL... --station STATION``: the station loaded once (or its file); returns the failures."""
    failures: list[str] = []
    try:
        with facts_for(station, purpose="validate") as facts:
            for path in paths:
                report = preflight(path, facts, runs_dir)
                _say(report, out)
                failures += report.failures
    except UserError as exc:
        failures.append(str(exc))
    return failures


def validate_schedule(schedule: Any, out: Any) -> list[str]:
    """``validate SCHEDULE``: every job preflighted against its station; returns the failures."""
    failures: list[str] = []
    results = preflight_schedule(schedule, load=True)
    for job, report in results:
        if report.ok:
            out(f"{schedule.path}: job {job.name!r}: " + report.line())
        for note in report.skipped:
            out(f"  skipped: {note}")
        failures += report.failures
    if not failures:
        n = len(schedule.spec.jobs)
        out(f"{schedule.path}: valid schedule file ({n} job{'s' if n != 1 else ''}, time zone {schedule.spec.timezone}), every job preflighted")
    return failures
