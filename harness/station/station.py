"""A loaded station: one UniMMCore holding every device (C++ adapters from a .cfg and Python
drivers), the simulated world when there is one, the roles bound to devices, every device's
identity, and a clock. Loading puts every device into its safe state; closing does it again and
unloads everything (an unloaded C++ adapter at interpreter exit aborts the process)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pymmcore_plus import CMMCorePlus, DeviceType
from pymmcore_plus.experimental.unicore import UniMMCore

from devices.base import QCDriver
from devices.errors import DeviceError
from devices.identity import DeviceIdentity
from harness.common.errors import StationError, UserError
from harness.common.resources import adapter_folder, default_station
from harness.common.yaml_source import YamlDocument, load_yaml, validate
from harness.station.drivers import driver_kind
from harness.station.drivers.base import DeviceEntryBase, FrontEnd
from harness.station.roles import Camera, LaserLine, PowerMeter, XYStage, ZDrive, device_call, property_or
from harness.station.simulation import SimulatedHardware, start_simulation
from harness.station.station_file import MAX_TIME_SCALE, StationFile
from simulators.clock import Clock, ScaledClock, VirtualClock, WallClock

log = logging.getLogger(__name__)

_KIND = {
    DeviceType.Camera: "camera",
    DeviceType.XYStage: "xy_stage",
    DeviceType.Stage: "stage",
    DeviceType.Shutter: "shutter",
    DeviceType.Generic: "generic",
    DeviceType.State: "state",
    DeviceType.Hub: "hub",
}


# the device type a role needs (None: anything but a camera or a stage, e.g. a laser or a meter)
_ROLE_TYPES: dict[str, Any] = {"lasers": None, "power_meter": None, "camera": DeviceType.Camera, "xy_stage": DeviceType.XYStage,
                               "z_drive": DeviceType.Stage, "shutter_device": DeviceType.Shutter}
_MOTION_OR_CAMERA = (DeviceType.Camera, DeviceType.XYStage, DeviceType.Stage)


@dataclass
class DeviceRecord:
    """One row of the device listing."""

    label: str
    role: str
    identity: DeviceIdentity
    properties: dict[str, str] = field(default_factory=dict)


class Station:
    def __init__(self, path: Path, spec: StationFile, doc: YamlDocument) -> None:
        self.path = path
        self.spec = spec
        self.doc = doc
        self.name = spec.name
        self.core = UniMMCore()
        self.sim: SimulatedHardware | None = None
        self.clock: Clock = WallClock()
        self.drivers: dict[str, QCDriver] = {}
        self.lasers: dict[str, LaserLine] = {}
        self.power_meter: PowerMeter | None = None
        self.camera: Camera | None = None
        self.xy_stage: XYStage | None = None
        self.z_drive: ZDrive | None = None
        self.identities: dict[str, DeviceIdentity] = {}
        self._closed = False

    # --- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, time_scale: float | None = None, clock_start: datetime | None = None,
             seed: int | None = None) -> Station:
        """Validate a station file and bring the station up (devices connected, safe state).
        ``time_scale`` puts a simulated station on real time that many times faster (instead of its
        file's clock); ``clock_start`` is the UTC date-time a simulated station's clock starts at
        (the scheduler's virtual time, so that a virtual week and the runs inside it share one time);
        ``seed`` replaces a simulated station's ``simulation.seed`` (one run's own noise and sample)."""
        doc = load_yaml(path or default_station())
        spec: StationFile = validate(doc, StationFile, "station")  # type: ignore[assignment]
        if time_scale is not None:
            if spec.simulation is None:
                raise UserError(f"{doc.path}: --time-scale only applies to a simulated station")
            if not 0 < time_scale <= MAX_TIME_SCALE:
                raise UserError(f"--time-scale must be > 0 and at most {MAX_TIME_SCALE:g} (for more speed, the station's virtual clock), got {time_scale:g}")
            spec.simulation.clock, spec.simulation.time_scale = "real", time_scale
        if clock_start is not None and spec.simulation is None:
            raise UserError(f"{doc.path}: --clock-start only applies to a simulated station (real hardware runs on the wall clock)")
        if seed is not None:
            if spec.simulation is None:
                raise UserError(f"{doc.path}: --seed only applies to a simulated station (real hardware has no seed)")
            spec.simulation.seed = seed
        station = cls(doc.path, spec, doc)
        try:
            station._bring_up(clock_start)
        except BaseException:
            station.close()
            raise
        atexit.register(station.close)
        return station

    def where(self, *loc: Any) -> str:
        return f"{self.path}:{self.doc.line_of(loc)}"

    def _bring_up(self, clock_start: datetime | None = None) -> None:
        spec = self.spec
        if spec.simulation is not None:
            mode, scale = spec.clock_mode()
            self.clock = VirtualClock(clock_start) if mode == "virtual" else ScaledClock(scale or 1.0, clock_start)
            self.sim = start_simulation(spec, self.clock)
        mm = spec.micromanager
        folders = [str(adapter_folder(p, self.path.parent)) for p in mm.adapter_paths]
        if folders:
            self.core.setDeviceAdapterSearchPaths(folders)
        if mm.config:
            cfg = Path(mm.config) if Path(mm.config).is_absolute() else self.path.parent / mm.config
            if not cfg.is_file():
                raise UserError(f"{self.where('micromanager', 'config')}: micromanager.config: {cfg} not found")
            try:
                self.core.loadSystemConfiguration(str(cfg))
            except Exception as exc:  # MMCore reports adapter problems as RuntimeError text
                raise StationError(f"{self.where('micromanager', 'config')}: Micro-Manager could not load {cfg}: {str(exc).strip()}") from None
        for label, entry in spec.devices.items():
            self._load_device(label, entry)
        self._bind_roles()
        self._read_identities()
        self.safe_state()

    def _load_device(self, label: str, entry: DeviceEntryBase) -> None:
        where = self.where("devices", label)
        try:
            driver_kind(entry.driver).load(label, entry, self)
            for name, value in entry.properties.items():
                self.core.setProperty(label, name, value)
        except DeviceError as exc:
            raise StationError(f"{where}: device {label} ({entry.driver}): {exc.detail}") from None
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            raise StationError(f"{where}: device {label} ({entry.driver}): {str(exc).strip()}") from None

    # --- what a driver kind may use while loading (harness.station.drivers.base.DeviceHost) ---------
    def add_python_device(self, label: str, device: Any) -> None:
        """Load and initialize a Micro-Manager Python device; a ``QCDriver`` is kept for its identity
        and safe state."""
        self.core.loadPyDevice(label, device)
        self._initialize_python_device(label, device)
        if isinstance(device, QCDriver):
            self.drivers[label] = device

    def front_end(self, label: str) -> FrontEnd:
        """The simulated hardware of device ``label`` (KeyError if it has none)."""
        if self.sim is None:
            raise KeyError(label)
        return self.sim.front_end(label)

    def line_limit_mw(self, label: str) -> float:
        return self.spec.line_limit_mw(label)

    def _initialize_python_device(self, label: str, device: Any) -> None:
        """UniMMCore logs a failed initialize() with a traceback and returns normally: keep its log
        quiet and raise the device's own error instead."""
        logs = [logging.getLogger(name) for name in ("pymmcore-plus", "pymmcore_plus")]  # the unicore device manager logs under the module name
        levels = [lg.level for lg in logs]
        for lg in logs:
            lg.setLevel(logging.CRITICAL)
        try:
            self.core.initializeDevice(label)
        finally:
            for lg, level in zip(logs, levels):
                lg.setLevel(level)
        state = device._initialized_  # where UniMMCore keeps the exception of a failed initialize()
        if isinstance(state, BaseException):
            raise state

    # --- roles -----------------------------------------------------------------------------------
    def _require_device(self, label: str, *loc: Any) -> None:
        if label not in self.core.getLoadedDevices():
            known = ", ".join(d for d in self.core.getLoadedDevices() if d != "Core") or "none"
            raise UserError(f"{self.where(*loc)}: {'.'.join(str(p) for p in loc)}: no device {label!r} (loaded: {known})")
        # the kind of a C++ device is known only now (the station file's own devices: StationFile)
        kind = self.core.getDeviceType(label)
        role = "shutter_device" if loc[-1] == "shutter_device" else next(str(p) for p in loc if p in _ROLE_TYPES)
        wanted = _ROLE_TYPES[role]
        if (kind != wanted) if wanted is not None else (kind in _MOTION_OR_CAMERA):
            need = f"a {_KIND.get(wanted, str(wanted))} device" if wanted is not None else "a device that is not a camera or a stage"
            is_a = _KIND.get(kind, str(kind).split('.')[-1].lower())
            raise UserError(f"{self.where(*loc)}: {'.'.join(str(p) for p in loc)}: device {label!r} is a {is_a} device; "
                            f"the {role.replace('_', ' ')} needs {need}")

    def _bind_roles(self) -> None:
        roles = self.spec.roles
        core = self.core
        for i, role in enumerate(roles.lasers):
            self._require_device(role.device, "roles", "lasers", i, "device")
            if role.shutter_device:
                self._require_device(role.shutter_device, "roles", "lasers", i, "shutter_device")
            wavelength = role.wavelength_nm
            if wavelength is None and core.hasProperty(role.device, "Wavelength-nm"):
                wavelength = float(core.getProperty(role.device, "Wavelength-nm"))
            if wavelength is None:
                raise UserError(f"{self.where('roles', 'lasers', i)}: roles.lasers[{i}].wavelength_nm: required for device {role.device!r}")
            line = LaserLine(core, role, wavelength, self.spec.line_limit_mw(role.device))
            if line.name in self.lasers:
                raise UserError(f"{self.where('roles', 'lasers', i)}: roles.lasers[{i}]: a second {line.name} nm line")
            self.lasers[line.name] = line
        if roles.power_meter is not None:
            self._require_device(roles.power_meter.device, "roles", "power_meter", "device")
            self.power_meter = PowerMeter(core, roles.power_meter)
        if roles.camera is not None:
            self._require_device(roles.camera, "roles", "camera")
            self.camera = Camera(core, roles.camera, self._pixel_size_um(roles.camera))
            core.setCameraDevice("")
            core.setCameraDevice(roles.camera)
        if roles.xy_stage is not None:
            self._require_device(roles.xy_stage, "roles", "xy_stage")
            self.xy_stage = XYStage(core, roles.xy_stage, timeout_s=max(core.getTimeoutMs() / 1000, 5.0))
            core.setXYStageDevice(roles.xy_stage)
        if roles.z_drive is not None:
            self._require_device(roles.z_drive, "roles", "z_drive")
            entry = self.spec.devices.get(roles.z_drive)
            truth = entry.simulation_truth() if entry is not None else None
            axis = getattr(truth, "z", None)  # a simulated Z drive's travel is its truth; a real one's is not known here
            travel = (axis.min_um, axis.max_um) if axis is not None else None
            self.z_drive = ZDrive(core, roles.z_drive, timeout_s=max(core.getTimeoutMs() / 1000, 5.0), travel_um=travel)
            core.setFocusDevice(roles.z_drive)

    def _pixel_size_um(self, camera: str) -> float:
        inst = self.spec.instrument
        if inst.pixel_size_um:
            return inst.pixel_size_um
        if self.core.hasProperty(camera, "SensorPixelSize-um"):
            objective = next((o for o in inst.objectives if o.id == inst.objective_in_use), None)
            magnification = (objective.nominal_magnification if objective else 1.0) * inst.camera_adapter_magnification
            return float(self.core.getProperty(camera, "SensorPixelSize-um")) / magnification
        try:
            size = float(self.core.getPixelSizeUm())
        except Exception:
            size = 0.0
        if size <= 0:
            raise UserError(f"{self.where('instrument')}: instrument.pixel_size_um: needed "
                            "(the camera reports no pixel size and no pixel-size configuration is defined)")
        return size

    # --- identities and listing ------------------------------------------------------------------
    def role_of(self, label: str) -> str:
        names = [f"laser {n} nm" for n, line in self.lasers.items() if line.label == label]
        for role, obj in (("power meter", self.power_meter), ("camera", self.camera), ("XY stage", self.xy_stage), ("Z drive", self.z_drive)):
            if obj is not None and obj.label == label:
                names.append(role)
        return ", ".join(names) or "-"

    def _read_identities(self) -> None:
        for label in self.core.getLoadedDevices():
            if label == "Core":
                continue
            self.identities[label] = ident = self._identity(label)
            log.info("%s (%s): %s %s %s, serial %s, firmware %s", label, self.role_of(label), ident.kind, ident.vendor, ident.model,
                     ident.serial or "-", ident.firmware or "-")

    def _identity(self, label: str) -> DeviceIdentity:
        if label in self.drivers:
            return self.drivers[label].identity()
        core = self.core
        kind = _KIND.get(core.getDeviceType(label), str(core.getDeviceType(label)).split(".")[-1].lower())
        entry = self.spec.devices.get(label)
        own = driver_kind(entry.driver).identity(label, entry, kind) if entry is not None else None
        if own is not None:
            return own
        library = core.getDeviceLibrary(label) if not core.isPyDevice(label) else "python"
        return DeviceIdentity(
            kind=kind,
            vendor=property_or(core, label, ("Vendor", "Manufacturer"), library),
            model=core.getDeviceName(label),
            serial=property_or(core, label, ("SerialNumber", "Serial Number", "CameraID", "Serial")),
            firmware=property_or(core, label, ("Firmware", "FirmwareVersion", "Firmware Version")),
            driver=f"Micro-Manager adapter {library}",
            details={"description": core.getDeviceDescription(label)},
        )

    def key_properties(self, label: str) -> dict[str, str]:
        core = self.core
        out: dict[str, str] = {}
        for line in self.lasers.values():
            if line.label == label:
                out["wavelength"] = f"{line.wavelength_nm:g} nm"
                out["set point"] = f"{line.setpoint_mw():.3g} mW"
                out["emission"] = "ON" if line.emission() else "off"
                out["limit"] = f"{line.max_power_mw:g} mW"
        if self.power_meter and self.power_meter.label == label:
            out["wavelength"] = f"{self.power_meter.wavelength_nm():g} nm"
            out["location"] = self.power_meter.location
        if self.camera and self.camera.label == label:
            out["size"] = f"{core.getImageWidth()}x{core.getImageHeight()}"
            out["bit depth"] = property_or(core, label, ("BitDepth",), str(core.getImageBitDepth()))
            out["exposure"] = f"{self.camera.exposure_ms():g} ms"
            out["pixel"] = f"{self.camera.pixel_size_um:.4g} um"
        if self.xy_stage and self.xy_stage.label == label:
            x, y = self.xy_stage.position_um()
            out["position"] = f"({x:.3f}, {y:.3f}) um"
        if self.z_drive and self.z_drive.label == label:
            out["position"] = f"{self.z_drive.position_um():.3f} um"
        return out

    def device_records(self) -> list[DeviceRecord]:
        return [
            DeviceRecord(label, self.role_of(label), ident, device_call(label, functools.partial(self.key_properties, label)))
            for label, ident in self.identities.items()
        ]

    # --- safety and shutdown -----------------------------------------------------------------------
    def safe_state(self) -> list[str]:
        """Every laser off, every acquisition stopped. Tries every device even if one fails; returns
        the failures (a device that cannot be reached cannot be made safe: say so)."""
        failures = []
        for line in self.lasers.values():
            try:
                line.set_emission(False)
            except DeviceError as exc:
                failures.append(str(exc))
        for _label, driver in self.drivers.items():
            try:
                driver.safe_state()
            except DeviceError as exc:
                failures.append(str(exc))
        try:
            if self.core.isSequenceRunning():
                self.core.stopSequenceAcquisition()
        except Exception as exc:  # a broken camera must not stop the rest from being made safe
            failures.append(f"camera: {exc}")
        for failure in failures:
            log.error("safe state not confirmed: %s", failure)
        if not failures:
            log.info("safe state: every laser off, no acquisition running")
        return failures

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.safe_state()
        finally:
            try:
                self.core.unloadAllDevices()
            except Exception as exc:  # keep going: the simulators must stop whatever happens
                log.error("unloading devices: %s", exc)
            # the C++ core calls back into Python until its callback is unregistered; left to the
            # core's __del__, that may be at interpreter shutdown, which can abort the process
            # ("FATAL: exception not rethrown") after its work is done
            with contextlib.suppress(Exception):
                super(CMMCorePlus, self.core).registerCallback(None)
            if self.sim is not None:
                self.sim.stop()
            atexit.unregister(self.close)

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
