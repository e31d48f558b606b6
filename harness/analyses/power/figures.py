"""The power analysis' figures: power against time (stability) and the linearity fit with its
residuals. Plain numbers in, PNG bytes out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.report.plots import Figure, png


def power_vs_time(t_s: np.ndarray, p_mw: np.ndarray, title: str, stability_limit_pct: float | None,
                  hops_s: Sequence[float] = (), warmup_end_s: float | None = None) -> bytes:
    """Power against time with the measured min-max band and, with a limit, the band it allows around
    the mean; the detected mode hops (``hops_s``) and the end of the warm-up (``warmup_end_s``, drawn
    when it falls in the record) marked as vertical lines."""
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
    for i, hop in enumerate(hops_s):
        ax.axvline(hop / 60.0, color="tab:red", ls=":", lw=1.2, label="mode hop" if i == 0 else None)
    if warmup_end_s is not None and warmup_end_s >= float(t_s[0]):
        ax.axvline(warmup_end_s / 60.0, color="tab:green", ls="-.", lw=1.2, label="end of warm-up")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("power (mW)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return png(fig)


def linearity(setpoints: np.ndarray, powers: np.ndarray, slope: float, intercept: float, origin_slope: float | None, title: str) -> bytes:
    """Mean power per set point with the OLS and through-origin fits; residuals relative to the OLS fit."""
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
    return png(fig)
