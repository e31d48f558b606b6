"""The PSF analysis' figures and table: a gallery of accepted beads (XY and XZ maximum projections
of each bead's box), the x, y, z profiles of one bead with their fits, and the per-line table.
Also used by the co-registration analysis (its vector map and table)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.analysis.bead_fits import gaussian, pixel_gaussian
from harness.report.html_parts import e, num
from harness.report.plots import Figure, png

GALLERY = 12


def _box(planes: np.ndarray, bead: dict[str, Any], half: int) -> np.ndarray:
    y, x = bead["y_px"], bead["x_px"]
    return planes[:, max(y - half, 0):y + half + 1, max(x - half, 0):x + half + 1]


def _um(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def gallery(planes: np.ndarray, beads: list[dict[str, Any]], result: dict[str, Any]) -> bytes:
    """XY (top row) and XZ (bottom row) maximum projections of up to ``GALLERY`` beads, with FWHMs."""
    shown = beads[:GALLERY]
    half = int(result["box_half_px"])
    z = np.asarray(result["z_um"])
    px = float(result["pixel_um"])
    w = (2 * half + 1) * px
    # XZ at the same scale as XY (um on both axes), cropped to 2 axial FWHMs either side of the bead
    depth = min(float(z[-1] - z[0]), 4 * float(np.nanmedian([b["fwhm_z_um"] or np.nan for b in shown] or [np.nan])) if shown else 0.0) or float(z[-1] - z[0])
    fig = Figure(figsize=(1.3 * len(shown) + 0.5, 1.3 + 1.3 * max(min(depth / w, 4.0), 0.5) + 0.8))
    axes = fig.subplots(2, len(shown), squeeze=False, gridspec_kw={"height_ratios": [1.0, max(min(depth / w, 4.0), 0.5)]})
    for k, bead in enumerate(shown):
        box = _box(planes, bead, half)
        w = box.shape[2] * px
        axes[0, k].imshow(box.max(axis=0), cmap="magma", extent=(0, w, box.shape[1] * px, 0))
        centre = float(bead.get("z_um") or (z[0] + z[-1]) / 2)
        axes[1, k].imshow(box.max(axis=1), cmap="magma", aspect="equal", extent=(0, w, z[-1] - centre, z[0] - centre))
        axes[1, k].set_ylim(depth / 2, -depth / 2)
        axes[0, k].set_title(f"#{k + 1}\nx {_um(bead['fwhm_x_um'])}\ny {_um(bead['fwhm_y_um'])}", fontsize=6)
        axes[1, k].set_xlabel(f"z {_um(bead['fwhm_z_um'])}", fontsize=6)
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("XY", fontsize=7)
    axes[1, 0].set_ylabel("XZ", fontsize=7)
    fig.suptitle(f"{result['subject']}: FWHM (um) of each bead", fontsize=8)
    return png(fig)


def profiles(planes: np.ndarray, bead: dict[str, Any], result: dict[str, Any]) -> bytes:
    """The bead's x, y and z profiles (through its centre voxel) and the fitted models."""
    px = float(result["pixel_um"])
    z = np.asarray(result["z_um"])
    y0, x0, k0 = bead["y_px"], bead["x_px"], bead["z_index"]
    half = int(result["box_half_px"])
    fig = Figure(figsize=(9, 2.6))
    axes = fig.subplots(1, 3)
    cols = np.arange(x0 - half, x0 + half + 1)
    rows = np.arange(y0 - half, y0 + half + 1)
    data = {"x": (cols * px, planes[k0, y0, cols]), "y": (rows * px, planes[k0, rows, x0]), "z": (z, planes[:, y0, x0])}
    for ax, axis in zip(axes, "xyz"):
        coords, values = data[axis]
        ax.plot(coords, values, "o", ms=3, color="k", label="data")
        fwhm, centre = bead[f"fwhm_{axis}_um"], bead[f"{axis}_um"]
        if fwhm and centre is not None:
            fine = np.linspace(coords[0], coords[-1], 200)
            sigma = fwhm / 2.3548200450309493
            offset, amp = bead.get(f"fit_{axis}") or (float(np.min(values)), float(np.max(values) - np.min(values)))
            model = gaussian(fine, offset, amp, centre, sigma) if axis == "z" else \
                pixel_gaussian(fine / px, offset, amp, centre / px, sigma / px)
            ax.plot(fine, model, "-", color="tab:red", lw=1, label=f"FWHM {fwhm:.3g} um")
        ax.set_xlabel(f"{axis} (um)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ADU")
    fig.suptitle(f"{result['subject']}: profiles through the bead's centre voxel and the fitted models", fontsize=8)
    return png(fig)


def table(result: dict[str, Any]) -> str:
    """The line's table: measured, SD, theoretical, ratio per axis; bead counts by reason."""
    m = result["metrics"]
    theory = result.get("theory", {})
    rows = []
    for axis in "xyz":
        t = theory.get("axial_um" if axis == "z" else "lateral_um")
        plain = m.get(f"fwhm_{axis}_plain_um", {}).get("value")
        rows.append(f"<tr><td>{axis}</td><td class=num>{num(m[f'fwhm_{axis}_um']['value'])}</td><td class=num>{num(m[f'fwhm_{axis}_sd_um']['value'])}</td>"
                    f"<td class=num>{num(plain)}</td><td class=num>{num(t)}</td><td class=num>{num(m[f'fwhm_{axis}_ratio']['value'])}</td></tr>")
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in (result.get("rejections") or {}).items() if n) or "none"
    return (f"<table><tr><th>{e(result['subject'])}</th><th>FWHM mean</th><th>SD</th><th>plain Gaussian</th><th>theory</th><th>ratio</th></tr>"
            + "".join(rows) + "</table>"
            f"<p class=muted>um; SD with n - 1; emission {num(result.get('emission_nm'))} nm ({e(result.get('emission_source'))}); "
            f"NA {num(result.get('optics', {}).get('na'))}, n {num(result.get('optics', {}).get('immersion_index'))}; "
            f"beads found {num(m['beads_found']['value'])}, accepted {num(m['beads_accepted']['value'])}, rejected: {e(counts)}; "
            f"{num(result.get('satellites'))} spots of out-of-focus light left out. "
            f"Rules: {e(result.get('rules'))}</p>")
