"""Crash recovery: finish a run folder whose run process died (kill -9, power loss, a crash of Python
itself) before the runner could end it, so that it reads like any other run that did not complete.

Such a folder has run.json status ``running`` and an owner process (pid, create time, host, written
by the runner) that is gone; the journal may end in a partial line, the CSVs in a partial row, and an
OME-TIFF's XML is still the plan (not the pages), its last page possibly cut short. ``recover_run``:

1. journal.jsonl: drops a trailing partial (or unparseable) line; the dropped text is kept in the
   ``recovered`` event appended at the end, which also lists everything else recovery did;
2. CSVs: drops a trailing partial row (no line end, or the wrong number of fields), keeps the header;
3. each OME-TIFF: keeps every complete page (IFD and pixel data all on disk), drops a cut-short last
   one, and rewrites the file (``<name>.tmp``, read back, then ``os.replace``) through
   ``OmeTiffStack`` so that its XML describes exactly its pages, as ``OmeTiffStack.finalize`` does:
   one Plane and one TiffData per page (from the frame log), instrument and annotations from the
   planned XML of page 0, and placeholder pages ``not acquired`` completing the C x T grid. A frame
   the log says was acquired but whose page was cut short becomes a ``missing`` placeholder (its row
   in the frame log too); a complete page the log never got a row for (killed between the two) is
   kept and placed from the re-expanded protocol. A page 0 whose XML is missing, unreadable or
   points past the end of the file (an older version's in-place rewrite cut short by a kill or a
   full disk) does not stop it: the instrument then comes from run.json (``info_from_run``: the
   station file's text, the devices' identities, the pixel size from the TIFF's resolution), the
   planes and channel settings from the frame log, as always. Rowless all-zero pages after the
   logged ones are the grid placeholders finalize wrote, made again the same. The copy needs as
   much free space as the stack; on a full disk recovery fails, says so, and leaves the folder as
   it was, so a later ``recover`` succeeds;
4. run.json: status ``finishing`` with the acquisition's outcome (``acquisition.status``:
   ``interrupted``, or the status of a ``run_end`` event when the run had ended and only the
   bookkeeping was cut off), ``ended_utc`` (the last journal record), the missing count, ``files``
   recomputed, ``recovered_utc``, and this process as the owner of the finishing;
5. the finishing pipeline (``harness.finishing``): analysis (its error is reported, not raised), the
   results store record, the final status in run.json, ``MANIFEST.sha256``.

A run whose acquisition had ended but whose finishing was cut off (run.json ``finishing``, or a
final status without a current manifest) and whose owner is gone gets step 5 only: a completed
acquisition stays ``completed``.

A folder that is NOT interrupted (``completed``, ``failed``...) but has a stack whose XML is lost or
is still the plan (its finalize could not finish) gets that stack rebuilt the same way when it is
named to ``recover`` (``repair_stacks``; run.json keeps the acquisition checksum as
``sha256_acquired`` and lists the repair under ``repairs``, the journal gets a ``repaired`` record),
then analysis, the results store and the manifest. ``analyze`` on such a folder says to do that (``stack_check``).

It is idempotent: a folder already recovered (or never interrupted) is left as it is, and a
recovery that was itself interrupted (killed at any point) is completed by running it again: what
is not done is found from the files (run.json's status, the journal's finishing records,
results.json, the manifest). It never touches a run
whose owner process is alive, nor (without ``force``) one whose owner ran on another host or is
unknown (run.json from an older version): we cannot see that host's processes. A folder with a
journal but no readable run.json (killed in the moment between creating the two, or run.json lost
to a power loss; an unreadable one is kept as ``run.json.unreadable``) names no owner: it is taken
as abandoned once nothing in it changed for ``ORPHAN_GRACE_S``, and gets a run.json rebuilt from
the journal and the folder's name (not analysed: the protocol is not known).

What cannot be restored: the pixels of a page cut short (a placeholder takes its place); the time
and stage position of a frame whose row was never logged; the channels' detector gain, offset and
binning (the planned XML does not hold them, so the recovered XML leaves gain and offset out and
keeps the plan's binning); for a stack whose XML was lost, also its UUID (a new one), the
acquisition date (the run's start instead) and any annotation only the XML had (the run annotation says ``MetadataRebuilt``); and whatever a power loss kept in the page
cache (nothing is fsynced while frames and readings are written).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import tifffile

from harness.common.atomic_files import replace_bytes, replace_json
from harness.common.disk_full import RESERVE_NAME, remove_leftover
from harness.common.safe_paths import inside, plain_name_problem
from harness.finishing.folder_state import repair_journal
from harness.protocol.plan import StackPlan
from harness.records.image_records import NS_NBO, NS_NBO_QC, NS_QC, NS_RUN, ChannelInfo, InstrumentInfo, LineInfo, PlaneInfo
from harness.records.journal import Journal, parse_record
from harness.records.provenance import sha256_file
from harness.records.series_writer import COLUMNS as SERIES_COLUMNS
from harness.records.stack_check import quiet_tifffile, stack_problem

if TYPE_CHECKING:
    from ome_types import model as m

log = logging.getLogger(__name__)

CREATE_TIME_TOLERANCE_S = 0.5
ORPHAN_GRACE_S = 60.0
"""A folder with a journal but no readable run.json names no owner: it is taken as abandoned only
when none of its files changed for this long (a live run writes run.json within a second)."""
INTERRUPTED_NOTE = "the run was interrupted before this frame"
LOST_NOTE = "acquired, but its page was not completely written when the run was interrupted"
UNLOGGED_NOTE = "recovered: the page was written but the run was interrupted before this row; time and position not recorded"
TAIL_KEPT_CHARS = 65536  # of a dropped partial line or row, in the journal's "recovered" record


@dataclass
class Candidate:
    """A run folder that did not finish, and what is known of its owner process."""

    folder: Path
    owner: str  # "gone" | "alive" | "other host" | "unknown"
    detail: str


@dataclass
class RecoveryReport:
    folder: Path
    outcome: str  # "recovered" | "nothing to do" | "left alone" | "failed"
    status: str = ""  # run.json status afterwards
    reason: str = ""
    details: list[str] = field(default_factory=list)  # what was done, one line each
    verdict: str = ""
    analysis_error: str = ""
    error: str = ""
    stored: str = ""  # what the results store said (finishing's record step)

    def line(self) -> str:
        """One line for the terminal."""
        if self.outcome == "recovered":
            extra = f", verdict {self.verdict}" if self.verdict else ""
            extra += f"; analysis failed: {self.analysis_error}" if self.analysis_error else ""
            return f"recovered {self.folder}: status {self.status}{extra}"
        if self.outcome == "failed":
            return f"recovery FAILED {self.folder}: {self.error}"
        return f"{self.outcome}: {self.folder}" + (f" ({self.reason})" if self.reason else "")


# --- finding interrupted runs ----------------------------------------------------------------------
def _read_run(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owner_state(run: dict[str, Any]) -> tuple[str, str]:
    """("gone" | "alive" | "other host" | "unknown", why) for the process that owns a run."""
    proc = run.get("process")
    pid = proc.get("pid") if isinstance(proc, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "unknown", "run.json names no owner process (written by an older version)"
    hostname = proc.get("hostname")
    if not isinstance(hostname, str) or hostname.casefold() != socket.gethostname().casefold():
        return "other host", f"owned by pid {pid} on host {hostname}, whose processes cannot be seen from here"
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return "gone", f"pid {pid} has exited"
        create_time = process.create_time()
    except psutil.NoSuchProcess:
        return "gone", f"pid {pid} is no longer running"
    except psutil.AccessDenied:  # alive, and we cannot check it: assume it is the owner
        return "alive", f"pid {pid} is running (not ours to inspect)"
    expected = proc.get("create_time")
    if isinstance(expected, (int, float)) and abs(create_time - expected) > CREATE_TIME_TOLERANCE_S:
        return "gone", f"pid {pid} now belongs to another process (started at a different time)"
    return "alive", f"pid {pid} is still running"


def _newest_change(folder: Path) -> float:
    times = [folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir() if p.is_file()]
    return max(times)


def examine(folder: Path) -> Candidate | None:
    """What is known about a folder that did not finish; None for a finished (or not a run) folder."""
    folder = Path(folder)
    run = _read_run(folder)
    if run is None:
        if not (folder / "journal.jsonl").is_file():
            return None
        age = time.time() - _newest_change(folder)
        what = "no readable run.json" if (folder / "run.json").exists() else "no run.json"
        if age < ORPHAN_GRACE_S:
            return Candidate(folder, "unknown", f"{what}, and files changed {age:.0f} s ago: may still be starting")
        return Candidate(folder, "gone", f"{what}; nothing changed for {age:.0f} s")
    if run.get("status") != "running":
        from harness.finishing.folder_state import unfinished

        left = unfinished(folder, run)
        if not left:
            return None
        owner, detail = owner_state(run)
        what = "finishing was cut off" if left == "finishing" else "its manifest is missing or out of date"
        return Candidate(folder, owner, f"{what}; {detail}")
    owner, detail = owner_state(run)
    return Candidate(folder, owner, detail)


def scan_runs(runs_dir: str | Path) -> list[Candidate]:
    """Every run folder in ``runs_dir`` that did not finish, with its owner's state."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        run_file = folder / "run.json"
        try:  # cheap for the usual case: a finished run's run.json is not running nor finishing, and its manifest is current
            if run_file.is_file():
                text = run_file.read_text(encoding="utf-8", errors="replace")
                if '"status": "running"' not in text and '"status": "finishing"' not in text:
                    from harness.finishing.folder_state import manifest_current

                    if manifest_current(folder):
                        continue
        except OSError:
            pass
        candidate = examine(folder)
        if candidate is not None:
            found.append(candidate)
    return found


def find_interrupted(runs_dir: str | Path) -> list[Path]:
    """Run folders whose run says "running" but whose owner process is gone (on this host)."""
    return [c.folder for c in scan_runs(runs_dir) if c.owner == "gone"]


def recover_all(runs_dir: str | Path, store: bool = False, db_url: str | None = None) -> list[RecoveryReport]:
    """Recover every interrupted run of ``runs_dir`` and finish every cut-off finishing (``store``:
    recording them in the results store ``db_url``); a failure is reported, not raised."""
    return [recover_run(folder, store=store, db_url=db_url) for folder in find_interrupted(runs_dir)]


# --- small file helpers ----------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
    """True while this process alone recovers ``folder`` (flock on the folder; POSIX only)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; two recoveries of one folder at once are not guarded
        yield True
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _shown(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= TAIL_KEPT_CHARS else text[:TAIL_KEPT_CHARS] + f"... ({len(text)} characters)"


# --- 1. the journal ------------------------------------------------------------------------------------
# --- 2. CSVs ---------------------------------------------------------------------------------------
def _records(text: str) -> Iterator[tuple[list[str], int]]:
    """CSV records with the character offset just past each (quoted fields may span lines)."""
    chunks = re.findall(r"[^\n]*\n|[^\n]+$", text)
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        for chunk in chunks:
            consumed += len(chunk)
            yield chunk

    reader = csv.reader(lines())
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error:  # garbage at the end: what follows is not a record
            return
        yield record, consumed


def repair_csv(path: Path, columns: list[str] | None = None) -> tuple[int, bytes]:
    """Drop a trailing partial row (no line end, or the wrong number of fields), keep the header
    (written anew from ``columns`` if it was cut short itself); (rows kept, bytes dropped)."""
    data = path.read_bytes()
    text = data.decode("utf-8", errors="surrogateescape")
    header: list[str] | None = None
    keep, rows, fix_cr = 0, 0, False
    for record, end in _records(text):
        complete = text[end - 1] == "\n"
        if header is None:
            if not complete:
                break
            header, keep = record, end
            continue
        if len(record) == len(header) and (complete or text[end - 1] == "\r"):
            keep, rows = end, rows + 1
            fix_cr = not complete  # cut between \r and \n: the row is whole, only its line end is short
    if header is None:  # the header itself was cut short: nothing else can follow it
        if columns is None or b"\n" in data:
            return 0, b""  # not a CSV we know how to mend: left alone
        replace_bytes(path, (",".join(columns) + "\r\n").encode("utf-8"))
        return 0, data
    base = text[:keep].encode("utf-8", errors="surrogateescape")
    if base == data and not fix_cr:
        return rows, b""
    replace_bytes(path, base + (b"\n" if fix_cr else b""))
    return rows, data[len(base):]


def _rewrite_frame_log(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) or "" for k in columns})
    replace_bytes(path, buf.getvalue().encode("utf-8", errors="surrogateescape"))


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


# --- 3. OME-TIFF stacks ----------------------------------------------------------------------------
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
    keys = line_keys if line_keys and len(line_keys) == len(lasers) else [f"{float(l.wavelength or 0):g}" for l in lasers]
    lines = [LineInfo(k, float(l.wavelength or 0), l.power, l.manufacturer or "", l.model or "", l.serial_number or "") for k, l in zip(keys, lasers)]
    mic = inst.microscope
    microscope = {"manufacturer": mic.manufacturer or "", "model": mic.model or "", "serial": mic.serial_number or "",
                  "type": str(_enum(mic.type)) if mic and mic.type is not None else ""} if mic else {}
    det = inst.detectors[0] if inst.detectors else None
    camera = {"vendor": det.manufacturer, "model": det.model, "serial": det.serial_number} if det else {}
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
    extra = {}
    for a in (ome.structured_annotations.map_annotations if ome.structured_annotations else []):
        if a.id in image_refs and a.id not in ours and a.namespace not in (NS_RUN, NS_NBO, NS_QC, NS_NBO_QC):
            extra[a.namespace or a.id] = {item.k: item.value for item in a.value.ms}
    return info, extra


def _parse_ome(text: str) -> tuple[m.OME | None, str]:
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


def _started(run: dict[str, Any] | None, path: Path) -> datetime:
    try:
        return datetime.fromisoformat(str((run or {})["started_utc"]))
    except (KeyError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def info_from_run(run: dict[str, Any] | None, path: Path) -> InstrumentInfo:
    """What the runner's InstrumentInfo held, from run.json alone (the station file's text and the
    devices' identities it records), the pixel size from the TIFF's resolution tags and the specimen
    from the journal: for a stack whose XML is lost. Unknown parts are left empty."""
    import yaml

    run = run or {}
    try:
        station = yaml.safe_load(run.get("station", {}).get("text") or "") or {}
    except yaml.YAMLError:
        station = {}
    inst = station.get("instrument") if isinstance(station, dict) and isinstance(station.get("instrument"), dict) else {}
    devices = run.get("devices") if isinstance(run.get("devices"), dict) else {}

    def device(role: str) -> dict[str, Any]:
        return next((d for d in devices.values() if isinstance(d, dict) and d.get("role") == role), {})

    lines = []
    for key in sorted(run.get("protocol", {}).get("plan", {}).get("lines", []) or [], key=lambda k: float(k) if _float(k) is not None else 0.0):
        d = device(f"laser {key} nm")
        details = d.get("details") or {}
        lines.append(LineInfo(str(key), _float(details.get("wavelength_nm")) or _float(str(key)) or 0.0, _float(details.get("nominal_power_mw")),
                              d.get("vendor", ""), d.get("model", ""), d.get("serial", "")))
    cam = device("camera")
    mic = inst.get("microscope") if isinstance(inst.get("microscope"), dict) else {}
    objective = next((o for o in inst.get("objectives") or [] if isinstance(o, dict) and o.get("id") == inst.get("objective_in_use")), None)
    pixel_um = 1.0
    try:
        with tifffile.TiffFile(path) as tif:
            num, den = tif.pages[0].tags["XResolution"].value  # type: ignore[union-attr]
            pixel_um = 1e4 * den / num if num else 1.0  # the writer's resolution: pixels per cm
    except Exception:
        pass
    software = run.get("software") if isinstance(run.get("software"), dict) else {}
    protocol = run.get("protocol", {})
    st = run.get("station", {})
    git = software.get("git") if isinstance(software.get("git"), dict) else {}
    nbo = {"Microscope.Stand.Type": mic.get("type", ""), "Station.Name": st.get("name", ""), "Station.Simulated": str(bool(st.get("simulated")))}
    meter = device("power meter")
    if meter:
        location = (station.get("roles") or {}).get("power_meter", {}) if isinstance(station.get("roles"), dict) else {}
        nbo.update({"PowerMeter.Location": location.get("location", "") if isinstance(location, dict) else "",
                    "PowerMeter.Model": meter.get("model", ""), "PowerMeter.SerialNumber": meter.get("serial", ""),
                    "PowerMeter.Sensor": (meter.get("details") or {}).get("sensor", ""),
                    "PowerMeter.SensorSerialNumber": (meter.get("details") or {}).get("sensor_serial", "")})
    specimen = next((r.get("sample") for r in reversed(_journal_records(path.parent / "journal.jsonl")) if r.get("type") == "specimen"), None)
    if specimen:  # the runner's is the last specimen step's
        nbo["Specimen"] = str(specimen)
    return InstrumentInfo(
        microscope={k: str(mic.get(k, "")) for k in ("manufacturer", "model", "type", "serial")},
        lines=lines, camera={k: cam.get(k, "") for k in ("vendor", "model", "serial")} if cam else {},
        objective=objective, filters=[f for f in inst.get("filters") or [] if isinstance(f, dict)],
        pixel_size_um=pixel_um, bit_depth=int(_float((cam.get("details") or {}).get("bit_depth")) or 16),
        run={"RunId": run.get("run_id", ""), "Protocol": protocol.get("id", ""), "ProtocolTitle": protocol.get("title", ""),
             "ProtocolVersion": protocol.get("version", ""), "ProtocolSHA256": protocol.get("sha256", ""),
             "Station": st.get("name", ""), "StationSHA256": st.get("sha256", ""), "ToolVersion": software.get("version", ""),
             "GitCommit": git.get("commit", "") if git else "", "Operator": run.get("operator", ""),
             "MetadataRebuilt": "from the pages, the frame log and run.json (the file's own XML was lost)"},
        nbo=nbo,
    )


def _grid_placeholder_pages(path: Path, unlogged: list[int], by_ifd: dict[int, tuple[PlaneInfo, ChannelInfo | None]],
                            never_written: list[int]) -> int:
    """How many of the last pages are the all-zero placeholders ``finalize`` writes to complete the
    C x T grid (they have no frame log row): 0 unless every page without a row comes after every
    logged one, is all zero, and they are not more than the grid lacks."""
    if not unlogged or never_written or not by_ifd:
        return 0
    first = len(by_ifd)
    if sorted(by_ifd) != list(range(first)) or unlogged != list(range(first, first + len(unlogged))):
        return 0
    present = {(p.c, p.t) for p, _ in by_ifd.values()}
    size_t = max(t for _, t in present) + 1
    lacking = sum(1 for c in {c for c, _ in present} for t in range(size_t) if (c, t) not in present)
    if len(unlogged) > lacking:
        return 0
    try:
        with tifffile.TiffFile(path) as tif:
            if any(tif.pages[k].asarray().any() for k in unlogged):  # type: ignore[union-attr]
                return 0
    except Exception:
        return 0
    return len(unlogged)


def _planned_order(run: dict[str, Any] | None) -> dict[str, list[tuple[int, int, Any]]]:
    """Per stack, every planned frame in acquisition order: (c, t, acquire action), from the protocol
    text in run.json expanded again for the run's laser lines."""
    from harness.protocol.plan import expand
    from harness.protocol.protocol_file import read_protocol_file

    if not run:
        return {}
    protocol = run.get("protocol", {})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "protocol.yaml"
        path.write_text(protocol["text"], encoding="utf-8")
        parsed, doc = read_protocol_file(path)
        plan = expand(parsed, doc, list(protocol["plan"]["lines"]))
    out: dict[str, list[tuple[int, int, Any]]] = {}
    for action in plan.actions:
        if action.kind == "acquire":
            out.setdefault(action.params.stack, []).extend((c, t, action) for c, t in action.frames)
    return out


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _plane(row: dict[str, str]) -> PlaneInfo:
    plane = PlaneInfo(int(row["c"]), int(row["t"]), -1, _float(row.get("time_s")), _float(row.get("exposure_s")),  # type: ignore[arg-type]
                      _float(row.get("x_um")), _float(row.get("y_um")), _float(row.get("z_um")))
    if row.get("status") != "ok":
        plane.status, plane.note = "missing", row.get("error") or "acquisition failed"
    return plane


def _channel(row: dict[str, str]) -> ChannelInfo:
    setpoints: dict[str, float] = {}
    if row.get("channel") != "dark":
        for key, value in zip((row.get("lines_on") or "").split("+"), (row.get("setpoint_mW") or "").split("+")):
            if (mw := _float(value)) is not None:
                setpoints[key] = mw
    binning = _float(row.get("binning"))
    return ChannelInfo(row["channel"], setpoints, gain_db=_float(row.get("gain_db")), offset=_float(row.get("offset")),
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


def recover_stack(folder: Path, name: str, run: dict[str, Any] | None, columns: list[str]) -> StackResult:
    """Make ``<name>.ome.tif`` describe exactly its complete pages (see the module's doc); its XML
    may be missing or unreadable (then rebuilt from run.json and the frame log, ``info_from_run``)."""
    with quiet_tifffile():  # a broken tag 270 is what we are here for; the details say so once
        return _recover_stack(folder, name, run, columns)


def _recover_stack(folder: Path, name: str, run: dict[str, Any] | None, columns: list[str]) -> StackResult:
    path = inside(folder, f"{name}.ome.tif")
    frames_csv = inside(folder, f"{name}_frames.csv")
    result = StackResult(name, None)
    rows = _read_rows(frames_csv) if frames_csv.is_file() else []
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
            _rewrite_frame_log(frames_csv, rows, columns)
        return result
    planned, unreadable = _parse_ome(scan.description)
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
    grid_pages = _grid_placeholder_pages(path, unlogged, by_ifd, never_written)
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
                channel = stack_plan.channels[c]
                previous = next((r for r in reversed(rows) if r.get("channel") == channel and r.get("status") == "ok"), None)
                row = {"frame": str(len(rows)), "stack": name, "channel": channel, "c": str(c), "t": str(t), "ifd": str(k),
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
    size_t = max(t for _, t in present) + 1
    for c in sorted({c for c, _ in present}):
        for t in range(size_t):
            if (c, t) not in present:
                extra_planes.append(PlaneInfo(c, t, -1, 0.0, 0.0, None, None, None, "not acquired", INTERRUPTED_NOTE))

    if rows_changed:  # before the stack: a recovery interrupted in between finds the same answer again
        _rewrite_frame_log(frames_csv, rows, columns)
    if planned is not None:
        info, extra = info_from_ome(planned, run["protocol"]["plan"]["lines"] if run else None)
        acquired = planned.images[0].acquisition_date or datetime.now(timezone.utc)
    else:
        info, extra, acquired = info_from_run(run, path), {}, _started(run, path)
    tmp = path.with_name(path.name + ".tmp")
    from harness.records.ome_writer import OmeTiffStack  # the OME model costs about a second of start-up: loaded only where an image stack is handled

    stack = OmeTiffStack(tmp, stack_plan, info, acquired)
    stack.file_uuid = ((planned.uuid if planned else None) or "").removeprefix("urn:uuid:") or stack.file_uuid
    stack.annotations = extra
    try:
        with tifffile.TiffFile(path) as tif:
            for k in order_ifds:
                plane, channel = by_ifd[k]
                image = tif.pages[k].asarray() if k < copy_pages else np.zeros(scan.shape, dtype=np.uint16)  # type: ignore[arg-type]
                stack.write(image, plane, channel)
                assert plane.ifd == k, (plane.ifd, k)
        for plane in extra_planes:
            stack.write(np.zeros(scan.shape, dtype=np.uint16), plane)  # type: ignore[arg-type]
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
        return StackPlan(name, list(stacks[name]["channels"]), dict(stacks[name]["frames"]))
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
    return StackPlan(name, channels, frames)


def _stack_entry(path: Path, name: str, run: dict[str, Any] | None, ome: m.OME | None, stack_plan: StackPlan | None = None,
                 real: int | None = None, placeholders: int | None = None) -> dict[str, Any]:
    if real is None or placeholders is None:
        assert ome is not None
        planes = ome.images[0].pixels.planes
        real = sum(1 for p in planes if not p.annotation_refs)
        placeholders = len(planes) - real
        stack_plan = _stack_plan(run, name, ome)
    assert stack_plan is not None
    return {"kind": "ome_tiff", "stack": name, "frames": real, "placeholder_pages": placeholders,
            "planned": sum(stack_plan.frames_per_channel.values()), "sha256": sha256_file(path)}


# --- the whole folder ------------------------------------------------------------------------------
def _stacks_of(folder: Path, run: dict[str, Any] | None) -> list[str]:
    names = set((run or {}).get("protocol", {}).get("plan", {}).get("stacks", {}))
    for p in folder.glob("*_frames.csv"):
        names.add(p.name.removesuffix("_frames.csv"))
    return sorted(n for n in names if not plain_name_problem(n) and ((folder / f"{n}.ome.tif").exists() or (folder / f"{n}_frames.csv").exists()))


def recover_run(folder: str | Path, force: bool = False, store: bool = False, db_url: str | None = None) -> RecoveryReport:
    """Finish an interrupted run folder (see the module's doc); never raises for a bad folder, the
    report says what happened. ``force``: also a run whose owner is on another host or unknown.
    ``store``: the finishing records the run in the results store ``db_url``."""
    folder = Path(folder)
    report = RecoveryReport(folder, "failed")
    if not folder.is_dir():
        report.error = "not a folder"
        return report
    try:
        with _folder_lock(folder) as mine:
            if not mine:
                report.outcome, report.reason = "left alone", "another process is recovering it"
                return report
            _recover(folder, force, report, store, db_url)
    except Exception as exc:  # the folder is left as it was where the failing step had not begun
        log.exception("recovering %s", folder)
        report.outcome, report.error = "failed", f"{type(exc).__name__}: {exc}"
    return report


def _finish(folder: Path, report: RecoveryReport, store: bool, db_url: str | None, reanalyse: bool = False) -> None:
    """The finishing pipeline (``harness.finishing``), its outcome in the report."""
    from harness.finishing.pipeline import finish
    from harness.records.endings import FINISHING

    run = _read_run(folder) or {}
    analysable = "text" in run.get("protocol", {})
    if not analysable:
        report.details.append("not analysed: run.json has no protocol (it was rebuilt from the journal)")
    if run.get("status") == FINISHING:  # this process finishes it now: a kill here leaves it to the next recover
        run["process"] = _this_process()
        replace_json(inside(folder, "run.json"), run)
        from harness.common import kill_points

        kill_points.reached("recovery:before_finishing")
    done = finish(folder, store=store, db_url=db_url, analysable=analysable, reanalyse=reanalyse)
    report.status, report.reason, report.stored = done.status, done.reason, done.stored
    report.verdict = str((done.results or {}).get("verdict", "")) if analysable else ""
    if done.analysis_error:
        report.analysis_error = done.analysis_error
        report.details.append(done.analysis_error)
    report.outcome = "recovered"


def _this_process() -> dict[str, Any]:
    return {"pid": os.getpid(), "create_time": psutil.Process().create_time(), "hostname": socket.gethostname()}


def _recover(folder: Path, force: bool, report: RecoveryReport, store: bool = False, db_url: str | None = None) -> None:
    from harness.finishing.folder_state import unfinished
    from harness.records.endings import FINISHING
    from harness.run.runner import FRAME_COLUMNS

    run = _read_run(folder)
    if run is not None and run.get("status") not in ("running", FINISHING) and not unfinished(folder, run):
        report.status = str(run.get("status"))
        if repair_stacks(folder, run, report):  # a finished run with a stack whose XML was lost
            _finish(folder, report, store, db_url, reanalyse=True)
            return
        report.outcome, report.reason = "nothing to do", f"status {report.status}" + (", recovered before" if run.get("recovered_utc") else "")
        return
    candidate = examine(folder)
    if candidate is None:
        report.status = str((run or {}).get("status", ""))
        if run is not None:
            report.outcome, report.reason = "nothing to do", f"status {report.status}" + (", recovered before" if run.get("recovered_utc") else "")
        else:
            report.outcome, report.reason = "nothing to do", "not a run folder (no run.json, no journal)"
        return
    if candidate.owner == "alive" or (candidate.owner != "gone" and not force):
        report.outcome, report.reason = "left alone", candidate.detail
        return
    if run is not None and run.get("status") != "running":
        left = unfinished(folder, run)  # the acquisition had ended: only its finishing was cut off
        report.details.append("completed the finishing that was cut off (analysis, results store, manifest)" if left == "finishing"
                              else "wrote the missing manifest" + ("" if (folder / "results.json").is_file() else " (and analysed the run)"))
        repaired = repair_stacks(folder, run, report)  # a stack whose XML was lost too: its results are analysed anew
        _finish(folder, report, store, db_url, reanalyse=repaired)
        return

    details = report.details
    if remove_leftover(folder):  # the space a killed run held for its ending (disk_full.py)
        details.append(f"{RESERVE_NAME}: removed (the space the run held for its ending)")
    # 1. journal
    journal_path = folder / "journal.jsonl"
    dropped_journal = repair_journal(journal_path) if journal_path.is_file() else b""
    if dropped_journal:
        details.append(f"journal.jsonl: dropped a partial last line ({len(dropped_journal)} bytes)")
    records = _journal_records(journal_path)
    # 2. CSVs
    stacks = _stacks_of(folder, run)
    frame_logs = {f"{s}_frames.csv" for s in stacks}
    dropped_rows: dict[str, str] = {}
    for path in sorted(folder.glob("*.csv")):
        columns = FRAME_COLUMNS if path.name in frame_logs else SERIES_COLUMNS
        rows, dropped = repair_csv(path, columns)
        if dropped:
            dropped_rows[path.name] = _shown(dropped)
            details.append(f"{path.name}: dropped a partial last row ({len(dropped)} bytes); {rows} rows kept")
    # 3. stacks
    stack_entries: dict[str, dict[str, Any]] = {}
    for name in stacks:
        result = recover_stack(folder, name, run, FRAME_COLUMNS)
        details.extend(result.details)
        if result.entry:
            stack_entries[f"{name}.ome.tif"] = result.entry
    # files, as the runner lists them: power series, frame logs, stacks
    files: dict[str, Any] = {}
    frame_entries: dict[str, Any] = {}
    missing = 0
    series_header = (",".join(SERIES_COLUMNS) + "\r\n").encode("utf-8")
    for path in sorted(folder.glob("*.csv")):
        rows = _read_rows(path)
        missing += sum(1 for r in rows if r.get("status") == "missing")
        if path.name in frame_logs:
            frame_entries[path.name] = {"kind": "frame_log", "stack": path.name.removesuffix("_frames.csv"), "rows": len(rows), "sha256": sha256_file(path)}
        elif path.read_bytes()[: len(series_header)] == series_header:  # bytes: read_text would turn \r\n into \n
            files[path.name] = {"kind": "power_series", "series": path.stem, "rows": len(rows), "sha256": sha256_file(path)}
    files.update(frame_entries)
    files.update(stack_entries)

    # 4. the journal's own record of the recovery, then run.json
    recovered_utc = _now()
    last = next((r for r in reversed(records) if r.get("type") != "recovered"), None)
    run_end = next((r for r in reversed(records) if r.get("type") == "run_end"), None)
    journal = Journal(journal_path)  # appends (a folder without a journal gets one, with this record)
    journal.seq = max((r["seq"] for r in records if isinstance(r.get("seq"), int)), default=-1) + 1
    journal.write("recovered", None, sync=True, owner=candidate.detail, actions=list(details),
                  dropped_journal_tail=_shown(dropped_journal) if dropped_journal else None, dropped_csv_rows=dropped_rows or None)
    journal.close()
    if run_end is not None:
        status = str(run_end.get("status") or "interrupted")
        reason = (str(run_end.get("reason") or "") + "; " if run_end.get("reason") else "")
        reason += f"the run had ended, but its process ended before run.json was written; recovered {recovered_utc}"
    else:
        status = "interrupted"
        reason = f"the run process ended without finishing (killed or power loss); recovered {recovered_utc}"
    if run is None:
        run = _skeleton_run(folder, records)
        if (folder / "run.json").exists():
            os.replace(folder / "run.json", folder / "run.json.unreadable")
            details.append("run.json was unreadable: kept as run.json.unreadable; a new one has what the journal knows")
        else:
            details.append("no run.json (the run process ended before it wrote one): a new one has what the journal knows")
    ended = (last or {}).get("utc") or run.get("started_utc")
    # the acquisition's outcome; the status is final once finishing (analysis, store, manifest) is done
    run.update(status=FINISHING, acquisition={"status": status, "reason": reason}, reason="", ended_utc=ended, missing=missing,
               files=files, recovered_utc=recovered_utc)
    safe = next((r for r in reversed(records) if r.get("type") == "safe_state"), None)
    if safe is not None:  # the run got as far as its safe state: what it found (not confirmed: the outcome is unsafe)
        run["safe_state"] = {"confirmed": bool(safe.get("confirmed")), "failures": list(safe.get("failures") or [])}
    if isinstance(run.get("clock"), dict) and last and isinstance(last.get("t_s"), (int, float)):
        run["clock"]["elapsed_s"] = last["t_s"]
    run["recovery"] = {"utc": recovered_utc, "owner": candidate.detail, "actions": list(details)}
    replace_json(inside(folder, "run.json"), run)
    report.status, report.reason = status, reason
    # 5. finishing: analysis, the results store, the final status, the manifest
    _finish(folder, report, store, db_url)


def repair_stacks(folder: Path, run: dict[str, Any], report: RecoveryReport) -> bool:
    """A finished run whose stack's OME-XML is unreadable or does not describe its pages (a crash or
    a full disk during a metadata rewrite of an older version, or a finalize that could not finish):
    rebuild each such stack as recovery does (``recover_stack``), record it in the journal and in
    run.json (``files`` gets the new checksum, the old one kept as ``sha256_acquired``; ``repairs``
    lists what was done). False, and nothing touched, when every stack is whole."""
    from harness.run.runner import FRAME_COLUMNS

    damaged = []
    for name in _stacks_of(folder, run):
        path = inside(folder, f"{name}.ome.tif")
        problem = stack_problem(path) if path.is_file() else ""
        if problem:
            damaged.append((name, problem))
    if not damaged:
        return False
    details: list[str] = []
    files = run.setdefault("files", {})
    for name, problem in damaged:
        details.append(f"{name}.ome.tif: {problem}")
        result = recover_stack(folder, name, run, FRAME_COLUMNS)
        details.extend(result.details)
        if result.entry:
            old = files.get(f"{name}.ome.tif", {})
            entry = {**old, **result.entry, "sha256_acquired": old.get("sha256_acquired") or old.get("sha256") or result.entry["sha256"]}
            files[f"{name}.ome.tif"] = entry
        frames_csv = folder / f"{name}_frames.csv"
        if frames_csv.is_file() and f"{name}_frames.csv" in files:
            files[f"{name}_frames.csv"].update(rows=len(_read_rows(frames_csv)), sha256=sha256_file(frames_csv))
    utc = _now()
    journal_path = folder / "journal.jsonl"
    records = _journal_records(journal_path)
    journal = Journal(journal_path)
    journal.seq = max((r["seq"] for r in records if isinstance(r.get("seq"), int)), default=-1) + 1
    journal.write("repaired", None, sync=True, actions=list(details))
    journal.close()
    run.setdefault("repairs", []).append({"utc": utc, "actions": list(details)})
    replace_json(inside(folder, "run.json"), run)
    report.details.extend(details)
    report.reason = "stack metadata rebuilt"
    return True


def _journal_records(path: Path) -> list[dict[str, Any]]:
    """The journal's records (``read_journal``, but undisturbed by bytes that are not UTF-8)."""
    out = []
    if path.is_file():
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            record = parse_record(line)  # also the whole record after a fragment a full disk left
            if record is not None:
                out.append(record)
    return out


def _skeleton_run(folder: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json for a folder that has none: what the journal and the folder's name know."""
    start = next((r for r in records if r.get("type") == "run_start"), {})
    parts = folder.name.split("_")  # <stamp>_<protocol>_<station slug>_<run id[:8]>
    started = records[0].get("utc") if records else None
    if not started and parts and re.fullmatch(r"\d{8}T\d{6}Z", parts[0]):
        started = datetime.strptime(parts[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).isoformat()
    return {
        "run_id": start.get("run_id") or (parts[-1] if len(parts) >= 4 else folder.name),
        "protocol": {"id": start.get("protocol") or (parts[1] if len(parts) >= 4 else "")},
        "station": {"name": start.get("station") or (parts[2] if len(parts) >= 4 else "")},
        "started_utc": started or datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc).isoformat(),
    }


