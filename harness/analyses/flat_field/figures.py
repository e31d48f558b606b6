"""The flat-field analysis' figure: the field illumination heat map with iso-intensity contours,
and its profiles. Plain numbers in, PNG bytes out."""

from __future__ import annotations

import numpy as np

from harness.report.plots import Figure, png


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
    return png(fig)
