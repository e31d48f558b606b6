"""Many writers into one results database at once: ``--writers`` processes record and import clones of
real run folders into one fresh database, first use included (the schema is made by whichever
process comes first), with overlapping folders (each run is given to ``--overlap`` writers) and a
second pass that imports everything again. Prints writers, runs, rows and seconds; checks that the
database holds each run once with all its metrics.

    python -m benchmarks.store_writers --db postgresql://... --template RUN_FOLDER [--template ...] [--writers 8] [--runs 120]

Half of the writers record each run the way a finished run is recorded (``record_run``: a store
opened per run), the other half import through one open store (``microscope-qc import``).
``tests/test_store_concurrency.py`` uses ``clone_runs`` and ``run_writers``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clone_runs(templates: list[Path], dest: Path, count: int) -> list[Path]:
    """``count`` run folders (run.json and results.json only: what a record reads), each a template's
    copy with its own run_id."""
    folders = []
    for n in range(count):
        template = templates[n % len(templates)]
        run_id = str(uuid.UUID(int=(0xC1 << 120) + n))
        folder = dest / f"clone{n:04d}_{run_id[-8:]}"
        folder.mkdir(parents=True)
        for name in ("run.json", "results.json"):
            data = json.loads((template / name).read_text(encoding="utf-8"))
            data["run_id"] = run_id
            (folder / name).write_text(json.dumps(data), encoding="utf-8")
        folders.append(folder)
    return folders


def assignments(folders: list[Path], writers: int, overlap: int, seed: int = 1) -> list[list[Path]]:
    """Each folder to ``overlap`` writers; even writers in the folders' order, odd ones shuffled."""
    lists: list[list[Path]] = [[] for _ in range(writers)]
    for j, folder in enumerate(folders):
        for k in range(overlap):
            lists[(j + k * max(1, writers // overlap)) % writers].append(folder)
    rng = random.Random(seed)
    for i in range(1, writers, 2):
        rng.shuffle(lists[i])
    return lists


@dataclass
class Figures:
    writers: int
    runs: int
    imports: int  # import attempts, re-imports included
    runs_rows: int
    metrics_rows: int
    seconds: float
    said: dict[str, int]

    def line(self, db: str) -> str:
        return (f"{db}: {self.writers} writers, {self.runs} runs ({self.imports} imports, re-imports included), rows: runs {self.runs_rows}, "
                f"metrics {self.metrics_rows}; {self.seconds:.1f} s; said: {self.said}")


def run_writers(url: str, lists: list[list[Path]], passes: int = 2, work: Path | None = None) -> tuple[Figures, list[str]]:
    """Start one process per list, release them at once, wait; (figures, errors)."""
    import sqlalchemy as sa  # the test process reads the counts; the writers are processes of their own

    from harness.store.results_store import ResultsStore, metrics, runs

    work = work or Path(tempfile.mkdtemp(prefix="qc-writers-"))
    go = work / "go"
    procs = []
    for i, folders in enumerate(lists):
        listing = work / f"writer{i}.txt"
        listing.write_text("\n".join(map(str, folders)), encoding="utf-8")
        mode = "record" if i % 2 == 0 else "import"
        procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks.store_writers", "--worker", url, str(listing), str(go), mode, str(passes)],
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    time.sleep(0.5)
    t = time.perf_counter()
    go.touch()
    errors, said = [], {}
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode != 0:
                errors.append(f"writer exit {p.returncode}: {err.strip()[-2000:]}")
                continue
            report = json.loads(out.strip().splitlines()[-1])
            errors.extend(report["errors"])
            for key, value in report["said"].items():
                said[key] = said.get(key, 0) + value
    finally:
        for p in procs:
            p.kill()
    seconds = time.perf_counter() - t
    with ResultsStore(url) as store, store.engine.connect() as conn:
        n_runs = conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one()
        n_metrics = conn.execute(sa.select(sa.func.count()).select_from(metrics)).scalar_one()
    distinct = len({f for folders in lists for f in folders})
    return Figures(len(lists), distinct, sum(len(f) for f in lists) * passes, n_runs, n_metrics, seconds, said), errors


def worker(url: str, listing: Path, go: Path, mode: str, passes: int) -> None:
    """One writer: wait for the start, then record (or import) each folder, ``passes`` times."""
    from harness.common.errors import UserError
    from harness.store.results_store import ResultsStore, record_run

    folders = listing.read_text(encoding="utf-8").split("\n")
    deadline = time.monotonic() + 300
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    said: dict[str, int] = {}
    errors: list[str] = []
    for _ in range(passes):
        try:
            if mode == "record":
                for folder in folders:
                    word = record_run(folder, url)
                    said[word] = said.get(word, 0) + 1
            else:
                with ResultsStore(url) as store:
                    for folder in folders:
                        word = store.import_run(folder)
                        said[word] = said.get(word, 0) + 1
        except UserError as exc:
            errors.append(f"{mode}: {exc}")
    print(json.dumps({"said": said, "errors": errors}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=5, metavar=("URL", "LIST", "GO", "MODE", "PASSES"), help=argparse.SUPPRESS)
    ap.add_argument("--db", help="a fresh database (its tables are made by the writers)")
    ap.add_argument("--template", type=Path, action="append", default=[], help="a real run folder to clone (repeat)")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--runs", type=int, default=120)
    ap.add_argument("--overlap", type=int, default=3, help="writers each run is given to")
    args = ap.parse_args()
    if args.worker:
        url, listing, go, mode, passes = args.worker
        worker(url, Path(listing), Path(go), mode, int(passes))
        return
    if not args.db or not args.template:
        ap.error("--db and --template are needed")
    work = Path(tempfile.mkdtemp(prefix="qc-writers-"))
    try:
        folders = clone_runs(args.template, work / "runs", args.runs)
        figures, errors = run_writers(args.db, assignments(folders, args.writers, args.overlap), work=work)
        print(figures.line(args.db))
        for e in errors:
            print("ERROR", e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
