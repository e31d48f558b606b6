"""The camera analysis' figures, from what its result holds (no file is read): the photon-transfer
curve with its gain fit range and saturation, SNR against signal with the EMVA 1288 linear model,
linearity with residuals, histograms of the dark and the high-pass lit non-uniformity, and the
defect-pixel map. Each returns PNG bytes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.report.plots import Figure, png


def _value(metrics: dict[str, Any], name: str) -> float | None:
    m = metrics.get(name) or {}
    v = m.get("value")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def photon_transfer(ptc: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    x, y = np.array(ptc["signal_adu"]), np.array(ptc["variance_adu2"])
    ax.plot(x, y, "o", ms=4, color="tab:blue", label="levels")
    lo, hi = ptc["gain_fit_range"]
    k = ptc.get("gain_adu_per_e")
    if k and hi >= lo and len(x):
        span = "to 70 % of saturation" if ptc.get("saturated") else "to 70 % of the largest variance: saturation not reached"
        ax.axvspan(float(x[lo]), float(x[hi]), color="tab:green", alpha=0.12, label=f"gain fit range ({span})")
        xs = np.linspace(0, float(x[hi]), 50)
        ax.plot(xs, k * xs, "-", color="tab:green", label=f"K = {k:.4g} ADU/e- (1/K = {1 / k:.4g} e-/ADU)")
    if ptc.get("saturated"):
        s = ptc["saturation_index"]
        ax.plot([x[s]], [y[s]], "s", ms=9, mfc="none", color="tab:red", label="saturation (largest variance)")
    if not k:
        ax.text(0.5, 0.5, "system gain not determined (see the metrics)", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("mean signal, dark subtracted (ADU)")
    ax.set_ylabel("temporal variance, dark subtracted (ADU^2)")
    ax.set_title("Photon transfer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return png(fig)


def snr(ptc: dict[str, Any], metrics: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    signal = np.array(ptc["signal_adu"])
    total = np.array(ptc["variance_adu2"]) + np.array(ptc["dark_variance_adu2"])
    ok = (signal > 0) & (total > 0)
    if ptc.get("saturated"):  # beyond saturation the variance collapses and the SNR means nothing
        ok[ptc["saturation_index"] + 1:] = False
    ax.loglog(signal[ok], signal[ok] / np.sqrt(total[ok]), "o", ms=4, label="measured")
    k = ptc.get("gain_adu_per_e")
    dark_adu = _value(metrics, "temporal_dark_noise_adu")
    if k and dark_adu and ok.any():
        s = np.geomspace(max(float(signal[ok].min()), 1e-3), float(signal[ok].max()), 100)
        ax.loglog(s, s / np.sqrt(dark_adu**2 + k * s), "-", label="model: mu_y / sqrt(sigma_y.dark^2 + K mu_y)")
        ax.loglog(s, np.sqrt(s / k), ":", color="grey", label="ideal: sqrt(mu_e)")
    ax.set_xlabel("mean signal, dark subtracted (ADU)")
    ax.set_ylabel("SNR")
    ax.set_title("Signal-to-noise ratio")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return png(fig)


def linearity(ptc: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(6, 5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    t = np.array(ptc["exposure_s"]) * 1000
    signal = np.array(ptc["signal_adu"])
    top.plot(t, signal, "o", ms=4, label="signal")
    slope, offset = ptc.get("linearity_fit") or (None, None)
    lo, hi = ptc["linearity_fit_range"]
    if slope is not None and offset is not None and hi > lo:
        top.plot(t, slope * (t / 1000) + offset, "-", color="tab:green", label="fit (5-95 % of saturation)")
        top.axvspan(float(t[lo]), float(t[hi]), color="tab:green", alpha=0.1)
        dev = np.array([np.nan if v is None else v for v in ptc["linearity_deviation_pct"]], dtype=float)
        bottom.plot(t[lo:hi + 1], dev[lo:hi + 1], "o-", ms=3)
    bottom.axhline(0, color="k", lw=0.5)
    top.set_ylabel("signal (ADU, dark subtracted)")
    bottom.set_ylabel("deviation (%)")
    bottom.set_xlabel("exposure time (ms)")
    top.set_title("Linearity")
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    top.legend(fontsize=7)
    return png(fig)


def histograms(hists: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(8, 3.2))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "dsnu_adu", "dark mean image - its mean (ADU)"), (axes[1], "prnu_pct", "high-pass lit image (% of signal)")):
        h = hists.get(key)
        if not h:
            ax.set_axis_off()
            continue
        edges, counts = np.array(h["edges"]), np.array(h["counts"])
        ax.stairs(np.maximum(counts, 0.5), edges, fill=True, alpha=0.6)
        ax.set_yscale("log")
        ax.set_xlabel(label + (f"; {h['outside']} pixels outside" if h.get("outside") else ""))
        ax.set_ylabel("pixels")
        ax.grid(alpha=0.3)
    axes[0].set_title("DSNU")
    axes[1].set_title("PRNU")
    return png(fig)


def defect_map(defects: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    h, w = defects["shape"]
    for kind, colour, marker in (("hot", "tab:red", "o"), ("dead", "black", "s"), ("noisy", "tab:orange", "^")):
        found = defects.get(kind)
        if found:
            rows, cols = zip(*found, strict=True)
            ax.plot(cols, rows, marker, ms=6, mfc="none", color=colour, label=f"{kind} ({len(found)})")
        else:
            ax.plot([], [], marker, color=colour, label=f"{kind}: " + ("not determined" if found is None else "none"))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    ax.set_title("Defect pixels")
    ax.legend(fontsize=7, loc="upper right")
    return png(fig)
