"""``acquire`` run side: ROI, binning and exposure checked against the camera, one frame size per
stack, and the data volume estimated (preflight); frames snapped into the stack, each at its planned (c, t), with one frame-log
row per frame; a snap taken whole (a signal during it ends the run after it); a frame's page and its row written
both or neither. Dark frames: the lit lines off."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from devices.errors import DeviceError
from harness.common import kill_points
from harness.common.errors import UserError
from harness.common.optics import axial_fwhm_um
from harness.protocol.plan import Action
from harness.records.image_records import ChannelInfo, PlaneInfo
from harness.run.station_facts import CameraFacts
from harness.run.steps.base import ASSUMED_SENSOR, FRAME_EXTRA_BYTES, PlanCheck, StepExecutor, StepRun, context, lines_off, lit_context, position


class Acquire(StepExecutor):
    key = "acquire"

    def check(self, action: Action, check: PlanCheck) -> None:
        p = action.params
        camera = check.facts.camera
        if p.binning is not None:
            if camera and camera.allowed_binning and p.binning not in camera.allowed_binning:
                check.add(action.line, f"acquire: binning {p.binning}: the camera {camera.label} allows {', '.join(map(str, camera.allowed_binning))}")
            else:
                check.binning = p.binning
        binning = check.binning
        if camera and camera.sensor:
            full = (camera.sensor[0] // binning, camera.sensor[1] // binning)
            shown = f"{full[0]}x{full[1]}" + (f" at binning {binning}" if binning > 1 else "")
            if p.roi is not None:
                x, y, w, h = p.roi
                if w < 1 or h < 1 or x < 0 or y < 0:
                    check.add(action.line, f"acquire: roi {list(p.roi)}: x and y must be >= 0, width and height >= 1")
                elif x + w > full[0] or y + h > full[1]:
                    check.add(action.line, f"acquire: roi {list(p.roi)} (x, y, width, height) reaches {x + w}x{y + h}, "
                                           f"outside the camera's {shown} pixels{context(action)}")
            elif p.centre_roi is not None:
                w, h = p.centre_roi
                if w < 1 or h < 1:
                    check.add(action.line, f"acquire: centre_roi {list(p.centre_roi)}: width and height must be >= 1")
                elif w > full[0] or h > full[1]:
                    check.add(action.line, f"acquire: centre_roi {w}x{h} is larger than the camera's {shown} pixels{context(action)}")
        z = p.z_stack
        if z is not None and check.facts.optics is None and (z.step == "nyquist" or z.extent is None):
            check.add(action.line, f"acquire: z_stack: its step and extent follow from the objective, but {check.facts.optics_problem}; "
                                   "or give the z_stack a step and an extent")
        if action.z_offsets_um:
            _check_z_stack(action, check)
        w, h = _frame_size(p, camera if camera else None)
        known = (camera is not None and bool(camera.sensor)) or p.roi is not None or p.centre_roi is not None
        sizes: dict[str, tuple[int, int, int]] = check.memo.setdefault("acquire_sizes", {})
        if known and isinstance(p.stack, str):
            first = sizes.setdefault(p.stack, (w, h, action.line))
            if first[:2] != (w, h):
                check.add(action.line, f"acquire: stack {p.stack}: {w}x{h} frames, but its frames from line {first[2]} are "
                                       f"{first[0]}x{first[1]}: a stack holds frames of one size (give every acquire into it the same "
                                       "roi/centre_roi and binning, or name another stack)")
        check.data_bytes += len(action.frames) * (max(w, 1) * max(h, 1) * (camera.bytes_per_pixel if camera else 2) + FRAME_EXTRA_BYTES)

    def execute(self, action: Action, run: StepRun) -> None:
        from harness.station.roles import device_call  # brings Micro-Manager (pymmcore-plus): not for preflight or validate

        p = action.params
        cam = run.station.camera
        assert cam is not None
        core = run.station.core
        if p.binning is not None:
            run.retry("binning", lambda: device_call(cam.label, lambda: core.setProperty(cam.label, "Binning", p.binning)))
        run.retry("ROI", lambda: device_call(cam.label, lambda: _apply_roi(run, p)))
        if p.exposure is not None:
            run.retry("exposure", lambda: cam.set_exposure_ms(float(p.exposure) * 1000))
        exposure_s = cam.exposure_ms() / 1000
        stack, log = run.open_stack(p.stack)
        state, t0 = run.state, run.t0
        lit = sorted(state.emitting, key=float)
        with lines_off(run, lit if p.dark else [], "dark frames", restore_on_error=True):
            channel = ChannelInfo(
                action.channel, {k: state.setpoints_mw[k] for k in lit if k in state.setpoints_mw and not p.dark},
                gain_db=_float_or_none(core, cam.label, "Gain"), offset=_float_or_none(core, cam.label, "Offset"),
                binning=int(_float_or_none(core, cam.label, "Binning") or 1),
            )
            z_centre = _z_stack_start(run, action)
            for i, (c, t) in enumerate(action.frames):
                if action.z_offsets_um:
                    _z_plane(run, action, z_centre + action.z_offsets_um[i])
                pos = position(run.station)
                t_frame = run.clock.now()
                nz = len(action.z_offsets_um)
                where = f"c={c},z={t % nz},t={t // nz}" if nz else f"c={c},t={t}"
                row = {"frame": log.rows, "stack": p.stack, "channel": action.channel, "c": c, "t": t, "time_s": f"{t_frame - t0:.6f}",
                       "exposure_s": exposure_s, "x_um": pos.get("x"), "y_um": pos.get("y"), "z_um": pos.get("z"), "tag": p.tag,
                       "gain_db": channel.gain_db, "offset": channel.offset, "binning": channel.binning,
                       "context": json.dumps(action.context), **lit_context(run.station, state)}
                plane = PlaneInfo(c, t, -1, t_frame - t0, exposure_s, pos.get("x"), pos.get("y"), pos.get("z"))
                try:
                    # a snap is taken whole: Ctrl-C/SIGTERM during it end the run after it, so the signal
                    # never lands in the driver's clean-up (e.g. disarming the camera) and leaves it armed
                    with run.whole_record():
                        image, attempts = run.retry(f"frame {p.stack}[{where}]", cam.snap)
                except DeviceError as exc:
                    with run.whole_record():
                        run.page(stack, partial(stack.write_missing, plane, str(exc)),
                                 (stack.shape[0] * stack.shape[1] * 2) if stack.shape else 0)
                        log.write({**row, "status": "missing", "error": str(exc), "ifd": plane.ifd if plane.ifd >= 0 else None})
                    run.journal.write("frame_missing", t_frame - t0, sync=True, stack=p.stack, c=c, t=t, error=str(exc))
                    run.count_missing(f"frame {p.stack}[{where}]", exc)
                    continue
                with run.whole_record():
                    run.page(stack, partial(stack.write, image, plane, channel), image.size * 2)
                    log.write({**row, "status": "ok", "ifd": plane.ifd, "attempts": attempts})
                    kill_points.reached("acquisition:frame")
                run.journal.write("frame", t_frame - t0, stack=p.stack, c=c, t=t, ifd=plane.ifd, attempts=attempts,
                                  mean=float(image.mean()), max=int(image.max()), context=action.context, tag=p.tag)
                run.progress((i + 1) * action.estimate_s / len(action.frames), f"acquire {p.stack} {i + 1}/{len(action.frames)}")
            if action.z_offsets_um:
                _z_return(run, action, z_centre)


MIN_Z_PLANES = 5
MIN_Z_EXTENT_FWHM = 2.0


def _check_z_stack(action: Action, check: PlanCheck) -> None:
    """A z-stack the analyses could not use is a protocol mistake: fewer than 5 planes, or less than
    2 theoretical axial FWHMs (at the station's longest line) from bottom to top."""
    offsets = action.z_offsets_um
    span = offsets[-1] - offsets[0]
    if len(offsets) < MIN_Z_PLANES:
        check.add(action.line, f"acquire: z_stack: {len(offsets)} planes {span / max(len(offsets) - 1, 1):g} um apart; a focus or bead fit needs "
                               f"at least {MIN_Z_PLANES}: a smaller step or a larger extent")
        return
    optics, lines = check.facts.optics, [float(k) for k in check.facts.lines if k.replace(".", "", 1).isdigit()]
    if optics is not None and lines:
        fwhm = axial_fwhm_um(max(lines), optics)
        if span < MIN_Z_EXTENT_FWHM * fwhm:
            check.add(action.line, f"acquire: z_stack: the z-stack spans {span:.3g} um, less than {MIN_Z_EXTENT_FWHM:g} theoretical axial FWHMs "
                                   f"({MIN_Z_EXTENT_FWHM * fwhm:.3g} um at {max(lines):g} nm, NA {optics.na:g}): beads and the focus curve would "
                                   "reach its ends; give a larger extent (or extent_fwhm)")


def _z_stack_start(run: StepRun, action: Action) -> float:
    """A z-stack's centre (where the Z drive is, to the nanometre); the drive goes to ``overtravel``
    below the first plane, so that every plane is approached from below (the backlash is taken up).
    ``UserError`` naming the step when the z-stack would leave the drive's known travel (nothing moved)."""
    if not action.z_offsets_um:
        return 0.0
    z = run.station.z_drive
    if z is None:
        raise UserError(f"{run.protocol_path}:{action.line}: protocol: acquire: z_stack needs a Z drive (roles: z_drive)")
    centre = round(z.position_um(), 3)
    overtravel = float(action.params.z_stack.overtravel) if action.params.z_stack else 0.0
    low, high = centre + action.z_offsets_um[0] - overtravel, centre + action.z_offsets_um[-1]
    travel = getattr(z, "travel_um", None)
    if travel is not None and (low < travel[0] or high > travel[1]):
        raise UserError(f"{run.protocol_path}:{action.line}: protocol: acquire.z_stack: the z-stack around {centre:g} um reaches "
                        f"{low:g} .. {high:g} um (with {overtravel:g} um over-travel below), outside the Z drive {z.label}'s travel "
                        f"{travel[0]:g} .. {travel[1]:g} um; focus further from the end of the travel, or give a smaller extent or overtravel")
    _z_plane(run, action, low)
    return centre


def _z_plane(run: StepRun, action: Action, target_um: float) -> None:
    z = run.station.z_drive
    target = round(target_um, 3)  # whole nanometres, as the planes were planned
    try:
        run.retry("Z move", lambda: z.move_to(target))
    except DeviceError as exc:
        raise DeviceError(exc.device, f"{exc.detail} (z-stack of {run.protocol_path}:{action.line}: moving to {target:g} um; a position "
                                      "outside the drive's travel is refused like this: focus further from its end, or give the z_stack "
                                      "a smaller extent or overtravel)") from exc


def _z_return(run: StepRun, action: Action, centre: float) -> None:
    """Back to the z-stack's centre, approached from below like its planes."""
    overtravel = float(action.params.z_stack.overtravel) if action.params.z_stack else 0.0
    if overtravel:
        _z_plane(run, action, centre - overtravel)
    _z_plane(run, action, centre)
    run.journal.write("move", run.now(), target_um={"z": centre}, approach="positive", context=action.context)


def _apply_roi(run: StepRun, p: Any) -> None:
    core, label = run.station.core, run.station.camera.label
    core.clearROI()
    if p.roi is not None:
        core.setROI(label, *p.roi)
    elif p.centre_roi is not None:
        w, h = p.centre_roi
        full_w, full_h = core.getImageWidth(), core.getImageHeight()
        if w > full_w or h > full_h:
            raise UserError(f"{run.protocol_path}: acquire: centre_roi {w}x{h} is larger than the camera's {full_w}x{full_h}")
        core.setROI(label, (full_w - w) // 2, (full_h - h) // 2, w, h)


def _frame_size(p: Any, camera: CameraFacts | None) -> tuple[int, int]:
    if p.roi is not None:
        return p.roi[2], p.roi[3]
    if p.centre_roi is not None:
        return p.centre_roi
    sensor = camera.sensor if camera and camera.sensor else ASSUMED_SENSOR
    b = p.binning or (camera.binning if camera else 1)
    return sensor[0] // b, sensor[1] // b


def _float_or_none(core: Any, label: str, prop: str) -> float | None:
    try:
        return float(core.getProperty(label, prop)) if core.hasProperty(label, prop) else None
    except (ValueError, RuntimeError):
        return None


EXECUTOR = Acquire()
