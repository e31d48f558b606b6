"""The co-registration figure and table: a vector map of the per-bead shifts (x-y arrows at an
exaggerated, stated scale, coloured by the z shift) and the table of the line against the reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.report.html_parts import e, num
from harness.report.plots import Figure, png


def exaggeration(pairs: list[dict[str, Any]]) -> float:
    """A round factor (1, 2 or 5 x 10^k, at least 1) that draws the median x-y shift at about 10 % of
    the field's width."""
    xs = [p["x_um"] for p in pairs]
    ys = [p["y_um"] for p in pairs]
    width = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    shift = float(np.median([math.hypot(p["dx_um"], p["dy_um"]) for p in pairs])) or 1e-3
    raw = 0.1 * width / shift
    if raw < 1:
        return 1.0
    decade = 10 ** math.floor(math.log10(raw))
    return float(max(m * decade for m in (1, 2, 5) if m * decade <= raw))


def vector_map(result: dict[str, Any]) -> tuple[bytes, float]:
    pairs = result["pairs"]
    scale = float(result.get("map_scale") or exaggeration(pairs))  # one scale for every line of a run (set by the analysis)
    x = np.array([p["x_um"] for p in pairs])
    y = np.array([p["y_um"] for p in pairs])
    dx = np.array([p["dx_um"] for p in pairs]) * scale
    dy = np.array([p["dy_um"] for p in pairs]) * scale
    dz = np.array([p["dz_um"] for p in pairs])
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    lim = float(result.get("map_z_um") or np.max(np.abs(dz))) or 1e-3
    q = ax.quiver(x, y, dx, dy, dz, angles="xy", scale_units="xy", scale=1, cmap="coolwarm", clim=(-lim, lim), width=0.006)
    fig.colorbar(q, ax=ax, label="z shift (um)")
    ax.plot(x, y, ".", color="k", ms=3)
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    ax.margins(0.12)  # room for the arrows at the edge
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_title(f"{result['subject']}: shifts x {scale:g}", fontsize=9)
    ax.grid(alpha=0.3)
    return png(fig), scale


def table(result: dict[str, Any]) -> str:
    m = result["metrics"]

    def row(label: str, mean: str, sd: str) -> str:
        return f"<tr><td>{label}</td><td class=num>{num(m[mean]['value'])}</td><td class=num>{num(m[sd]['value'])}</td></tr>"

    rows = "".join(row(axis, f"shift_{axis}_um", f"shift_{axis}_sd_um") for axis in "xyz")
    ref = result.get("reference_resolution", {})
    return (f"<table><tr><th>{e(result['subject'])}</th><th>mean shift</th><th>SD</th></tr>{rows}"
            + row("3-D distance", "distance_3d_um", "distance_3d_sd_um") + row("co-alignment ratio", "coalignment_ratio", "coalignment_ratio_sd")
            + "</table>"
            f"<p class=muted>um; SD with n - 1; {num(m['beads_matched']['value'])} beads matched within {num(result.get('match_radius_um'))} um; "
            f"MetroloJ_QC's resolution ellipsoid of {num(ref.get('emission_nm'))} nm: lateral {num(ref.get('lateral_um'))} um, "
            f"axial {num(ref.get('axial_metroloj_um'))} um</p>")
