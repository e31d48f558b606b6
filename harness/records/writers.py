"""The registry of data writers a run uses: frame writers (image stacks) and series writers (rows).

Contracts (``FrameWriter``, ``SeriesWriter`` below) say what the runner relies on; a writer is chosen
by name (``frame_writer("ome-tiff")``, ``series_writer("csv")``). A new format (say OME-Zarr) is its
module plus one ``register_*`` line at the bottom of this file. A writer's module is imported only when
a writer of its kind is first opened (the OME model costs about a second of start-up).

Every file a writer makes is ``<name><suffix>`` inside the run folder (``frame_path``/``series_path``,
``safe_paths.inside``: a hostile name raises ``UnsafePath`` before anything is written). ``UnknownWriter`` (a ``UserError``) for a
name that is not registered.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.common.errors import UserError
from harness.common.safe_paths import inside
from harness.protocol.plan import StackPlan
from harness.records.image_records import ChannelInfo, InstrumentInfo, PlaneInfo

if TYPE_CHECKING:
    import numpy as np


class FrameWriter(Protocol):
    """One image stack, written frame by frame as frames arrive.

    - ``write(image, plane, channel)`` appends one frame and sets ``plane.ifd`` (its page); ``OSError``
      (a full disk among them) when it cannot; ``ValueError`` for a frame of another size.
    - ``write_missing(plane, reason)`` keeps a failed frame's place (``plane.status`` set).
    - ``finalize()`` closes the stack so that its metadata describe exactly the frames written; False
      if none were. ``OSError`` if it cannot (the data written so far stay readable).
    - ``abandon()`` closes the file as it is, writing nothing more (a page a full disk cut short;
      ``recover`` rebuilds the stack later).
    """

    path: Path
    plan: StackPlan
    planes: list[PlaneInfo]
    shape: tuple[int, int] | None
    finalized: bool

    def write(self, image: np.ndarray, plane: PlaneInfo, channel: ChannelInfo | None = None) -> None: ...

    def write_missing(self, plane: PlaneInfo, reason: str) -> None: ...

    def finalize(self) -> bool: ...

    def abandon(self) -> None: ...


class SeriesWriter(Protocol):
    """Rows of one table, each written whole or not at all as it is taken.

    - ``write(row)`` appends a row (a dict over ``columns``; ``DiskFull`` if it does not fit: the row is
      kept and written first by the next ``write`` or by ``close``).
    - ``close()`` writes what is pending and closes (``DiskFull``: those rows are dropped).
    - ``rows`` counts the rows written or pending (after ``close``: on disk).
    """

    path: Path
    rows: int

    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class UnknownWriter(UserError):
    pass


@dataclass(frozen=True)
class WriterKind:
    name: str
    suffix: str  # of the file, e.g. ".ome.tif"
    target: str  # "module:Class", imported when first opened

    def load(self) -> Any:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


FRAME_WRITERS: dict[str, WriterKind] = {}
SERIES_WRITERS: dict[str, WriterKind] = {}


def register_frame_writer(name: str, suffix: str, target: str) -> None:
    """``target`` ("module:Class") is built as ``Class(path, plan, info, acquisition_date)``."""
    FRAME_WRITERS[name] = WriterKind(name, suffix, target)


def register_series_writer(name: str, suffix: str, target: str) -> None:
    """``target`` ("module:Class") is built as ``Class(path, columns)``."""
    SERIES_WRITERS[name] = WriterKind(name, suffix, target)


def _kind(registry: dict[str, WriterKind], name: str, what: str) -> WriterKind:
    if name not in registry:
        raise UnknownWriter(f"no {what} writer {name!r} (there are: {', '.join(registry)})")
    return registry[name]


def frame_path(kind: str, folder: Path, name: str) -> Path:
    """Where the stack ``name`` of a frame writer goes in ``folder`` (``UnsafePath`` outside it)."""
    return inside(folder, f"{name}{_kind(FRAME_WRITERS, kind, 'frame').suffix}")


def series_path(kind: str, folder: Path, name: str) -> Path:
    """Where the table ``name`` of a series writer goes in ``folder`` (``UnsafePath`` outside it)."""
    return inside(folder, f"{name}{_kind(SERIES_WRITERS, kind, 'series').suffix}")


def open_frame_writer(kind: str, path: Path, plan: StackPlan, info: InstrumentInfo, acquisition_date: datetime) -> FrameWriter:
    """A new stack at ``path`` (from ``frame_path``)."""
    writer: FrameWriter = _kind(FRAME_WRITERS, kind, "frame").load()(path, plan, info, acquisition_date)
    return writer


def open_series_writer(kind: str, path: Path, columns: list[str] | None = None) -> SeriesWriter:
    """A new table at ``path`` (from ``series_path``); ``columns``: the writer's default (power series) if None."""
    cls = _kind(SERIES_WRITERS, kind, "series").load()
    writer: SeriesWriter = cls(path) if columns is None else cls(path, columns)
    return writer


register_frame_writer("ome-tiff", ".ome.tif", "harness.records.ome_writer:OmeTiffStack")
register_series_writer("csv", ".csv", "harness.records.series_writer:SeriesWriter")
