"""The focus analysis' figures and table: focal position over time with its line and focus curves with
their fitted Gaussian (one figure), Z return errors per direction (as the XY scatter), and the Z repeatability
table per direction (the XY stage table's columns, for z)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.report.html_parts import e, num
from harness.report.plots import Figure, png

DIRECTION_COLOURS = {"+z": "tab:red", "-z": "tab:blue"}


def focus_stability(stacks: list[dict[str, Any]], line: dict[str, Any], title: str) -> bytes:
    """Two panels: the focal positions over time with their line; a few focus curves with their fit."""
    fig = Figure(figsize=(11, 3.6))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    _over_time(left, stacks, line, title)
    _curves(right, stacks)
    return png(fig)


def _over_time(ax: Any, stacks: list[dict[str, Any]], line: dict[str, Any], title: str) -> None:
    found = [s for s in stacks if s.get("z_um") is not None and s.get("time_s") is not None]
    t = np.array([s["time_s"] for s in found]) / 3600.0
    z = np.array([s["z_um"] for s in found])
    se = np.array([s["se_um"] if s.get("se_um") is not None else 0.0 for s in found])
    ax.errorbar(t, z, yerr=se, fmt="o", ms=4, capsize=2, color="tab:blue", label=f"{len(found)} z-stacks")
    slope, intercept = line.get("slope_um_per_h"), line.get("intercept_um")
    if slope is not None and intercept is not None and np.isfinite(slope) and len(t) > 1:
        tt = np.array([t.min(), t.max()])
        slope_se = line.get("slope_se_um_per_h")
        ax.plot(tt, intercept + slope * tt, "-", color="tab:red", label=f"line: {slope:+.3f} um/h" + (f" (SE {slope_se:.2g})" if slope_se is not None else ""))
    ax.set_xlabel("station time since the run's start (h)")
    ax.set_ylabel("focal position, Z drive (um)")
    ax.ticklabel_format(useOffset=False, axis="y")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _gauss(z: np.ndarray, model: list[float]) -> np.ndarray:
    a, z0, s, b = model
    return b + a * np.exp(-((z - z0) ** 2) / (2 * s * s))


def _curves(ax: Any, stacks: list[dict[str, Any]]) -> None:
    """The first, middle and last z-stacks with a curve: sharpness scaled to 0..1 by each curve's range."""
    with_curve = [s for s in stacks if s.get("curve")]
    if not with_curve:
        return
    chosen = list({id(s): s for s in (with_curve[0], with_curve[len(with_curve) // 2], with_curve[-1])}.values())
    for s, colour in zip(chosen, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        z = np.asarray(s["curve"]["z_um"], dtype=float)
        v = np.asarray(s["curve"]["sharpness"], dtype=float)
        lo, span = float(v.min()), float(np.ptp(v)) or 1.0
        ax.plot(z, (v - lo) / span, "o", ms=3, color=colour, label=f"z-stack {s['index']}")
        if s.get("model"):
            lo_z, hi_z = s.get("window_um") or (z.min(), z.max())
            zz = np.linspace(lo_z, hi_z, 200)
            ax.plot(zz, (_gauss(zz, s["model"]) - lo) / span, "-", lw=1, color=colour)
            ax.axvline(s["model"][1], color=colour, lw=0.5, ls="--")
    ax.set_xlabel("Z drive position (um)")
    ax.set_ylabel("normalised variance (scaled)")
    ax.ticklabel_format(useOffset=False, axis="x")
    ax.set_title("focus curves and Gaussian fits (within their windows)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def return_errors(rows: list[dict[str, Any]], title: str, limit_um: float | None) -> bytes:
    """dz of each return, one column per direction (points spread by round), limits as lines."""
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    directions = sorted({r["direction"] for r in rows})
    for i, direction in enumerate(directions):
        sel = [r for r in rows if r["direction"] == direction]
        spread = np.linspace(-0.25, 0.25, len(sel)) if len(sel) > 1 else np.zeros(1)
        ax.plot(i + spread, [r["dz_um"] for r in sel], "o", ms=4, alpha=0.75, color=DIRECTION_COLOURS.get(direction),
                label=f"from {direction} ({len(sel)})" if direction else f"{len(sel)} returns")
    if limit_um is not None:
        for sign in (1, -1):
            ax.axhline(sign * limit_um, ls="--", color="tab:green", label=f"limit {limit_um:g} um" if sign > 0 else None)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(range(len(directions)), [d or "all" for d in directions])
    ax.set_xlim(-0.6, len(directions) - 0.4)
    ax.set_xlabel("approach (direction of the move away)")
    ax.set_ylabel("return error dz (um)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png(fig)


def z_table(r: dict[str, Any]) -> str:
    """The Z repeatability table per direction (HTML), the XY stage table's columns for z."""
    table = r.get("table")
    if not table:
        return ""
    out = ["<table><tr><th>approach</th><th>n</th><th>mean z</th><th>SD z</th><th>max |z|</th></tr>"]
    for direction, t in table.items():
        out.append(f"<tr><td>{e(direction)}</td><td class=num>{t['n']}</td>"
                   + "".join(f"<td class=num>{num(t['z'][k])}</td>" for k in ("mean_um", "sd_um", "max_abs_um")) + "</tr>")
    return "".join(out) + "</table><p class=muted>um; SD with n - 1; dz = focal position (return) - focal position (reference)</p>"
