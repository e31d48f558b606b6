"""Stream frames of one image stack into a BigTIFF OME-TIFF as they arrive, and finalize it so that
its OME-XML describes exactly the pages on disk (an interrupted run included).

The first page carries the XML of the plan; ``finalize`` rewrites it crash-safely
(``tiff_description.rewrite_description``: a kill or a full disk leaves the plan's XML readable)
with one Plane and one TiffData (IFD -> C, T) per page. A frame whose acquisition failed keeps its
place as an all-zero page whose Plane is annotated ``FrameStatus: missing``, so no later frame
shifts. Readers need the C x T grid complete (Bio-Formats refuses a TiffData gap: "missing plane"),
so when a run ends early, the grid's never-acquired cells get such pages too, ``not acquired``.

``OmeTiffStack`` is the ``ome-tiff`` frame writer of ``harness.records.writers`` (its ``FrameWriter``
contract); ``write`` raises ``ValueError`` for a frame of another size, ``OSError`` when the disk refuses.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from ome_types.model import TiffData

from harness.protocol.plan import StackPlan
from harness.records.image_records import ChannelInfo, InstrumentInfo, PlaneInfo, grid_gaps
from harness.records.ome_metadata import build_ome, ome_xml_bytes
from harness.records.tiff_description import rewrite_description


class OmeTiffStack:
    def __init__(self, path: Path, plan: StackPlan, info: InstrumentInfo, acquisition_date: datetime) -> None:
        self.path = path
        self.plan = plan
        self.info = info
        self.acquisition_date = acquisition_date
        self.file_uuid = str(uuid.uuid4())
        self.channels = {name: ChannelInfo(name) for name in plan.channels}
        self.planes: list[PlaneInfo] = []
        self.shape: tuple[int, int] | None = None
        self._writer: tifffile.TiffWriter | None = None
        self.finalized = False
        self.annotations: dict[str, dict[str, Any]] = {}
        self._pending: list[PlaneInfo] = []

    def _resolution(self) -> tuple[float, float]:
        per_cm = 1e4 / self.info.pixel_size_um
        return (per_cm, per_cm)

    def _xml(self, planes: list[PlaneInfo]) -> bytes:
        assert self.shape is not None
        used = sorted({p.c for p in planes}) if self.finalized else list(range(len(self.plan.channels)))
        remap = {c: i for i, c in enumerate(used)}
        channels = [self.channels[self.plan.channels[c]] for c in used]
        mapped = [PlaneInfo(**{**p.__dict__, "c": remap[p.c]}) for p in planes if p.c in remap]
        ome = build_ome(self.info, self.plan.name, self.shape, channels, mapped, self.acquisition_date, self.file_uuid, self.annotations,
                        self.plan.z_planes, self.plan.z_step_um)
        return ome_xml_bytes(ome)

    def _planned_xml(self) -> bytes:
        """The plan's shape, for a file read before ``finalize`` (a crash): every planned frame in
        acquisition order, one TiffData per channel run; no Plane elements (nothing is known yet)."""
        assert self.shape is not None
        channels = [self.channels[name] for name in self.plan.channels]
        nz = self.plan.z_planes
        ome = build_ome(self.info, self.plan.name, self.shape, channels, [], self.acquisition_date, self.file_uuid, self.annotations,
                        nz, self.plan.z_step_um)
        px = ome.images[0].pixels
        px.size_t = max(-(-self.plan.size_t // nz), 1)
        ifd = 0
        for c, name in enumerate(self.plan.channels):
            count = self.plan.frames_per_channel[name]
            px.tiff_data_blocks.append(TiffData(ifd=ifd, first_c=c, first_t=0, first_z=0, plane_count=count))
            ifd += count
        return ome_xml_bytes(ome)

    def write(self, image: np.ndarray, plane: PlaneInfo, channel: ChannelInfo | None = None) -> None:
        """Append one frame; ``plane.ifd`` is set here (frames on disk are in arrival order)."""
        if self._writer is None:
            self.shape = (int(image.shape[0]), int(image.shape[1]))
            description: bytes | None = self._planned_xml()
            self._writer = tifffile.TiffWriter(self.path, bigtiff=True, ome=False)
        else:
            description = None
            if image.shape != self.shape:
                raise ValueError(f"{self.path.name}: frame shape {image.shape} differs from the stack's {self.shape}")
        if channel is not None and not self.channels[channel.name].setpoints_mw:
            self.channels[channel.name] = channel
        plane.ifd = len(self.planes)
        self._writer.write(
            np.ascontiguousarray(image, dtype=np.uint16),
            photometric="minisblack",
            description=description,
            metadata=None,
            resolution=self._resolution(),
            resolutionunit="CENTIMETER",
            contiguous=False,
        )
        self.planes.append(plane)
        pending, self._pending = self._pending, []
        for waiting in pending:  # missing frames from before the frame size was known
            self.write(np.zeros(self.shape, dtype=np.uint16), waiting)

    def write_missing(self, plane: PlaneInfo, reason: str) -> None:
        """Keep a failed frame's place: an all-zero page, its Plane annotated as missing."""
        plane.status, plane.note = plane.status or "missing", reason
        if self.shape is None:
            self._pending.append(plane)  # written once the frame size is known
            return
        self.write(np.zeros(self.shape, dtype=np.uint16), plane)

    def abandon(self) -> None:
        """Close the file as it is, writing nothing more (not ``TiffWriter.close``: it would write more)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer._fh.close()

    def finalize(self) -> bool:
        """Close the file and rewrite its XML to match the pages written. False if none were."""
        if self.finalized:
            return self._writer is not None
        if self._writer is None:
            self.finalized = True
            return False
        for c, t in grid_gaps({(p.c, p.t) for p in self.planes}, self.plan.z_planes):
            planned = self.plan.frames_per_channel.get(self.plan.channels[c], 0) if c < len(self.plan.channels) else 0
            if t >= planned:  # OME's grid is full: a channel with fewer frames than another is padded
                reason = f"no frame planned here: channel {self.plan.channels[c] if c < len(self.plan.channels) else c} has {planned} (padding of the grid)"
                self.write_missing(PlaneInfo(c, t, -1, 0.0, 0.0, None, None, None, "not planned"), reason)
            else:
                self.write_missing(PlaneInfo(c, t, -1, 0.0, 0.0, None, None, None, "not acquired"), "the run ended before this frame")
        self.finalized = True
        self._writer.close()
        try:
            rewrite_description(self.path, self._xml(self.planes))
        except OSError as exc:  # a full disk: the plan's XML stays; recovery can describe the pages later
            raise OSError(exc.errno, f"{exc.strerror or exc}; once there is space, microscope-qc recover {self.path.parent} "
                                     "makes its XML describe the pages") from exc
        return True
