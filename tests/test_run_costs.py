"""The fixed costs after an image run's acquisition: the flat-field analysis streams its frames
(each page read once, the same results as numpy over all frames at once), and a run reads each
content of each file once for its hash (a file changed after it was hashed is hashed again)."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

import harness.records.provenance as provenance
from harness.analysis.flat_field_metrics import flat_field_metrics
from harness.analysis.frame_stats import frame_stats
from harness.analysis.pixel_quality import dark_defects, masked_blur, response_defects
from harness.finishing.results import analyse_run
from harness.finishing.runner import FinishingRunner as Runner
from harness.records.provenance import sha256_file
from harness.station.station import Station
from tests.conftest import ROOT, station_variant

SMALL_CAMERA = {"width_px": 96, "height_px": 64}


# --- streamed statistics -------------------------------------------------------------------------
def test_frame_stats_equal_numpy_over_all_frames() -> None:
    rng = np.random.default_rng(3)
    frames = [(30000 + rng.normal(0, 40, (40, 50))).astype(np.uint16) for _ in range(7)]
    stats = frame_stats(iter(frames))
    stacked = np.asarray(frames, dtype=np.float64)
    assert stats.count == 7
    assert np.array_equal(stats.mean, np.mean(stacked, axis=0))  # bit for bit
    # what the analysis used before: numpy's two-pass variance over all frames at once
    assert stats.variance_of_mean == pytest.approx(float(np.mean(np.var(stacked, axis=0, ddof=1))) / 7, rel=1e-12)
    assert stats.variance_of_mean == pytest.approx(40**2 / 7, rel=0.1)
    # float frames too (no exact sums): the mean as numpy's, the variance within rounding
    floats = [rng.normal(1e4, 3.0, (8, 9)) for _ in range(5)]
    f = frame_stats(floats)
    assert np.array_equal(f.mean, np.mean(np.asarray(floats), axis=0))
    assert f.variance_of_mean == pytest.approx(float(np.mean(np.var(np.asarray(floats), axis=0, ddof=1))) / 5, rel=1e-9)


def test_frame_stats_edge_cases() -> None:
    one = frame_stats([np.full((3, 4), 7, np.uint16)])
    assert one.count == 1 and one.variance_of_mean == 0.0
    assert np.array_equal(one.mean, np.full((3, 4), 7.0))
    constant = frame_stats([np.full((3, 4), 65535, np.uint16)] * 4)
    assert constant.variance_of_mean == 0.0  # never negative
    wrapping = frame_stats([np.ones((2, 2), np.uint16), np.zeros((2, 2), np.uint16), np.ones((2, 2), np.uint16)])
    assert wrapping.variance_of_mean == pytest.approx(1 / 3 / 3)  # 0 - 1 in uint16 would wrap to 65535
    with pytest.raises(ValueError, match="no frames"):
        frame_stats([])
    with pytest.raises(ValueError, match="a frame of 3x5 px among frames of 3x4 px"):
        frame_stats([np.zeros((3, 4)), np.zeros((3, 5))])


class PageReads:
    """Counts the pages tifffile decodes, per file and page index."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: collections.Counter[tuple[str, int]] = collections.Counter()
        original = tifffile.TiffPage.asarray
        counter = self

        def asarray(page: tifffile.TiffPage, *args: object, **kwargs: object) -> np.ndarray:
            counter.reads[(Path(page.parent.filehandle.path).name, page.index)] += 1
            return original(page, *args, **kwargs)

        monkeypatch.setattr(tifffile.TiffPage, "asarray", asarray)


def _run(tmp_path: Path, protocol: Path, serial: str) -> Path:
    station_file = station_variant(tmp_path, {"devices": {"Camera": {"simulation": {**SMALL_CAMERA, "serial": serial}}}}, f"{serial}.yaml")
    with Station.load(station_file) as station:
        outcome = Runner(station, protocol, runs_dir=tmp_path / "runs", quiet=True).run()
    assert outcome.status == "completed", outcome.reason
    return outcome.folder


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("flat"), ROOT / "protocols" / "flat-field.yaml", "SIMCOST1")


def test_flat_field_reads_each_frame_once_and_matches_the_mean_of_all_frames(flat_run: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / flat_run.name
    shutil.copytree(flat_run, folder)
    before = json.loads((folder / "results.json").read_text())
    with tifffile.TiffFile(folder / "flatfield.ome.tif") as tif:  # independently: every frame at once
        frames = np.asarray([p.asarray() for p in tif.pages], dtype=np.float64)
    rows = list(__import__("csv").DictReader((folder / "flatfield_frames.csv").open()))
    pages = PageReads(monkeypatch)
    data = analyse_run(folder)
    stack_reads = {i: n for (name, i), n in pages.reads.items() if name == "flatfield.ome.tif"}
    assert stack_reads == {i: 1 for i in range(50)}  # 10 dark + 4 lines x 10, each decoded once
    assert json.loads(json.dumps(data["results"])) == before["results"]  # re-analysis gives what the run's own analysis gave
    darks = frames[[i for i, r in enumerate(rows) if r["channel"] == "dark"]]
    dark = darks.mean(axis=0)
    hot = dark_defects(dark, len(darks), darks.var(axis=0, ddof=1))
    flat = [r for r in data["results"] if r["kind"] == "flat_field"]
    assert [r["subject"] for r in flat] == ["405 nm", "488 nm", "561 nm", "640 nm"]
    for r in flat:
        line = r["subject"].split()[0]
        lit = frames[[i for i, row in enumerate(rows) if row["channel"] == line]]
        # the same pixel-quality steps on all frames at once (nothing saturates in this run)
        signal = lit.mean(axis=0) - dark
        assert not (lit >= 4095).any() and not (darks >= 4095).any()
        noise = float(np.sqrt(np.mean(lit.var(axis=0, ddof=1)) / len(lit) + np.mean(darks.var(axis=0, ddof=1)) / len(darks)))
        excluded = hot.merged(response_defects(signal, noise, known=hot.mask)).mask
        expected, profiles = flat_field_metrics(masked_blur(signal, excluded), blur=False)
        assert r["frames"] == 10 and r["dark_frames"] == 10
        values = {k: v["value"] for k, v in r["metrics"].items()}
        assert values.pop("saturated_pixels") == 0 and values.pop("defect_pixels") == int(excluded.sum()) > 0
        assert values == pytest.approx({k: m.value for k, m in expected.items()}, rel=1e-12, abs=1e-9)
        assert {k: pytest.approx(v, rel=1e-12, abs=1e-9) for k, v in profiles.items()} == r["profiles"]


def test_a_dark_only_stack_has_no_pixel_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    protocol = tmp_path / "dark-only.yaml"
    protocol.write_text("protocol: dark-only\ntitle: dark frames only\nrequires: [camera]\nsteps:\n"
                        "  - acquire: {stack: darks, frames: 6, exposure: 10 ms, dark: true}\n")
    folder = _run(tmp_path, protocol, "SIMCOST2")
    pages = PageReads(monkeypatch)
    data = analyse_run(folder)
    assert not [k for k in pages.reads if k[0] == "darks.ome.tif"]
    assert data["results"] == [] and data["status"] == "analysed"


# --- each file hashed once per content -------------------------------------------------------------
class HashReads:
    """Counts the reads of files for their hash, per file name and content."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: collections.Counter[tuple[str, str]] = collections.Counter()
        original = provenance._sha256_read

        def read(path: Path) -> str:
            digest = original(path)
            self.reads[(Path(path).name, digest)] += 1
            return digest

        monkeypatch.setattr(provenance, "_sha256_read", read)

    def of(self, name: str) -> int:
        return sum(n for (file, _), n in self.reads.items() if file == name)


def test_a_run_reads_each_content_of_each_file_once_for_its_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = HashReads(monkeypatch)
    folder = _run(tmp_path, ROOT / "protocols" / "flat-field.yaml", "SIMCOST3")
    repeated = {key: n for key, n in hashes.reads.items() if n > 1}
    assert not repeated, f"hashed more than once: {repeated}"
    run = json.loads((folder / "run.json").read_text())
    stack = run["files"]["flatfield.ome.tif"]
    # the stack: once as acquired (run.json's sha256_acquired), once with the QC annotations inside
    assert hashes.of("flatfield.ome.tif") == 2
    assert {d for (f, d) in hashes.reads if f == "flatfield.ome.tif"} == {stack["sha256_acquired"], stack["sha256"]}
    assert hashes.of("flatfield_frames.csv") == 1
    # what was recorded is each file's content now (run.json's entries and the manifest)
    for line in (folder / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
        assert hashes.of(name) == 1 or name == "flatfield.ome.tif", name


def test_a_file_changed_after_hashing_is_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = HashReads(monkeypatch)
    path = tmp_path / "data.bin"
    path.write_bytes(b"a" * 1000)
    first = sha256_file(path)
    assert sha256_file(path) == first and hashes.of("data.bin") == 1  # unchanged: not read again
    # the same size, written at once after the hash (within the same tick of the file clock)
    with open(path, "r+b") as f:
        f.write(b"b")
    assert sha256_file(path) == hashlib.sha256(b"b" + b"a" * 999).hexdigest()
    # the same size and the old mtime put back (as a copy tool keeping times would): ctime shows it
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(b"c")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(path) == hashlib.sha256(b"c" + b"a" * 999).hexdigest()
    # replaced by another file of the same size (a rename over it)
    other = tmp_path / "other.bin"
    other.write_bytes(b"d" * 1000)
    other.replace(path)
    assert sha256_file(path) == hashlib.sha256(b"d" * 1000).hexdigest()
    assert hashes.of("data.bin") == 4


def test_a_file_being_written_while_hashed_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write during the read leaves a stat that differs from the one before: the digest (of
    whichever bytes were read) is not kept, and the next call reads the file again."""
    path = tmp_path / "growing.bin"
    path.write_bytes(b"x" * 100)
    original = provenance._sha256_read

    def read_while_written(p: Path) -> str:
        digest = original(p)
        with open(p, "ab") as f:
            f.write(b"y")
        return digest

    monkeypatch.setattr(provenance, "_sha256_read", read_while_written)
    sha256_file(path)
    monkeypatch.setattr(provenance, "_sha256_read", original)
    assert sha256_file(path) == hashlib.sha256(b"x" * 100 + b"y").hexdigest()
