"""Illumination power metrics (QUAREP-LiMi WG1), as pure functions of readings.

Conventions (stated so results can be compared with other tools):
- stability S = 100 (1 - (Pmax - Pmin) / (Pmax + Pmin)) % (ISO 21073:2019, NBO IlluminationStability);
- CV = 100 SD / mean with the population SD (ddof = 0), as the QUAREP-LiMi Tool-Kit computes it;
- drift = ordinary-least-squares slope of power against time, in % of the mean power per hour;
- short-term noise = 100 SD(P_i+1 - P_i) / (sqrt(2) mean) %: reading-to-reading fluctuation, blind to
  slow drift and warm-up (for independent readings it is the relative SD of one reading);
- warm-up time = time from the first reading until the power stays within +-1 % of its final
  value (the mean of the last 10 % of readings);
- linearity: ordinary least squares (slope, intercept, R^2, as microscope-metrics) and the Tool-Kit's fit
  through the origin P = a s with chi^2 = sum (P_i - a s_i)^2 / |a s_i| over the set points > 0 (as the
  Tool-Kit, which fits every reading; with n readings per set point its chi^2 is larger); the largest
  relative deviation of a set point's mean power from the OLS line, in %, over the set points > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    value: float
    unit: str


def stability_pct(power: np.ndarray) -> float:
    p_max, p_min = float(np.max(power)), float(np.min(power))
    return 100.0 * (1.0 - (p_max - p_min) / (p_max + p_min))


def cv_pct(power: np.ndarray) -> float:
    return 100.0 * float(np.std(power, ddof=0)) / float(np.mean(power))


def drift_pct_per_h(time_s: np.ndarray, power: np.ndarray) -> float:
    if len(power) < 2 or np.ptp(time_s) == 0:
        return math.nan
    slope_per_s = np.polyfit(time_s, power, 1)[0]
    return 100.0 * slope_per_s * 3600.0 / float(np.mean(power))


def noise_pct(power: np.ndarray) -> float:
    if len(power) < 3:
        return math.nan
    return 100.0 * float(np.std(np.diff(power), ddof=1)) / math.sqrt(2.0) / float(np.mean(power))


def warmup_time_s(time_s: np.ndarray, power: np.ndarray, band_pct: float = 1.0) -> float:
    n_tail = max(1, len(power) // 10)
    final = float(np.mean(power[-n_tail:]))
    outside = np.abs(power - final) > band_pct / 100.0 * abs(final)
    if not outside.any():
        return 0.0
    last_out = int(np.nonzero(outside)[0][-1])
    if last_out + 1 >= len(power):
        return math.nan  # never settled within the record
    return float(time_s[last_out + 1] - time_s[0])


def power_series_metrics(time_s: np.ndarray, power_w: np.ndarray) -> dict[str, Metric]:
    p = np.asarray(power_w, dtype=float)
    t = np.asarray(time_s, dtype=float)
    mw = p * 1e3
    return {
        "mean_mw": Metric(float(np.mean(mw)), "mW"),
        "median_mw": Metric(float(np.median(mw)), "mW"),
        "sd_mw": Metric(float(np.std(mw, ddof=1)) if len(mw) > 1 else math.nan, "mW"),
        "min_mw": Metric(float(np.min(mw)), "mW"),
        "max_mw": Metric(float(np.max(mw)), "mW"),
        "stability_pct": Metric(stability_pct(p), "%"),
        "cv_pct": Metric(cv_pct(p), "%"),
        "drift_pct_per_h": Metric(drift_pct_per_h(t, p), "%/h"),
        "noise_pct": Metric(noise_pct(p), "%"),
        "warmup_time_s": Metric(warmup_time_s(t, p), "s"),
        "samples": Metric(float(len(p)), ""),
    }


def linearity_metrics(setpoint_mw: np.ndarray, power_mw: np.ndarray) -> dict[str, Metric]:
    """``setpoint_mw`` and the mean measured power at each set point."""
    s = np.asarray(setpoint_mw, dtype=float)
    p = np.asarray(power_mw, dtype=float)
    slope, intercept = np.polyfit(s, p, 1)
    fit = slope * s + intercept
    ss_res = float(np.sum((p - fit) ** 2))
    ss_tot = float(np.sum((p - np.mean(p)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    a = float(np.sum(s * p) / np.sum(s * s))
    nonzero = (s > 0) & (np.abs(a * s) > 0)  # as the Tool-Kit: a 0 set point would divide by 0
    chi2 = float(np.sum((p[nonzero] - a * s[nonzero]) ** 2 / np.abs(a * s[nonzero])))
    deviation = float(np.max(np.abs(p - fit)[nonzero] / np.abs(fit)[nonzero]) * 100.0) if nonzero.any() else math.nan
    return {
        "slope": Metric(float(slope), "mW/mW"),
        "intercept_mw": Metric(float(intercept), "mW"),
        "r_squared": Metric(r2, ""),
        "slope_through_origin": Metric(a, "mW/mW"),
        "chi_squared_through_origin": Metric(chi2, "mW"),
        "max_relative_deviation_pct": Metric(deviation, "%"),
        "setpoints": Metric(float(len(s)), ""),
    }
