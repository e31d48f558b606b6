"""Rebuilding one OME-TIFF stack of a crashed (or damaged) run so that its XML describes exactly its
complete pages, as ``OmeTiffStack.finalize`` would have (see ``recover.py`` for the whole story).

``recover_stack(folder, name, run)`` keeps every complete page, drops a cut-short last one, places
each page from its frame log row (a page without a row from the protocol, expanded again from the
text run.json keeps), completes the C x T grid with ``not acquired`` placeholders
(``image_records.grid_gaps``), and replaces the file through ``<name>.ome.tif.tmp`` (read back,
fsynced, then ``os.replace``). It returns a ``StackResult``: the run.json ``files`` entry
(``manifest.stack_entry``; None: no file) and one line per thing done. It raises ``OSError`` when
the copy cannot be written (the original is then unchanged, the message says how much space it
needs) and ``ValueError`` for a frame log whose pages are not one run from 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from harness.common.optics import Optics
from harness.protocol.plan import StackPlan, expand
from harness.protocol.protocol_file import read_protocol_text
from harness.records.image_records import FRAME_COLUMNS, ChannelInfo, PlaneInfo, grid_gaps
from harness.records.manifest import read_rows, stack_entry
from harness.records.run_folder import RunFolder
from harness.records.stack_check import quiet_tifffile
from harness.recovery.csv_repair import rewrite_frame_log
from harness.recovery.stack_info import info_from_ome, info_from_run, parse_ome, scan_pages, started, to_float

if TYPE_CHECKING:
    from ome_types import model as m

INTERRUPTED_NOTE = "the run was interrupted before this frame"
LOST_NOTE = "acquired, but its page was not completely written when the run was interrupted"
UNLOGGED_NOTE = "recovered: the page was written but the run was interrupted before this row; time and position not recorded"


def _grid_placeholder_pages(path: Path, unlogged: list[int], by_ifd: dict[int, tuple[PlaneInfo, ChannelInfo | None]],
                            never_written: list[int], z_planes: int = 1) -> int:
    """How many of the last pages are the all-zero placeholders ``finalize`` writes to complete the
    C x T grid (they have no frame log row): 0 unless every page without a row comes after every
    logged one, is all zero, and they are not more than the grid lacks."""
    if not unlogged or never_written or not by_ifd:
        return 0
    first = len(by_ifd)
    if sorted(by_ifd) != list(range(first)) or unlogged != list(range(first, first + len(unlogged))):
        return 0
    if len(unlogged) > len(grid_gaps({(p.c, p.t) for p, _ in by_ifd.values()}, z_planes)):
        return 0
    try:
        with tifffile.TiffFile(path) as tif:
            if any(tif.pages[k].asarray().any() for k in unlogged):
                return 0
    except Exception:
        return 0
    return len(unlogged)


def _planned_order(run: dict[str, Any] | None) -> dict[str, list[tuple[int, int, Any]]]:
    """Per stack, every planned frame in acquisition order: (c, t, acquire action), from the protocol
    text in run.json expanded again for the run's laser lines."""
    if not run:
        return {}
    protocol = run.get("protocol", {})
    parsed, doc = read_protocol_text(protocol["text"], "protocol.yaml")  # the copy run.json keeps; errors name it so
    optics = protocol["plan"].get("optics")
    plan = expand(parsed, doc, list(protocol["plan"]["lines"]), Optics(**optics) if optics else None)
    out: dict[str, list[tuple[int, int, Any]]] = {}
    for action in plan.actions:
        if action.kind == "acquire":
            out.setdefault(action.params.stack, []).extend((c, t, action) for c, t in action.frames)
    return out


def _plane(row: dict[str, str]) -> PlaneInfo:
    plane = PlaneInfo(int(row["c"]), int(row["t"]), -1, to_float(row.get("time_s")), to_float(row.get("exposure_s")),  # type: ignore[arg-type]
                      to_float(row.get("x_um")), to_float(row.get("y_um")), to_float(row.get("z_um")))
    if row.get("status") != "ok":
        plane.status, plane.note = "missing", row.get("error") or "acquisition failed"
    return plane


def _channel(row: dict[str, str]) -> ChannelInfo:
    setpoints: dict[str, float] = {}
    if row.get("channel") != "dark":
        for key, value in zip((row.get("lines_on") or "").split("+"), (row.get("setpoint_mW") or "").split("+")):
            if (mw := to_float(value)) is not None:
                setpoints[key] = mw
    binning = to_float(row.get("binning"))
    return ChannelInfo(row["channel"], setpoints, gain_db=to_float(row.get("gain_db")), offset=to_float(row.get("offset")),
                       binning=int(binning) if binning else 1)


@dataclass
class StackResult:
    name: str
    entry: dict[str, Any] | None  # the run.json files entry of the OME-TIFF (None: no file)
    details: list[str] = field(default_factory=list)


def _assign_ifds(rows: list[dict[str, str]]) -> tuple[dict[int, int], list[int]]:
    """Frame log row index -> the page it has, replaying the writer (a failed frame from before the
    frame size was known is logged without IFD and gets its page right after the next real frame);
    and the rows whose page was never written."""
    ifd_of: dict[int, int] = {}
    pending: list[int] = []
    for i, row in enumerate(rows):
        ifd = row.get("ifd") or ""
        if ifd.strip().lstrip("-").isdigit() and int(ifd) >= 0:
            ifd_of[i] = int(ifd)
            if row.get("status") == "ok":
                for k, waiting in enumerate(pending, start=1):
                    ifd_of[waiting] = int(ifd) + k
                pending = []
        else:
            pending.append(i)
    return ifd_of, pending


def recover_stack(folder: Path, name: str, run: dict[str, Any] | None, columns: list[str] = FRAME_COLUMNS) -> StackResult:
    """Make ``<name>.ome.tif`` describe exactly its complete pages (see the module's doc); its XML
    may be missing or unreadable (then rebuilt from run.json and the frame log, ``info_from_run``)."""
    with quiet_tifffile():  # a broken tag 270 is what we are here for; the details say so once
        return _recover_stack(folder, name, run, columns)


def _recover_stack(folder: Path, name: str, run: dict[str, Any] | None, columns: list[str]) -> StackResult:
    path = RunFolder(folder).stack(name)
    frames_csv = RunFolder(folder).frame_log(name)
    result = StackResult(name, None)
    rows = read_rows(frames_csv) if frames_csv.is_file() else []
    stale_tmp = path.with_name(path.name + ".tmp")
    if stale_tmp.exists():
        stale_tmp.unlink()  # our own, from a recovery that was itself interrupted
    if not path.is_file():
        if rows:
            result.details.append(f"{path.name}: no file (no frame was written); {len(rows)} frame log rows")
        return result
    scan = scan_pages(path)
    if scan.pages == 0:
        aside = path.with_name(path.name + ".incomplete")
        os.replace(path, aside)
        result.details.append(f"{path.name}: not one complete page; the file was moved to {aside.name}")
        for row in rows:
            if row.get("status") == "ok":
                row.update(status="missing", error=LOST_NOTE)
        if rows:
            rewrite_frame_log(frames_csv, rows, columns)
        return result
    planned, unreadable = parse_ome(scan.description)
    px = planned.images[0].pixels if planned else None
    if planned and px and scan.pages == scan.chain and px.planes and len(px.planes) == len(px.tiff_data_blocks) == scan.pages:
        result.entry = _stack_entry(path, name, run, planned)
        result.details.append(f"{path.name}: already consistent ({scan.pages} pages)")
        return result
    if planned is None:
        result.details.append(f"{path.name}: its OME-XML was {unreadable}; rebuilt from its pages, the frame log and run.json")

    stack_plan = _stack_plan(run, name, planned, rows)
    ifd_of, never_written = _assign_ifds(rows)
    by_ifd: dict[int, tuple[PlaneInfo, ChannelInfo | None]] = {}
    rows_changed = False
    lost = 0
    for i, row in enumerate(rows):
        if i not in ifd_of:
            continue
        plane = _plane(row)
        if ifd_of[i] >= scan.pages and row.get("status") == "ok":
            plane.status, plane.note = "missing", LOST_NOTE
            row.update(status="missing", error=LOST_NOTE)
            rows_changed, lost = True, lost + 1
        by_ifd[ifd_of[i]] = (plane, _channel(row) if not plane.status else None)
    unlogged = [k for k in range(scan.pages) if k not in by_ifd]
    unplaced: list[int] = []
    grid_pages = _grid_placeholder_pages(path, unlogged, by_ifd, never_written, stack_plan.z_planes)
    if grid_pages:  # finalize had written the grid's placeholders: they are made again below, the same
        unlogged = unlogged[: len(unlogged) - grid_pages]
        result.details.append(f"{path.name}: {grid_pages} placeholder page(s) 'not acquired' from finishing the file kept")
    if unlogged:
        try:
            order = _planned_order(run).get(name, [])
        except Exception as exc:  # the protocol cannot be expanded again: the pages cannot be placed
            order = []
            result.details.append(f"{path.name}: could not expand the protocol again ({exc})")
        if len(rows) >= len(order):
            unplaced = unlogged
        for n, k in enumerate(unlogged if not unplaced else []):
            if n == 0:
                c, t, action = order[len(rows)]
                channel_name = stack_plan.channels[c]
                previous = next((r for r in reversed(rows) if r.get("channel") == channel_name and r.get("status") == "ok"), None)
                row = {"frame": str(len(rows)), "stack": name, "channel": channel_name, "c": str(c), "t": str(t), "ifd": str(k),
                       "exposure_s": previous.get("exposure_s", "") if previous else "", "tag": action.params.tag or "",
                       "context": json.dumps(action.context), "status": "ok", "error": UNLOGGED_NOTE}
                if previous:
                    row.update({key: previous.get(key, "") for key in ("lines_on", "setpoint_mW", "setpoint_pct_nominal")})
                rows.append(row)
                rows_changed = True
                plane = _plane(row)
                by_ifd[k] = (plane, _channel(row))
                result.details.append(f"{path.name}: page {k} had no frame log row; placed as c={c}, t={t} from the protocol")
            elif n > 0 and never_written:  # placeholders of failed frames, written right after that frame
                i = never_written.pop(0)
                by_ifd[k] = (_plane(rows[i]), None)
            else:
                unplaced.append(k)
    if unplaced:
        pages_kept = min(unplaced)
        result.details.append(f"{path.name}: pages {unplaced} could not be placed; they are left out (the original file is kept)")
        by_ifd = {k: v for k, v in by_ifd.items() if k < pages_kept}
    order_ifds = sorted(by_ifd)
    if order_ifds != list(range(len(order_ifds))):
        raise ValueError(f"{path.name}: the frame log's IFDs {order_ifds[:5]}... are not one run of pages from 0")
    copy_pages = min(scan.pages, len(order_ifds))
    extra_planes = [_plane(rows[i]) for i in never_written]  # failed frames whose page never came
    present = {(p.c, p.t) for p, _ in by_ifd.values()} | {(p.c, p.t) for p in extra_planes}
    extra_planes += [PlaneInfo(c, t, -1, 0.0, 0.0, None, None, None, "not acquired", INTERRUPTED_NOTE) for c, t in grid_gaps(present, stack_plan.z_planes)]

    if rows_changed:  # before the stack: a recovery interrupted in between finds the same answer again
        rewrite_frame_log(frames_csv, rows, columns)
    if planned is not None:
        info, extra = info_from_ome(planned, run["protocol"]["plan"]["lines"] if run else None)
        acquired = planned.images[0].acquisition_date or datetime.now(timezone.utc)
    else:
        info, extra, acquired = info_from_run(run, path), {}, started(run, path)
    tmp = path.with_name(path.name + ".tmp")
    from harness.records.ome_writer import OmeTiffStack  # the OME model costs about a second of start-up: loaded only where an image stack is handled

    assert scan.shape is not None  # at least one complete page
    shape: tuple[int, int] = scan.shape
    stack = OmeTiffStack(tmp, stack_plan, info, acquired)
    stack.file_uuid = ((planned.uuid if planned else None) or "").removeprefix("urn:uuid:") or stack.file_uuid
    stack.annotations = extra
    try:
        with tifffile.TiffFile(path) as tif:
            for k in order_ifds:
                plane, channel = by_ifd[k]
                image = tif.pages[k].asarray() if k < copy_pages else np.zeros(shape, dtype=np.uint16)
                stack.write(image, plane, channel)
                assert plane.ifd == k, (plane.ifd, k)
        for plane in extra_planes:
            stack.write(np.zeros(shape, dtype=np.uint16), plane)
        stack.finalize()
        with tifffile.TiffFile(tmp) as tif:
            pages = len(tif.pages)
            from ome_types import from_xml  # the OME model costs about a second of start-up: loaded only where an image stack is handled

            px_new = from_xml(tif.ome_metadata).images[0].pixels
        if not pages == len(stack.planes) == len(px_new.planes) == len(px_new.tiff_data_blocks):
            raise ValueError(f"{tmp.name} reads back with {pages} pages, {len(px_new.planes)} Planes, {len(px_new.tiff_data_blocks)} TiffData")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if unplaced:
            os.replace(path, path.with_name(path.name + ".interrupted"))
        os.replace(tmp, path)
    except OSError as exc:  # most often a full disk: the rebuilt copy needs as much space as the stack
        with contextlib.suppress(OSError):
            if stack._writer is not None:
                stack._writer.close()
        free = shutil.disk_usage(folder).free
        raise OSError(exc.errno, f"{path.name}: could not write its rebuilt copy ({exc.strerror or exc}); it needs about "
                                 f"{path.stat().st_size} bytes, {free} are free. The file is unchanged; run recover again once there is space") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    real = sum(1 for p in stack.planes if not p.status)
    placeholders = len(stack.planes) - real
    text = f"{path.name}: rewritten with {len(stack.planes)} pages ({real} frames, {placeholders} placeholders"
    text += f"; {lost} acquired frame(s) lost with their cut-short page" if lost else ""
    text += f"; {scan.dropped_bytes} bytes of a cut-short page dropped)" if scan.dropped_bytes else ")"
    result.details.append(text)
    result.entry = _stack_entry(path, name, run, None, stack_plan, real, placeholders)
    return result


def _stack_plan(run: dict[str, Any] | None, name: str, planned: m.OME | None, rows: list[dict[str, str]] | None = None) -> StackPlan:
    stacks = (run or {}).get("protocol", {}).get("plan", {}).get("stacks", {})
    if name in stacks:
        return StackPlan(name, list(stacks[name]["channels"]), dict(stacks[name]["frames"]),
                         int(stacks[name].get("z_planes") or 1), stacks[name].get("z_step_um"))
    if planned is None:  # neither run.json nor XML: the channels the frame log names, in their order
        by_c: dict[int, str] = {}
        counts: dict[str, int] = {}
        for row in rows or []:
            if row.get("c", "").isdigit() and row.get("channel"):
                by_c.setdefault(int(row["c"]), row["channel"])
                counts[row["channel"]] = counts.get(row["channel"], 0) + 1
        channels = [by_c[c] for c in sorted(by_c)] or ["0"]
        return StackPlan(name, channels, {ch: counts.get(ch, 0) for ch in channels})
    px = planned.images[0].pixels  # no run.json: the plan as page 0 has it (one TiffData per channel run)
    channels = [c.name or str(i) for i, c in enumerate(px.channels)]
    frames = {ch: 0 for ch in channels}
    for td in px.tiff_data_blocks:
        frames[channels[td.first_c or 0]] += td.plane_count or 0
    return StackPlan(name, channels, frames, px.size_z, px.physical_size_z if px.size_z > 1 else None)


def _stack_entry(path: Path, name: str, run: dict[str, Any] | None, ome: m.OME | None, stack_plan: StackPlan | None = None,
                 real: int | None = None, placeholders: int | None = None) -> dict[str, Any]:
    if real is None or placeholders is None:
        assert ome is not None
        planes = ome.images[0].pixels.planes
        real = sum(1 for p in planes if not p.annotation_refs)
        placeholders = len(planes) - real
        stack_plan = _stack_plan(run, name, ome)
    assert stack_plan is not None
    return stack_entry(path, name, real, placeholders, sum(stack_plan.frames_per_channel.values()))

