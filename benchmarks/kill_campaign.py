"""Kill campaign: kill (SIGKILL, SIGTERM) run processes of every shipped protocol, ``recover``, and the
schedule service at random moments, then recover and check every run folder against its files.

    python -m benchmarks.kill_campaign [--kills N] [--seed S] [--keep DIR]

Each protocol first runs once unkilled (its duration sets the window the kill times are drawn
from; the run is checked like the others). Then, for N kills spread over the targets:

- ``run:<protocol>``: ``microscope-qc run`` killed (SIGKILL 2/3, SIGTERM 1/3) once its journal has
  grown to a random fraction of a whole run's, or (3 in 10) 0-0.4 s after its run.json stopped
  saying ``running`` (the finishing window);
- ``recover``: a run killed (SIGKILL) mid-run, then ``microscope-qc recover`` killed after a random
  delay, or 0-0.3 s after it first touched the folder;
- ``service``: ``microscope-qc schedule run`` with one job missed three hours ago (run at start),
  killed like a run (4 in 10 in the finishing window); the next service start recovers and retries.

Then the service is started once more and stopped, ``recover`` run to the end, and every folder
checked: run.json finished; each OME-TIFF readable with pages = OME-XML Planes = TiffData, its real
(not placeholder) pages = frame-log ``ok`` rows = journal ``frame`` records (one page more than the
journal may be a frame whose record the kill took); each power CSV's ``ok`` rows = journal readings
(one reading more in the journal may be a row the kill took); MANIFEST.sha256 present and verifying;
exactly one results-database row per run folder whose status is what the files say; for the service,
an outcome line per run folder it made, agreeing with the folder's outcome, and no due time run to
completion twice. Prints kills by target and moment, and the violations; exits 1 if there are any.

Everything (runs, database, locks, user data) lives in a private temporary folder.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import ROOT, station_file

PROTOCOLS = sorted((ROOT / "protocols").glob("*.yaml"))
TARGET_RUN_S = 3.0  # real seconds a protocol's run should take (time scale chosen from its estimate)
CAMERA = {"Camera": {"simulation": {"width_px": 640, "height_px": 512, "serial": "SIMKILL9"}}}  # the protocols' ROIs fit


@dataclass
class Campaign:
    base: Path
    rng: random.Random
    env: dict[str, str]
    station: Path
    runs: Path
    kills: list[dict[str, Any]] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    journal_bytes: dict[str, int] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def harness(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run_cmd(self, protocol: Path, runs: Path | None = None) -> subprocess.Popen[str]:
        return self.harness("run", str(protocol), "--station", str(self.station), "--runs-dir", str(runs or self.runs), "-q", "-y",
                            "--time-scale", f"{self.scales[protocol.stem]:g}", "--outcome", str(self.base / "outcome.json"))


def _scale(protocol: Path) -> float:
    from harness.protocol.plan import expand, lines_named
    from harness.protocol.protocol_file import read_protocol_file

    spec, doc = read_protocol_file(protocol)
    estimate = expand(spec, doc, lines_named(doc.data)).estimate_s
    from harness.station.station_file import MAX_TIME_SCALE

    return min(max(estimate / TARGET_RUN_S, 1.0), MAX_TIME_SCALE)


def _wait(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def _kill_after(proc: subprocess.Popen[str], delay: float, sig: int) -> bool:
    """Send ``sig`` after ``delay`` s unless the process ended first; True if it was sent."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        return True


def _kill_when(proc: subprocess.Popen[str], runs: Path, before: set[Path], rng: random.Random, sig: int,
               journal_bytes: int | None, timeout: float = 300) -> str:
    """Send ``sig`` at a moment of the run: once its journal has grown to a random size (``journal_bytes``:
    the size a whole run's journal reaches), or else (None) a random 0-0.4 s after its run.json stops
    saying ``running`` (the finishing window: results, report, manifest, database). Where the run was
    when the signal was sent (``_moment``), or "after exit"."""
    threshold = rng.uniform(0, 0.9 * journal_bytes) if journal_bytes else None
    extra = rng.uniform(0, 0.4)
    deadline = time.monotonic() + timeout
    folder: Path | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "after exit"
        if folder is None:
            folder = _new_folder(runs, before)
        elif threshold is not None:
            try:
                if (folder / "journal.jsonl").stat().st_size >= threshold:
                    break
            except OSError:
                pass
        else:
            try:
                if '"status": "running"' not in (folder / "run.json").read_text():
                    time.sleep(extra)
                    break
            except OSError:
                pass
        time.sleep(0.003)
    if proc.poll() is not None:
        return "after exit"
    moment = _moment(folder, True)  # what the files say just before the signal
    proc.send_signal(sig)
    return moment


def _kill_on_change(proc: subprocess.Popen[str], folder: Path, extra: float, sig: int, timeout: float = 120) -> bool:
    """Send ``sig`` ``extra`` s after any file of ``folder`` changed; True if sent."""
    def state() -> list[tuple[str, float, int]]:
        try:
            return sorted((p.name, p.stat().st_mtime, p.stat().st_size) for p in folder.iterdir())
        except OSError:
            return []

    first, deadline = state(), time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if state() != first:
            time.sleep(extra)
            break
        time.sleep(0.003)
    if proc.poll() is not None:
        return False
    proc.send_signal(sig)
    return True


def _moment(folder: Path | None, sent: bool) -> str:
    """Where a run was when it was killed, from its files."""
    if not sent:
        return "after exit"
    if folder is None:
        return "before its folder"
    try:
        run = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return "starting (no run.json)"
    types = [r.get("type") for r in _journal(folder)]
    if run.get("status") == "running":
        if "run_end" in types:
            return "finishing (run_end journaled)"
        if "safe_state" in types:
            return "finishing (safe state)"
        return "measuring"
    if not (folder / "MANIFEST.sha256").is_file():
        return "finishing (run.json written)"
    return "after its manifest"


def _journal(folder: Path) -> list[dict[str, Any]]:
    from harness.records.journal import read_journal

    path = folder / "journal.jsonl"
    return read_journal(path) if path.is_file() else []


def _new_folder(runs: Path, before: set[Path]) -> Path | None:
    new = sorted(set(runs.iterdir()) - before) if runs.is_dir() else []
    new = [p for p in new if p.is_dir() and not p.name.startswith(".")]
    return new[-1] if new else None


# --- the targets -----------------------------------------------------------------------------------
def calibrate(c: Campaign, protocols: list[Path]) -> None:
    for protocol in protocols:
        c.scales[protocol.stem] = _scale(protocol)
        t0 = time.monotonic()
        before = set(c.runs.iterdir()) if c.runs.is_dir() else set()
        code, err = _wait(c.run_cmd(protocol))
        c.durations[protocol.stem] = time.monotonic() - t0
        folder = _new_folder(c.runs, before)
        c.journal_bytes[protocol.stem] = (folder / "journal.jsonl").stat().st_size if folder and (folder / "journal.jsonl").is_file() else 1
        c.log.append(f"calibration {protocol.stem}: exit {code} in {c.durations[protocol.stem]:.1f} s (x{c.scales[protocol.stem]:g})")
        if code not in (0, 6):
            c.log.append(f"  {err.strip().splitlines()[-1] if err.strip() else ''}")


def kill_run(c: Campaign, protocol: Path) -> None:
    before = set(c.runs.iterdir()) if c.runs.is_dir() else set()
    sig = signal.SIGKILL if c.rng.random() < 2 / 3 else signal.SIGTERM
    finishing = c.rng.random() < 0.3
    proc = c.run_cmd(protocol)
    moment = _kill_when(proc, c.runs, before, c.rng, sig, None if finishing else c.journal_bytes[protocol.stem])
    code, _ = _wait(proc)
    folder = _new_folder(c.runs, before)
    c.kills.append({"target": f"run:{protocol.stem}", "signal": sig.name, "moment": moment,
                    "exit": code, "folder": str(folder) if folder else None})


def kill_recover(c: Campaign, protocols: list[Path]) -> None:
    protocol = c.rng.choice(protocols)
    before = set(c.runs.iterdir()) if c.runs.is_dir() else set()
    proc = c.run_cmd(protocol)
    _kill_when(proc, c.runs, before, c.rng, signal.SIGKILL, c.journal_bytes[protocol.stem])
    _wait(proc)
    folder = _new_folder(c.runs, before)
    sig = signal.SIGKILL if c.rng.random() < 2 / 3 else signal.SIGTERM
    delay = c.rng.uniform(1.0, 6.0)
    rec = c.harness("recover", "--runs-dir", str(c.runs))
    if folder is not None and c.rng.random() < 0.5:
        delay = -1.0  # at the moment it first changes the folder
        sent = _kill_on_change(rec, folder, c.rng.uniform(0, 0.3), sig)
    else:
        sent = _kill_after(rec, delay, sig)
    code, _ = _wait(rec)
    if not sent:
        moment = "after exit"
    elif folder is None:
        moment = "no folder to recover"
    else:
        run = _read(folder / "run.json") or {}
        recovered = any(r.get("type") == "recovered" for r in _journal(folder))
        moment = ("before touching the folder" if not recovered and run.get("status") == "running" else
                  "journal done, run.json not" if run.get("status") == "running" else
                  "run.json done, manifest not" if not (folder / "MANIFEST.sha256").is_file() else "after its manifest")
    c.kills.append({"target": "recover", "signal": sig.name, "delay_s": round(delay, 2), "moment": moment, "exit": code,
                    "folder": str(folder) if folder else None})


def _schedule(c: Campaign) -> Path:
    protocol = ROOT / "protocols" / "power-stability-short.yaml"
    path = c.base / "schedule.yaml"
    if not path.exists():
        station = yaml.safe_load(c.station.read_text())
        station.setdefault("simulation", {}).update(clock="real", time_scale=c.scales[protocol.stem])  # kills land at random real times
        (c.base / "service-station.yaml").write_text(yaml.safe_dump(station))
        path.write_text(yaml.safe_dump({
            "schedule": "kill-campaign", "timezone": "UTC", "station": "service-station.yaml", "runs_dir": "runs-service",
            "preconditions": {"free_disk": "10 MB"},
            "jobs": [{"name": "hourly", "protocol": str(protocol), "cron": "0 * * * *", "missed": "run_once",
                      "retries": {"attempts": 3, "delay": "1 min"}}],
        }, sort_keys=False))
    return path


def _miss_an_hour(c: Campaign, path: Path) -> None:
    """The job's last due time three hours back, so that the service runs it at once."""
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.scheduler import ScheduleState

    state = ScheduleState(read_schedule_file(path).state_dir)
    state.last_due["hourly"] = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0).isoformat()
    state.save()


def kill_service(c: Campaign) -> None:
    path = _schedule(c)
    _miss_an_hour(c, path)
    runs = c.base / "runs-service"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    sig = signal.SIGKILL if c.rng.random() < 1 / 2 else signal.SIGTERM
    finishing = c.rng.random() < 0.4
    proc = c.harness("schedule", "run", str(path))
    runs.mkdir(parents=True, exist_ok=True)
    moment = _kill_when(proc, runs, before, c.rng, sig, None if finishing else c.journal_bytes["power-stability-short"])
    code, _ = _wait(proc)
    folder = _new_folder(runs, before)
    time.sleep(0.5)  # a run process the service started ends with it
    c.kills.append({"target": "service", "signal": sig.name, "moment": moment, "exit": code, "folder": str(folder) if folder else None})


def settle_service(c: Campaign) -> None:
    """Start the service once more (it recovers and retries), let it finish what is due, stop it."""
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.scheduler import ScheduleState

    path = _schedule(c)
    state_dir = read_schedule_file(path).state_dir
    proc = c.harness("schedule", "run", str(path))
    deadline, quiet_since, last = time.monotonic() + 120, time.monotonic(), -1
    import psutil

    while time.monotonic() < deadline:
        time.sleep(0.5)
        n = len(ScheduleState(state_dir).outcomes())
        busy = proc.poll() is None and bool(psutil.Process(proc.pid).children())
        if n != last or busy:
            last, quiet_since = n, time.monotonic()
        elif time.monotonic() - quiet_since > 6:
            break
    proc.send_signal(signal.SIGTERM)
    _wait(proc, 60)


# --- the checks ------------------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def check_folder(folder: Path, db: dict[str, list[Any]], counts: collections.Counter[str]) -> list[tuple[str, str]]:
    import tifffile
    from ome_types import from_xml

    from harness.records.endings import of_folder

    bad: list[tuple[str, str]] = []
    run = _read(folder / "run.json")
    if run is None:
        return [("no readable run.json", folder.name)]
    if run.get("status") == "running":
        bad.append(("run.json still running", folder.name))
    records = _journal(folder)
    for stack in sorted(folder.glob("*.ome.tif")):
        name = stack.name.removesuffix(".ome.tif")
        if not (folder / f"{name}_frames.csv").is_file():
            continue  # e.g. a flat-field correction image the analysis wrote
        try:
            with tifffile.TiffFile(stack) as tif:
                pages = len(tif.pages)
                px = from_xml(tif.ome_metadata).images[0].pixels
        except Exception as exc:
            bad.append(("stack unreadable", f"{folder.name}/{stack.name}: {type(exc).__name__}: {str(exc)[:80]}"))
            continue
        real = sum(1 for p in px.planes if not p.annotation_refs)
        if not pages == len(px.planes) == len(px.tiff_data_blocks):
            bad.append(("pages != planes", f"{folder.name}/{stack.name}: {pages} pages, {len(px.planes)} Planes, {len(px.tiff_data_blocks)} TiffData"))
        journal_frames = sum(1 for r in records if r.get("type") == "frame" and r.get("stack") == name)
        logged = sum(1 for r in _rows(folder / f"{name}_frames.csv") if r.get("status") == "ok")
        counts["frames"] += real
        if logged != real or not 0 <= real - journal_frames <= 1:
            bad.append(("frames disagree", f"{folder.name}/{stack.name}: {real} frame pages, {logged} logged ok, {journal_frames} in the journal"))
    for csv_path in sorted(folder.glob("*.csv")):
        if csv_path.name.endswith("_frames.csv"):
            continue
        rows = {int(r["sample"]): r for r in _rows(csv_path) if r.get("status") == "ok" and r.get("sample", "").isdigit()}
        readings = {r.get("sample"): r for r in records if r.get("type") == "reading" and r.get("series") == csv_path.stem}
        counts["readings"] += len(rows)
        extra_rows = sorted(set(rows) - set(readings))
        extra_readings = sorted(set(readings) - set(rows))
        differ = [k for k in set(rows) & set(readings)
                  if abs(float(rows[k]["power_W"]) - float(readings[k]["power_w"])) > 1e-9 * max(abs(float(readings[k]["power_w"])), 1e-12)]
        if extra_rows or len(extra_readings) > 1 or differ:
            bad.append(("csv vs journal", f"{folder.name}/{csv_path.name}: rows without reading {extra_rows[:3]}, "
                                          f"readings without row {extra_readings[:3]}, values differ {differ[:3]}"))
    manifest = folder / "MANIFEST.sha256"
    if not manifest.is_file():
        bad.append(("no manifest", folder.name))
    else:
        listed = {}
        for line in manifest.read_text().splitlines():
            digest, _, name = line.partition("  ")
            listed[name] = digest
        for name, digest in listed.items():
            path = folder / name
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                bad.append(("manifest does not verify", f"{folder.name}/{name}"))
        unlisted = [p.name for p in folder.iterdir() if p.is_file() and p.name not in listed and p.name != "MANIFEST.sha256"
                    and not p.name.endswith(".tmp")]
        if unlisted:
            bad.append(("files not in manifest", f"{folder.name}: {unlisted[:4]}"))
    rows = db.get(str(run.get("run_id")), [])
    if len(rows) != 1:
        bad.append(("database rows != 1", f"{folder.name}: {len(rows)} rows"))
    else:
        expected = of_folder(run, _read(folder / "results.json"))
        if rows[0].status != expected:
            bad.append(("database status != files", f"{folder.name}: database {rows[0].status}, files {expected}"))
    return bad


def check_service(c: Campaign, counts: collections.Counter[str]) -> list[tuple[str, str]]:
    from harness.records.endings import COMPLETED, of_folder
    from harness.unattended.schedule_file import read_schedule_file
    from harness.unattended.scheduler import ScheduleState

    path = c.base / "schedule.yaml"
    if not path.exists():
        return []
    outcomes = ScheduleState(read_schedule_file(path).state_dir).outcomes()
    counts["service outcome lines"] += len(outcomes)
    by_folder = collections.defaultdict(list)
    for o in outcomes:
        if o.get("folder"):
            by_folder[str(Path(o["folder"]).resolve())].append(o)
    bad = []
    runs = c.base / "runs-service"
    for folder in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if runs.is_dir() else []:
        lines = by_folder.get(str(folder.resolve()), [])
        run = _read(folder / "run.json") or {}
        expected = of_folder(run, _read(folder / "results.json")) if run else "?"
        if not lines:
            bad.append(("no outcome line", f"{folder.name} ({expected})"))
        elif lines[-1].get("outcome") != expected:
            bad.append(("service outcome != files", f"{folder.name}: service {lines[-1].get('outcome')}, files {expected}"))
    done = collections.Counter((o["job"], o["due"]) for o in outcomes if o.get("outcome") == COMPLETED)
    for (job, due), n in done.items():
        if n > 1:
            bad.append(("due time completed twice", f"{job} due {due}: {n} completed runs"))
    return bad


def check_all(c: Campaign) -> tuple[list[tuple[str, str]], collections.Counter[str]]:
    from harness.store.results_store import ResultsStore

    counts: collections.Counter[str] = collections.Counter()
    with ResultsStore(c.env["MICROSCOPE_QC_DB"]) as store:
        records = store.history()
    db: dict[str, list[Any]] = collections.defaultdict(list)
    for r in records:
        db[r.run_id].append(r)
    bad: list[tuple[str, str]] = []
    folders = []
    for runs in (c.runs, c.base / "runs-service"):
        if runs.is_dir():
            folders += sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    counts["run folders"] = len(folders)
    for folder in folders:
        bad += check_folder(folder, db, counts)
    bad += check_service(c, counts)
    return bad, counts


# --- the campaign ----------------------------------------------------------------------------------
def campaign(kills: int, seed: int, base: Path, protocols: list[Path] = PROTOCOLS, out: Any = print) -> int:
    rng = random.Random(seed)
    (base / "data").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XDG_DATA_HOME": str(base / "data"), "MICROSCOPE_QC_DB": f"sqlite:///{(base / 'results.sqlite').as_posix()}",
           "MICROSCOPE_QC_LOCK_DIR": str(base / "locks"), "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("XDG_DATA_HOME", "MICROSCOPE_QC_DB", "MICROSCOPE_QC_LOCK_DIR")})
    station = station_file({"devices": CAMERA}, base)
    c = Campaign(base, rng, env, station, base / "runs")
    t0 = time.monotonic()
    calibrate(c, sorted(set(protocols) | {ROOT / "protocols" / "power-stability-short.yaml"}))  # the service's job
    targets = [f"run:{p.stem}" for p in protocols] + ["recover", "service"]
    plan = [targets[i % len(targets)] for i in range(kills)]
    rng.shuffle(plan)
    for target in plan:
        if target == "recover":
            kill_recover(c, protocols)
        elif target == "service":
            kill_service(c)
        else:
            kill_run(c, ROOT / "protocols" / f"{target.removeprefix('run:')}.yaml")
    if "service" in plan:
        settle_service(c)
    for runs in (c.runs, base / "runs-service"):
        if runs.is_dir():
            code, err = _wait(c.harness("recover", "--runs-dir", str(runs)))
            if code != 0:
                c.log.append(f"final recover of {runs.name}: exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    bad, counts = check_all(c)
    elapsed = time.monotonic() - t0
    (base / "kills.json").write_text(json.dumps({"kills": c.kills, "violations": bad, "counts": counts}, indent=2))

    for line in c.log:
        out(line)
    table = collections.Counter((k["target"], k["signal"], k["moment"]) for k in c.kills)
    out(f"\n{'TARGET':<28} {'SIGNAL':<8} {'MOMENT':<32} KILLS")  # kills.json in the work folder has each one
    for (target, sig, moment), n in sorted(table.items()):
        out(f"{target:<28} {sig:<8} {moment:<32} {n}")
    sent = sum(1 for k in c.kills if k["moment"] != "after exit")
    out(f"\n{len(c.kills)} kills ({sent} delivered to a live process) in {elapsed:.0f} s; {counts['run folders']} run folders, "
        f"{counts['frames']} frames, {counts['readings']} readings, {counts['service outcome lines']} service outcome lines")
    kinds = collections.Counter(kind for kind, _ in bad)
    if not bad:
        out("no violations")
        return 0
    out(f"{len(bad)} violations:")
    for kind, n in kinds.most_common():
        out(f"  {kind}: {n}")
        for k2, detail in bad:
            if k2 == kind:
                out(f"    {detail}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill_campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=12, help="kills after the calibration runs (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--protocols", help="comma-separated protocol ids (default: every shipped protocol)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    protocols = PROTOCOLS
    if args.protocols:
        protocols = [ROOT / "protocols" / f"{name.strip()}.yaml" for name in args.protocols.split(",")]
        unknown = [p.stem for p in protocols if not p.is_file()]
        if unknown:
            parser.error(f"no shipped protocol {', '.join(unknown)} (protocols: {', '.join(p.stem for p in PROTOCOLS)})")
    if args.keep:
        return campaign(args.kills, args.seed, args.keep, protocols)
    with tempfile.TemporaryDirectory(prefix="qc-kill-campaign-") as tmp:
        return campaign(args.kills, args.seed, Path(tmp), protocols)


if __name__ == "__main__":
    sys.exit(main())
