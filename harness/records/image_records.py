"""What a run records about its image planes, channels and instrument, as plain dataclasses, and
the namespaces of the harness's OME annotations.

No OME library here: the runner, recovery and the snapshot command fill these in, and
``ome_metadata`` turns them into OME-XML. (Importing the OME model costs about a second of start-up,
which runs without images never pay.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NS_RUN = "urn:microscope-qc-harness:run:1"
NS_NBO = "urn:microscope-qc-harness:4dn-bina-ome:tier1-2:1"
NS_QC = "urn:microscope-qc-harness:qc-results:1"
NS_NBO_QC = "urn:microscope-qc-harness:4dn-bina-ome:calibration-performance:1"


@dataclass
class LineInfo:
    key: str  # '488'
    wavelength_nm: float
    nominal_mw: float | None
    vendor: str
    model: str
    serial: str


@dataclass
class InstrumentInfo:
    """Everything the Instrument element and the annotations need, gathered once per run."""

    microscope: dict[str, str]
    lines: list[LineInfo]
    camera: dict[str, str]
    objective: dict[str, Any] | None
    filters: list[dict[str, Any]]
    pixel_size_um: float
    bit_depth: int
    run: dict[str, str]
    nbo: dict[str, str] = field(default_factory=dict)


@dataclass
class PlaneInfo:
    c: int
    t: int
    ifd: int
    delta_t_s: float
    exposure_s: float
    x_um: float | None
    y_um: float | None
    z_um: float | None
    status: str = ""  # "" for a real frame; "missing" (acquisition failed), "not acquired" (run ended) or "not planned" (grid padding)
    note: str = ""


@dataclass
class ChannelInfo:
    name: str  # '488', '488+561' or 'dark'
    setpoints_mw: dict[str, float] = field(default_factory=dict)
    gain_db: float | None = None
    offset: float | None = None
    binning: int = 1


FRAME_COLUMNS = ["frame", "stack", "channel", "c", "t", "ifd", "time_s", "exposure_s", "x_um", "y_um", "z_um", "lines_on",
                 "setpoint_mW", "setpoint_pct_nominal", "tag", "context", "status", "attempts", "error", "gain_db", "offset", "binning"]
"""The columns of a stack's frame log (``<stack>_frames.csv``), one row per planned frame."""


def grid_gaps(present: set[tuple[int, int]], z_planes: int = 1) -> list[tuple[int, int]]:
    """The (c, t) cells a stack lacks to be a complete C x T grid (readers refuse a gap): for every
    channel present, every t up to the last one present (up to the end of its z-stack when a
    channel's frames are z-stacks of ``z_planes`` planes); in C, then T order. Empty for no planes."""
    if not present:
        return []
    size_t = -(-(max(t for _, t in present) + 1) // z_planes) * z_planes
    return [(c, t) for c in sorted({c for c, _ in present}) for t in range(size_t) if (c, t) not in present]
