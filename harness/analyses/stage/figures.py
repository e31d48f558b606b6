"""The stage analyses' figures and tables: displacement scatter per approach direction, the
repeatability table per direction, ISO 230-2 deviations per target and their table."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.patches import Circle

from harness.report.html_parts import e, num
from harness.report.plots import Figure, png

DIRECTION_COLOURS = {"+x": "tab:red", "-x": "tab:orange", "+y": "tab:blue", "-y": "tab:cyan"}


def displacement_scatter(rows: list[dict[str, Any]], title: str, limit_um: float | None) -> bytes:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for direction in sorted({r["direction"] for r in rows}):
        sel = [r for r in rows if r["direction"] == direction]
        ax.plot([r["dx_um"] for r in sel], [r["dy_um"] for r in sel], "o", ms=4, alpha=0.75,
                color=DIRECTION_COLOURS.get(direction), label=f"from {direction} ({len(sel)})" if direction else f"{len(sel)} returns")
    if limit_um is not None:
        ax.add_patch(Circle((0, 0), limit_um, fill=False, ls="--", color="tab:green", label=f"limit {limit_um:g} um"))
    extent = max([limit_um or 0.0] + [max(abs(r["dx_um"]), abs(r["dy_um"])) for r in rows]) * 1.15 or 1.0
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("x displacement (um)")
    ax.set_ylabel("y displacement (um)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    return png(fig)


def iso230(targets: list[dict[str, Any]], title: str) -> bytes:
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    labels = [str(t["target"]) for t in targets]
    x = np.arange(len(targets))
    for offset, d, colour in ((-0.1, "up", "tab:red"), (0.1, "down", "tab:blue")):
        mean = np.array([t[f"mean_{d}_um"] for t in targets], dtype=float)
        s = np.array([t[f"s_{d}_um"] for t in targets], dtype=float)
        ax.errorbar(x + offset, mean, yerr=2 * np.nan_to_num(s), fmt="o", color=colour, capsize=3, label=f"{d}: mean +- 2 s")
    ax.set_xticks(x, labels)
    ax.set_xlabel("target (um)")
    ax.set_ylabel("deviation (um)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png(fig)


def stage_tables(r: dict[str, Any]) -> str:
    """The repeatability table per approach direction (HTML)."""
    table = r.get("table")
    if not table:
        return ""
    out = ["<table><tr><th>approach</th><th>n</th><th>mean x</th><th>SD x</th><th>max |x|</th>"
           "<th>mean y</th><th>SD y</th><th>max |y|</th><th>max |d| 2-D</th></tr>"]
    for direction, t in table.items():
        out.append(f"<tr><td>{e(direction)}</td><td class=num>{t['n']}</td>"
                   + "".join(f"<td class=num>{num(t[a][k])}</td>" for a in ("x", "y") for k in ("mean_um", "sd_um", "max_abs_um"))
                   + f"<td class=num>{num(t['max_abs_2d_um'])}</td></tr>")
    return "".join(out) + "</table><p class=muted>um; SD with n - 1</p>"


def iso_table(targets: list[dict[str, Any]]) -> str:
    """The ISO 230-2 table per target (HTML)."""
    keys = ("n_up", "n_down", "mean_up_um", "mean_down_um", "s_up_um", "s_down_um", "B_i_um", "R_up_i_um", "R_down_i_um", "R_i_um")
    head = "".join(f"<th>{e(k.replace('_um', '').replace('_i', ' i').replace('_', ' '))}</th>" for k in keys)
    rows = "".join(f"<tr><td>{e(t['target'])}</td>" + "".join(f"<td class=num>{num(t[k])}</td>" for k in keys) + "</tr>" for t in targets)
    return f"<table><tr><th>target</th>{head}</tr>{rows}</table><p class=muted>um; s with n - 1</p>"
