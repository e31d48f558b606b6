"""The report's figures, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

Each function takes plain numbers (from results.json, the series CSVs and the correction image),
so the report can be rebuilt from a run folder alone.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # figures without pyplot: no global state, no display, quicker to import
from matplotlib.patches import Circle

DIRECTION_COLOURS = {"+x": "tab:red", "-x": "tab:orange", "+y": "tab:blue", "-y": "tab:cyan"}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")  # Agg; nothing global to close
    return buf.getvalue()


def power_vs_time(t_s: np.ndarray, p_mw: np.ndarray, title: str, stability_limit_pct: float | None) -> bytes:
    """Power against time with the measured min-max band and, with a limit, the band it allows around the mean."""
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    t_min = t_s / 60.0
    mean = float(np.mean(p_mw))
    ax.axhspan(float(p_mw.min()), float(p_mw.max()), color="tab:blue", alpha=0.12, label="measured min-max")
    if stability_limit_pct is not None:
        half = mean * (1 - stability_limit_pct / 100.0)  # S >= limit <=> (Pmax - Pmin) <= 2 mean (1 - limit)
        ax.axhline(mean + half, color="tab:green", ls="--", lw=1, label=f"band allowed by S >= {stability_limit_pct:g} %")
        ax.axhline(mean - half, color="tab:green", ls="--", lw=1)
    ax.plot(t_min, p_mw, ".-", ms=2, lw=0.6, color="tab:blue", label="power")
    ax.axhline(mean, color="k", lw=0.8, label=f"mean {mean:.4g} mW")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("power (mW)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def linearity(setpoints: np.ndarray, powers: np.ndarray, slope: float, intercept: float, origin_slope: float | None, title: str) -> bytes:
    fig = Figure(figsize=(8, 4.6))
    ax, res = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    x = np.linspace(0, float(setpoints.max()), 50)
    ax.plot(setpoints, powers, "o", color="tab:blue", label="measured mean")
    ax.plot(x, slope * x + intercept, "-", color="k", lw=1, label=f"OLS {slope:.4g} x {'-' if intercept < 0 else '+'} {abs(intercept):.3g} mW")
    if origin_slope is not None:
        ax.plot(x, origin_slope * x, "--", color="tab:green", lw=1, label=f"through origin {origin_slope:.4g} x")
    ax.set_ylabel("power (mW)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fit = slope * setpoints + intercept
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(fit != 0, 100.0 * (powers - fit) / fit, np.nan)
    res.axhline(0, color="k", lw=0.8)
    res.plot(setpoints, rel, "o-", color="tab:red", ms=4)
    res.set_xlabel("set point (mW)")
    res.set_ylabel("residual (% of fit)")
    res.grid(alpha=0.3)
    return _png(fig)


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
    return _png(fig)


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
    return _png(fig)


def flat_field(image: np.ndarray, profiles: dict[str, list[float]], title: str) -> bytes:
    """Heat map normalised to its maximum with iso-intensity contours every 10 %, and the four profiles."""
    norm = image / float(image.max())
    step = max(1, max(norm.shape) // 480)  # the heat map needs no more than ~480 px
    shown = norm[::step, ::step]
    fig = Figure(figsize=(11, 4))
    ax, prof = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1], "wspace": 0.35})
    im = ax.imshow(shown, cmap="inferno", vmin=0, vmax=1, extent=(0, norm.shape[1], norm.shape[0], 0))
    levels = np.arange(0.1, 1.0, 0.1)
    yy, xx = np.mgrid[0:shown.shape[0], 0:shown.shape[1]]
    cs = ax.contour(xx * step + step / 2, yy * step + step / 2, shown, levels=levels, colors="white", linewidths=0.6)
    ax.clabel(cs, fmt=lambda v: f"{v * 100:.0f}%", fontsize=6)
    ax.set_title(title)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    fig.colorbar(im, ax=ax, fraction=0.04, label="intensity / max")
    top = max(max(v) for v in profiles.values()) or 1.0
    for name, values in profiles.items():
        v = np.asarray(values) / top
        prof.plot(np.linspace(0, 1, len(v)), v, lw=1, label=name.replace("_", " "))
    prof.set_xlabel("position along profile (fraction)")
    prof.set_ylabel("intensity / max")
    prof.set_ylim(0, 1.05)
    prof.legend(fontsize=7)
    prof.grid(alpha=0.3)
    return _png(fig)
