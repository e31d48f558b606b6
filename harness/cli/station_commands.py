"""``microscope-qc`` commands that look at a station or its files: ``devices``, ``meter``, ``snap``,
``move`` (each brings the station up under its lock: ``run_guard.held_station``), ``validate`` and
``schema`` (files only).

Contract: each ``cmd_*`` takes the parsed arguments and returns the exit status; a user mistake is
raised as ``UserError``, a busy station as ``StationBusy``, a device failure as ``StationError`` or
``DeviceError`` (``commands.run`` turns each into one message and its exit status). The station is
put into its safe state and unloaded before a command returns. ``add_*`` define each command's
arguments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.cli_types import at_least, finite, needs, non_negative, output_file, output_folder, positive
from harness.cli.shared import station_arg, table
from harness.common import shipped
from harness.common.errors import UserError

if TYPE_CHECKING:
    from pydantic import BaseModel

# Start-up stays fast (``--help``, ``validate``): heavy modules (numpy, the station and pymmcore-plus,
# tifffile) are imported inside the command that needs them, never here.

METER_POWER_MW, METER_SETTLE_S, SNAP_POWER_MW = 1.0, 1.0, 10.0


def cmd_devices(args: argparse.Namespace) -> int:
    from harness.station.run_guard import held_station

    with held_station(args.station, "devices") as station:
        records = station.device_records()
        if args.json:
            print(json.dumps([{"label": r.label, "role": r.role, **r.identity.as_dict(), "properties": r.properties} for r in records], indent=2))
            return 0
        print(f"Station: {station.name}  ({station.path})")
        if station.sim is not None:
            print(f"Simulated: seed {station.sim.world.seed}, {station.clock.describe()}")
        rows = [
            [r.role, r.label, r.identity.kind, r.identity.vendor, r.identity.model, r.identity.serial or "-", r.identity.firmware or "-",
             "; ".join(f"{k} {v}" for k, v in r.properties.items())]
            for r in records
        ]
        print(table(rows, ["ROLE", "LABEL", "KIND", "VENDOR", "MODEL", "SERIAL", "FIRMWARE", "STATE"]))
    return 0


def _file_kind(doc: Any) -> str:
    from harness.common.file_kinds import guess_kind

    return guess_kind(doc)


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.common.yaml_source import load_yaml, validate
    from harness.protocol.plan import expand, lines_named
    from harness.protocol.protocol_file import ProtocolFile, check_acceptance
    from harness.run.preflight import station_file_problems
    from harness.station.station_file import StationFile

    failures, against_station = [], []
    for path in args.files:
        try:
            doc = load_yaml(path)
            if isinstance(doc.data, dict) and "policy" in doc.data:  # a facility policy file (microscope-qc serve --policy)
                from harness.board.policy import read_policy

                policy = read_policy(path)
                print(f"{path}: valid facility policy ({len(policy.checks())} checks, {len(policy.microscopes())} microscopes with overrides)")
                continue
            kind = _file_kind(doc)
            if kind == "protocol":
                protocol = validate(doc, ProtocolFile, "protocol")
                assert isinstance(protocol, ProtocolFile)
                check_acceptance(protocol, doc)
                if args.station is not None:
                    against_station.append(path)  # preflight below, with the station loaded once
                    continue
                # unroll the loops too: a mistake inside a loop shows only with the values; with no
                # station at hand, every line the protocol names is taken to exist
                plan = expand(protocol, doc, lines_named(doc.data))
                print(f"{path}: valid protocol ({len(plan.actions)} actions, about {plan.estimate_s / 60:.1f} min, needs {', '.join(sorted(plan.roles))})")
            elif kind == "schedule":
                from harness.run.preflight import validate_schedule
                from harness.unattended.schedule_file import read_schedule_file

                failures += validate_schedule(read_schedule_file(path), print)
            else:
                spec = validate(doc, StationFile, "station")
                problems = station_file_problems(spec, doc)  # type: ignore[arg-type]
                if problems:
                    raise UserError("\n".join(problems))
                print(f"{path}: valid station file (roles fit their devices; C++ devices' kinds are checked when the station loads)")
        except UserError as exc:
            failures.append(str(exc))
    if against_station:
        from harness.run.preflight import validate_protocols

        failures += validate_protocols(against_station, args.station, args.runs_dir, print)
    if failures:
        raise UserError("\n".join(failures))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.board.policy import PolicyFile
    from harness.protocol.protocol_file import ProtocolFile
    from harness.records.run_record import SCHEMA_MODELS
    from harness.station.station_file import StationFile
    from harness.unattended.schedule_file import ScheduleFile

    models: dict[str, type[BaseModel]] = {"protocol": ProtocolFile, "station": StationFile, "schedule": ScheduleFile,
                                          "facility-policy": PolicyFile, **SCHEMA_MODELS}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path = args.out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


def _line(station: Any, name: str | None) -> Any:
    if name is None:
        return None
    key = name.removesuffix("nm").strip()
    if key not in station.lasers:
        raise UserError(f"no laser line {name!r} on this station (lines: {', '.join(station.lasers) or 'none'})")
    return station.lasers[key]


def cmd_meter(args: argparse.Namespace) -> int:
    from harness.station.run_guard import held_station

    needs(args, "line", "power_mw", "settle_s")
    power_mw = METER_POWER_MW if args.power_mw is None else args.power_mw
    with held_station(args.station, "meter") as station:
        meter = station.power_meter
        if meter is None:
            raise UserError(f"{station.path}: the station has no power meter role")
        line = _line(station, args.line)
        if args.zero:
            station.safe_state()
            meter.zero()
            print("zeroed (all lines off)")
        if args.averaging is not None:
            meter.set_averaging(args.averaging)
        wavelength = args.wavelength_nm or (line.wavelength_nm if line else None)
        if wavelength:
            meter.set_wavelength_nm(wavelength)
        try:
            if line is not None:
                line.set_setpoint_mw(power_mw)
                line.set_emission(True)
                station.clock.sleep(METER_SETTLE_S if args.settle_s is None else args.settle_s)
            watts = meter.read_w()
        finally:
            if line is not None:
                line.set_emission(False)
        what = f"line {line.name} nm at {power_mw:g} mW" if line else "as it is"
        print(f"{meter.label}: {watts * 1e3:.6g} mW  (wavelength setting {meter.wavelength_nm():g} nm, {what}, at {meter.location})")
    return 0


def cmd_snap(args: argparse.Namespace) -> int:
    import numpy as np

    from harness.station.run_guard import held_station

    needs(args, "line", "power_mw")
    power_mw = SNAP_POWER_MW if args.power_mw is None else args.power_mw
    if args.out is not None:
        from harness.run.snapshot import ome_tiff_path

        args.out = ome_tiff_path(args.out)  # checked before anything is touched
    with held_station(args.station, "snap") as station:
        camera = station.camera
        if camera is None:
            raise UserError(f"{station.path}: the station has no camera role")
        if args.sample:
            if station.sim is None:
                raise UserError("--sample only applies to a simulated station")
            station.sim.world.mount_sample(args.sample)
        line = _line(station, args.line)
        if args.exposure_ms is not None:
            camera.set_exposure_ms(args.exposure_ms)
        try:
            if line is not None:
                line.set_setpoint_mw(power_mw)
                line.set_emission(True)
            image = camera.snap()
        finally:
            if line is not None:
                line.set_emission(False)
        bits = int(station.core.getProperty(camera.label, "BitDepth")) if station.core.hasProperty(camera.label, "BitDepth") else camera.bit_depth()
        top = 2**bits - 1
        print(
            f"{camera.label}: {image.shape[1]}x{image.shape[0]} {image.dtype}, exposure {camera.exposure_ms():g} ms, "
            f"mean {image.mean():.1f}, min {image.min()}, max {image.max()}, saturated {np.mean(image >= top) * 100:.3f} %"
        )
        if args.out is not None:
            from harness.run.snapshot import write_snapshot

            lit = {line.name: power_mw} if line is not None else {}
            print(f"saved {write_snapshot(station, image, args.out, lit, camera.exposure_ms())}")
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    from harness.station.run_guard import held_station

    with held_station(args.station, "move") as station:
        if station.xy_stage is None:
            raise UserError(f"{station.path}: the station has no XY stage role")
        if args.z is not None and station.z_drive is None:
            raise UserError(f"{station.path}: the station has no Z drive role (--z)")
        station.xy_stage.move_to(args.x, args.y)
        x, y = station.xy_stage.position_um()
        print(f"{station.xy_stage.label}: at ({x:.3f}, {y:.3f}) um")
        if args.z is not None:
            station.z_drive.move_to(args.z)
            print(f"{station.z_drive.label}: at {station.z_drive.position_um():.3f} um")
        if station.sim is not None and station.xy_stage.label in station.sim.world.xy_stages:
            true = station.sim.world.xy_stages[station.xy_stage.label].true()
            print(f"  (simulated ground truth: carriage at ({true['x']:.3f}, {true['y']:.3f}) um)")
    return 0


def add_devices(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``devices`` command's arguments."""
    p = sub.add_parser("devices", help="list every device of a station with its identity and state")
    station_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_devices)


def add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``validate`` command's arguments."""
    p = sub.add_parser("validate", help="check protocol, station and schedule files; with --station, preflight protocols on that station")
    p.add_argument("files", nargs="+", type=shipped.any_file, metavar="FILE", help="protocol, station or schedule files (or shipped ones by name)")
    p.add_argument("--station", "-s", type=shipped.station, default=None,
                   help="check each protocol against this station (loaded if its devices can be reached: roles, limits, camera, properties, disk)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs would be written, for the disk-space check (default ./runs)")
    p.set_defaults(func=cmd_validate)


def add_schema(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``schema`` command's arguments."""
    p = sub.add_parser("schema", help="export JSON Schemas of protocol, station and schedule files (for editors)")
    p.add_argument("--out", type=output_folder, default=Path("schemas"), help="folder for the schema files (default ./schemas)")
    p.set_defaults(func=cmd_schema)


def add_meter(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``meter`` command's arguments."""
    p = sub.add_parser("meter", help="read the power meter once (optionally with one laser line on)")
    station_arg(p)
    p.add_argument("--line", help="laser line to switch on for the reading, e.g. 488")
    p.add_argument("--power-mw", type=positive, help=f"set point for --line (default {METER_POWER_MW:g} mW)")
    p.add_argument("--wavelength-nm", type=positive, help="meter wavelength setting (default: the line's)")
    p.add_argument("--averaging", type=at_least(1), help="samples averaged per reading")
    p.add_argument("--settle-s", type=non_negative, help=f"wait after emission on, with --line (station time; default {METER_SETTLE_S:g} s)")
    p.add_argument("--zero", action="store_true", help="zero the meter first, all lines off")
    p.set_defaults(func=cmd_meter)


def add_snap(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``snap`` command's arguments."""
    p = sub.add_parser("snap", help="snap one camera frame and show its statistics")
    station_arg(p)
    p.add_argument("--exposure-ms", type=positive, help="exposure time (default: the camera's current one)")
    p.add_argument("--line", help="laser line on during the exposure, e.g. 488")
    p.add_argument("--power-mw", type=positive, help=f"set point for --line (default {SNAP_POWER_MW:g} mW)")
    p.add_argument("--sample", choices=["bead_field", "uniform_slide"], help="simulated station: the sample to mount")
    p.add_argument("--out", type=output_file, metavar="FILE.ome.tif",
                   help="save the frame as OME-TIFF with the station's metadata (.ome.tif is added to the name if missing)")
    p.set_defaults(func=cmd_snap)


def add_move(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``move`` command's arguments."""
    p = sub.add_parser("move", help="move the XY stage (and Z drive) and report the position")
    station_arg(p)
    p.add_argument("x", type=finite, help="um")
    p.add_argument("y", type=finite, help="um")
    p.add_argument("--z", type=finite, help="um")
    p.set_defaults(func=cmd_move)
