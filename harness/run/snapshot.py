"""``snap --out``: one frame saved as an OME-TIFF like a run's stacks (the same writer and metadata:
Instrument with the station's devices, pixel size, the channel's excitation and set point, the
plane's exposure and stage position), with the command and station as provenance instead of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.common.errors import UserError
from harness.protocol.plan import StackPlan
from harness.records.image_records import ChannelInfo, PlaneInfo
from harness.records.ome_writer import OmeTiffStack
from harness.records.provenance import default_operator, git_commit, sha256_file
from harness.run.instrument_info import instrument_info

OME_SUFFIXES = (".ome.tif", ".ome.tiff")


def ome_tiff_path(path: Path) -> Path:
    """The file ``--out`` names, checked before anything is snapped: ``frame.ome.tif`` as given;
    ``frame.tif``/``frame.tiff``/``frame`` become ``frame.ome.tif``. Not a folder; its folder exists."""
    name = path.name
    if not name.lower().endswith(OME_SUFFIXES):
        stem = name[: -len(path.suffix)] if path.suffix.lower() in (".tif", ".tiff") else name
        path = path.with_name(stem + ".ome.tif")
    if path.is_dir():
        raise UserError(f"--out {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: the folder {path.parent} does not exist")
    return path


def write_snapshot(station: Any, image: np.ndarray, path: Path, lit: dict[str, float], exposure_ms: float) -> Path:
    """Write ``image`` (taken with the lines ``lit``: key -> set point in mW) to ``path`` made an
    OME-TIFF name; returns the path written."""
    path = ome_tiff_path(path)
    git = git_commit()
    info = instrument_info(station, run={
        "Command": "microscope-qc snap", "Station": station.name, "StationSHA256": sha256_file(station.path),
        "ToolVersion": __version__, "GitCommit": git["commit"] if git else "", "Operator": default_operator(),
    })
    channel = "+".join(sorted(lit, key=float)) or "dark"
    name = path.name[: -len(next(x for x in OME_SUFFIXES[::-1] if path.name.lower().endswith(x)))]
    stack = OmeTiffStack(path, StackPlan(name, [channel], {channel: 1}), info, station.clock.utc())
    pos: dict[str, float] = {}
    if station.xy_stage is not None:
        pos["x"], pos["y"] = station.xy_stage.position_um()
    if station.z_drive is not None:
        pos["z"] = station.z_drive.position_um()
    stack.write(image, PlaneInfo(0, 0, -1, 0.0, exposure_ms / 1000, pos.get("x"), pos.get("y"), pos.get("z")), ChannelInfo(channel, dict(lit)))
    stack.finalize()
    return path
