"""The z-stacks of a run folder's image stack, as the bead analyses (PSF, co-registration) read them,
and what they need besides the pixels: the objective (NA, immersion index), the emission wavelength of
each line, the pixel size, the saturation level, the pixel quality of the planes.

Layout (harness z-stacks): frame-log rows with the analysis' ``tag``; a row's ``t`` is its plane's
linear index in its channel (z-stack k, plane z: t = k * nz + z, nz = OME Pixels SizeZ), ``z_um`` the
Z drive's reported position of the plane, ``ifd`` its page, ``status`` ``ok`` or ``missing`` (a missing
plane is left out of its z-stack). Raises ``BadInput`` for a stack without a pixel size or without an
objective NA (neither in run.json ``plan.optics`` nor in the OME Objective)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from lxml import etree

from harness.analyses.stack_pages import page, pixels_attribute, stack_saturation
from harness.analysis.pixel_quality import PixelQuality, SaturationLevel, assess, fill_excluded, saturated_mask, spike_defects
from harness.common.errors import BadInput
from harness.common.optics import IMMERSION_INDEX
from harness.records.journal import read_journal
from harness.records.run_folder import RunFolder
from harness.records.run_record import read_run
from harness.records.series_writer import read_series

EMISSION_OFFSET_NM = 30.0  # a line without a stated emission: its wavelength + this (stated in the result)
MIN_PLANES = 5
HANDLING = ("hot pixels (one-pixel spikes of the mean plane) filled with the Gaussian-weighted mean of their neighbours "
            "before beads are found; a bead with a saturated voxel in its box is rejected")


@dataclass
class ZStack:
    """One z-stack of one channel: its planes' pages and z positions, bottom to top."""

    channel: str  # '488'
    index: int  # the k-th z-stack of that channel
    ifds: list[int]
    z_um: list[float]
    missing: int  # planes planned but not acquired

    @property
    def subject(self) -> str:
        return f"{self.channel} nm" + (f", z-stack {self.index + 1}" if self.index else "")


def z_stacks(folder: Path, stack: str, tag: str, nz: int) -> list[ZStack]:
    """The z-stacks of frame-log rows tagged ``tag``, in order of their first plane's time."""
    rows = [r for r in read_series(RunFolder(folder).frame_log(stack)) if r.get("tag") == tag]
    groups: dict[tuple[str, int], list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault((r["channel"], int(r["t"]) // max(nz, 1)), []).append(r)
    out = []
    for (channel, k), members in groups.items():
        ok = sorted((r for r in members if r.get("status") == "ok" and r.get("ifd") not in (None, "")), key=lambda r: float(r["z_um"]))
        out.append(ZStack(channel, k, [int(r["ifd"]) for r in ok], [float(r["z_um"]) for r in ok], len(members) - len(ok)))
    return out


def has_tag(folder: Path, stack: str, tag: str) -> bool:
    path = RunFolder(folder).frame_log(stack)
    return path.is_file() and any(r.get("tag") == tag for r in read_series(path))


def planes_per_stack(tif: tifffile.TiffFile) -> int:
    value = pixels_attribute(tif, "SizeZ")
    return int(value) if value and value.isdigit() else 1


def pixel_size_um(tif: tifffile.TiffFile, stack: str) -> float:
    value = pixels_attribute(tif, "PhysicalSizeX")
    if value is None:
        raise BadInput(f"{stack}.ome.tif: its OME-XML gives no pixel size (Pixels PhysicalSizeX)")
    return float(value)


def optics(run: Mapping[str, Any], tif: tifffile.TiffFile) -> tuple[float, float, str]:
    """(NA, immersion index, where they came from): run.json ``plan.optics``, else the OME Objective
    (LensNA, Immersion)."""
    planned = ((run.get("protocol") or {}).get("plan") or {}).get("optics") or {}
    if planned.get("na") and planned.get("immersion_index"):
        return float(planned["na"]), float(planned["immersion_index"]), "run.json plan.optics"
    root = etree.fromstring((tif.ome_metadata or "").encode("utf-8"))
    objective = next(root.iter("{*}Objective"), None)
    if objective is not None and objective.get("LensNA") and IMMERSION_INDEX.get(objective.get("Immersion") or ""):
        return float(objective.get("LensNA")), IMMERSION_INDEX[objective.get("Immersion") or ""], "OME Objective LensNA and Immersion"
    raise BadInput("the objective's NA and immersion are not recorded (run.json plan.optics, OME Objective): "
                   "the theoretical resolution needs them; name the objective in use in the station file")


def emission_nm(folder: Path, channel: str) -> tuple[float, str]:
    """The line's emission wavelength from the journal's ``specimen`` record, else excitation + 30 nm."""
    stated: dict[str, Any] = {}
    for record in read_journal(RunFolder(folder).journal, missing_ok=True):
        if record.get("type") == "specimen" and record.get("emission_nm"):
            stated = record["emission_nm"]
    if channel in stated:
        return float(stated[channel]), "the specimen's stated emission"
    try:
        return float(channel) + EMISSION_OFFSET_NM, f"not stated for the specimen: the line's wavelength + {EMISSION_OFFSET_NM:g} nm"
    except ValueError:
        raise BadInput(f"channel {channel!r}: no emission wavelength (one line per z-stack is needed)") from None


def read_planes(tif: tifffile.TiffFile, zs: ZStack, level: SaturationLevel) -> tuple[np.ndarray, PixelQuality]:
    """The z-stack as a ZYX float32 array (hot pixels filled; camera ADU are exact in float32, half the
    memory of float64) and the pixel quality of its planes."""
    if len(zs.ifds) < MIN_PLANES:
        raise BadInput(f"{zs.subject}: {len(zs.ifds)} planes acquired, at least {MIN_PLANES} needed")
    planes = np.stack([page(tif, i) for i in zs.ifds]).astype(np.float32)
    saturated = saturated_mask(planes, level)
    defects = spike_defects(planes.mean(axis=0), len(zs.ifds))
    mask = defects.mask
    if mask.any():
        planes = np.stack([fill_excluded(p, mask).astype(np.float32) for p in planes])
    return planes, assess(level, saturated, len(zs.ifds), defects, HANDLING, mask)


@dataclass
class BeadStack:
    """A stack of bead z-stacks opened for analysis: its z-stacks of one tag and what all its lines share."""

    tif: tifffile.TiffFile
    pixel_um: float
    na: float
    n: float
    optics_source: str
    level: SaturationLevel
    stacks: list[ZStack]
    same: dict[str, list[str]]  # identical_lines


@contextmanager
def open_bead_stack(folder: Path, stack: str, tag: str) -> Iterator[BeadStack]:
    """The stack ``stack`` of a run folder with its z-stacks tagged ``tag``, open while in use.
    Raises ``BadInput`` (no pixel size, no objective) as ``pixel_size_um`` and ``optics`` do."""
    run = read_run(folder).model_dump(mode="json") if RunFolder(folder).run_json.is_file() else {}
    with tifffile.TiffFile(RunFolder(folder).stack(stack)) as tif:
        nz = planes_per_stack(tif)
        pixel_um = pixel_size_um(tif, stack)
        na, n, source = optics(run, tif)
        stacks = z_stacks(folder, stack, tag, nz)
        yield BeadStack(tif, pixel_um, na, n, source, stack_saturation(tif), stacks, identical_lines(tif, stacks))


def identical_lines(tif: tifffile.TiffFile, stacks: list[ZStack]) -> dict[str, list[str]]:
    """Per z-stack subject, the subjects of the other lines' z-stacks that are the same images pixel
    for pixel (a camera that does not see the light draws the same frames whatever line is on)."""
    digests: dict[str, str] = {}
    for zs in stacks:
        if len(zs.ifds) > 1:
            h = hashlib.sha256()
            for i in zs.ifds:
                h.update(np.ascontiguousarray(page(tif, i)).tobytes())
            digests[zs.subject] = h.hexdigest()
    channel = {zs.subject: zs.channel for zs in stacks}
    return {s: [o for o, d in digests.items() if d == digest and o != s and channel[o] != channel[s]] for s, digest in digests.items()
            if any(d == digest and o != s and channel[o] != channel[s] for o, d in digests.items())}


def identical_reason(subject: str, others: list[str]) -> str:
    return (f"the z-stacks of {subject} and {', '.join(others)} are the same images pixel for pixel: the image does not depend on the "
            "laser line, so it says nothing about this line's optics (a camera that does not see the light, such as Micro-Manager's "
            "DemoCamera, which draws its own image)")


def no_bead_reason(planes: np.ndarray, found: int) -> str:
    """Why a z-stack gives no bead, in words ("" when beads were found)."""
    if found:
        return ""
    if bool(np.all(planes == planes[:1])):
        return "no bead: every plane of the z-stack is the same image; the image does not change with focus (a camera that does not see the specimen?)"
    spread = float(np.max(planes.max(axis=0) - planes.min(axis=0)))
    return (f"no bead: no spot stands out of the maximum projection (largest change of a pixel through focus {spread:.3g} ADU); "
            "check the specimen, the focus and the exposure")


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
