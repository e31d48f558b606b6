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
Input: readings that are not finite numbers are refused (``BadInput``); a metric whose formula
cannot apply (too few readings, a mean power not above zero, set points that do not vary) is not
computed and says why (``Metric.reason``): it is then ``not judged``, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.analysis.input_checks import enough, finite, line_fit, positive
from harness.common.errors import BadInput


@dataclass(frozen=True)
class Metric:
    value: float
    unit: str
    reason: str = ""  # why it was not computed (value NaN): the metric is not judged


def computed(unit: str, formula: Callable[[], float]) -> Metric:
    """The formula's value, or a metric that says why its input does not allow it."""
    try:
        return Metric(float(formula()), unit)
    except BadInput as exc:
        return Metric(math.nan, unit, str(exc))


def stability_pct(power: np.ndarray) -> float:
    p_max, p_min = float(np.max(power)), float(np.min(power))
    positive("stability: Pmax + Pmin", p_max + p_min)
    return 100.0 * (1.0 - (p_max - p_min) / (p_max + p_min))


def cv_pct(power: np.ndarray) -> float:
    mean = positive("CV: the mean power", float(np.mean(power)))
    return 100.0 * float(np.std(power, ddof=0)) / mean


def drift_pct_per_h(time_s: np.ndarray, power: np.ndarray) -> float:
    slope_per_s, _ = line_fit(time_s, power, "drift: power against time")
    return 100.0 * slope_per_s * 3600.0 / positive("drift: the mean power", float(np.mean(power)))


def noise_pct(power: np.ndarray) -> float:
    enough("short-term noise", len(power), 3)
    mean = positive("short-term noise: the mean power", float(np.mean(power)))
    return 100.0 * float(np.std(np.diff(power), ddof=1)) / math.sqrt(2.0) / mean


WARMUP_MIN_READINGS = 10  # the final value is the mean of the last 10 % of the readings


def warmup_time_s(time_s: np.ndarray, power: np.ndarray, band_pct: float = 1.0) -> float:
    enough("warm-up time", len(power), WARMUP_MIN_READINGS)
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
    """Raises ``BadInput`` for readings or times that are not finite numbers, or no reading at all."""
    p = finite("power readings (W)", power_w)
    t = finite("reading times (s)", time_s)
    if len(t) != len(p):
        raise BadInput(f"{len(p)} readings but {len(t)} reading times")
    enough("power readings", len(p), 1)
    mw = p * 1e3
    return {
        "mean_mw": Metric(float(np.mean(mw)), "mW"),
        "median_mw": Metric(float(np.median(mw)), "mW"),
        "sd_mw": computed("mW", lambda: _sd(mw)),
        "min_mw": Metric(float(np.min(mw)), "mW"),
        "max_mw": Metric(float(np.max(mw)), "mW"),
        "stability_pct": computed("%", lambda: stability_pct(p)),
        "cv_pct": computed("%", lambda: cv_pct(p)),
        "drift_pct_per_h": computed("%/h", lambda: drift_pct_per_h(t, p)),
        "noise_pct": computed("%", lambda: noise_pct(p)),
        "warmup_time_s": computed("s", lambda: warmup_time_s(t, p)),
        "samples": Metric(float(len(p)), ""),
    }


def linearity_metrics(setpoint_mw: np.ndarray, power_mw: np.ndarray) -> dict[str, Metric]:
    """``setpoint_mw`` and the mean measured power at each set point. Raises ``BadInput`` for values
    that are not finite, fewer than 2 set points, or set points that do not vary."""
    s = finite("linearity: set points (mW)", setpoint_mw)
    p = finite("linearity: mean power per set point (mW)", power_mw)
    if len(s) != len(p):
        raise BadInput(f"linearity: {len(s)} set points but {len(p)} mean powers")
    slope, intercept = line_fit(s, p, "linearity: power against set point")
    fit = slope * s + intercept
    ss_res = float(np.sum((p - fit) ** 2))
    ss_tot = float(np.sum((p - np.mean(p)) ** 2))
    r2 = computed("", lambda: 1.0 - ss_res / positive("R^2: the spread of the measured powers", ss_tot))
    a = float(np.sum(s * p) / np.sum(s * s))  # sum(s^2) > 0: the set points vary
    nonzero = (s > 0) & (np.abs(a * s) > 0)  # as the Tool-Kit: a 0 set point would divide by 0

    def chi2() -> float:
        if not nonzero.any():
            raise BadInput("chi^2 through the origin: no set point above zero with a non-zero fitted power")
        return float(np.sum((p[nonzero] - a * s[nonzero]) ** 2 / np.abs(a * s[nonzero])))

    def deviation() -> float:
        ok = nonzero & (np.abs(fit) > 0)
        if not ok.any():
            raise BadInput("largest relative deviation: no set point above zero with a non-zero fitted power")
        return float(np.max(np.abs(p - fit)[ok] / np.abs(fit)[ok]) * 100.0)

    return {
        "slope": Metric(slope, "mW/mW"),
        "intercept_mw": Metric(intercept, "mW"),
        "r_squared": r2,
        "slope_through_origin": Metric(a, "mW/mW"),
        "chi_squared_through_origin": computed("mW", chi2),
        "max_relative_deviation_pct": computed("%", deviation),
        "setpoints": Metric(float(len(s)), ""),
    }


def _sd(values: np.ndarray) -> float:
    """The sample SD (ddof = 1); ``BadInput`` with fewer than 2 values."""
    enough("SD", len(values), 2)
    return float(np.std(values, ddof=1))
