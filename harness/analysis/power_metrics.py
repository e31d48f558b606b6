"""Illumination power metrics (QUAREP-LiMi WG1), as pure functions of readings.

Conventions (stated so results can be compared with other tools):
- stability S = 100 (1 - (Pmax - Pmin) / (Pmax + Pmin)) % (ISO 21073:2019, NBO IlluminationStability);
- CV = 100 SD / mean with the population SD (ddof = 0), as the QUAREP-LiMi Tool-Kit computes it;
- drift = ordinary-least-squares slope of power against time, in % of the mean power per hour;
- short-term noise = 100 x 1.4826 MAD(r_i+1 - r_i) / (sqrt(2) median(P)) %, r the residuals of the
  fitted model below (the readings themselves when there are too few for it), MAD the median absolute
  deviation from the median difference: the SD of one reading about the slow course of the power,
  robust to the few large differences of mode hops and spikes and blind to drift and warm-up
  (1.4826 MAD is the SD of normal values; sqrt(2): a difference of two independent readings); at
  least the readings' rounding noise q / sqrt(12), q the smallest recurring change between successive
  readings (a quiet laser on a meter with few digits reads its resolution, not 0);
- the model behind the next two (``harness.analysis.power_series_model``): P = steady level + linear
  drift + a step at each detected hop + b exp(-(t - t_first) / tau), fitted by least squares (tau by a
  1-D search); the drift and the settling term are each kept only when the data ask for them
  (Bayesian information criterion; the settling term also needs F >= 25 for its 2 parameters), so
  on a short record a slow settling is not split arbitrarily between drift and settling;
- mode hops (steps): a change from one reading to the next, first of the readings, then of the
  residuals of the model (warm-up and drift removed), larger than 6 robust SDs (1.4826 MAD) of those
  changes, that the fit confirms (fitted step above the same threshold); a reading taken while the
  power hopped is left out of the fit; readings off and back (a spike) are not a step and are left
  out of the fit. ``mode_hops`` counts them; ``mode_hop_max_pct`` is the largest by size (signed, in %
  of the fitted steady level just before it; 0 with none); ``mode_hop_time_s`` its time (midway
  between the readings around it, on the series' time axis, s since the run started; not determined
  with none). The result lists every step (``mode_hops``: time_s, size_pct, index of the first
  reading after it);
- warm-up time = time from emission on (the run's journal: the last ``emission: on`` of the line(s)
  before the first reading, written once the light is out) until the fitted settling term stays inside
  +-0.5 % of the fitted steady level: t = (t_first - t_on) + tau ln(|b| / (0.005 L)), b the settling
  term at the first reading and L the steady level there. Not determined (with the reason) when the
  run does not record emission on; when the term is inside the band from the first reading (the
  warm-up ended before the record: at most t_first - t_on); when no settling term is found (the same,
  or a settling too slow to tell from drift); when the term is still outside the band at the last
  reading (the reason says how far from the fitted steady level, +- its standard error); when either
  of the last two is within 2 standard errors of the band edge, or the time's standard error (delta
  method from the fit's covariance) is above 25 % of it: the fit does not determine it;
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

import numpy as np

from harness.analysis.input_checks import enough, finite, line_fit, positive
from harness.analysis.metric import Metric, computed
from harness.analysis.power_series_model import MAD_TO_SD, InsideBand, NoSettling, SeriesModel, Step, fit_series, reading_quantum, settling_crossing
from harness.common.errors import BadInput


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


def noise_pct(power: np.ndarray, smooth: np.ndarray | None = None) -> float:
    """Short-term noise (see the conventions); ``smooth``: the fitted model, removed first."""
    enough("short-term noise", len(power), 3)
    level = positive("short-term noise: the median power", float(np.median(power)))
    if len(np.unique(power)) == 1:
        raise BadInput(f"all {len(power)} readings are the same ({float(power[0]):.6g} W): the noise is below the meter's resolution")
    d = np.diff(power if smooth is None else power - smooth)
    spread = MAD_TO_SD * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0)
    return 100.0 * max(spread, reading_quantum(power) / math.sqrt(12.0)) / level


WARMUP_BAND_PCT = 0.5  # the settling term inside +-0.5 % of the steady level
WARMUP_MAX_REL_SE = 0.25  # the warm-up time is reported when its standard error is at most 25 % of it


def warmup_time_s(model: SeriesModel, emission_on_s: float | None, band_pct: float = WARMUP_BAND_PCT) -> float:
    """Time from emission on until the settling term stays in the band (see the conventions);
    ``BadInput`` with the reason when the record does not show it."""
    if emission_on_s is None:
        raise BadInput("the run does not record when emission came on (no emission-on setting of the line in its journal)")
    delay = float(model.x[0]) - emission_on_s
    if delay < 0:
        raise BadInput(f"emission came on {-delay:.1f} s after the first reading")
    try:
        return delay + settling_crossing(model, band_pct / 100.0, WARMUP_MAX_REL_SE)
    except InsideBand as exc:
        raise BadInput(f"the record starts {delay:.0f} s after emission on, {exc}: the warm-up ended before it (at most {delay:.0f} s)") from None
    except NoSettling as exc:
        raise BadInput(f"the record starts {delay:.0f} s after emission on, {exc}: the warm-up ended before it (at most {delay:.0f} s) "
                       "or is too slow to tell from drift") from None
    except BadInput as exc:
        raise BadInput(f"{exc} (record from {delay:.0f} s to {delay + float(model.x[-1] - model.x[0]):.0f} s after emission on)") from None


def step_metrics(model: SeriesModel | None, reason: str = "") -> dict[str, Metric]:
    """``mode_hops``, ``mode_hop_max_pct`` and ``mode_hop_time_s`` of a fitted series (see the conventions)."""
    if model is None:
        return {"mode_hops": Metric(math.nan, "", reason), "mode_hop_max_pct": Metric(math.nan, "%", reason),
                "mode_hop_time_s": Metric(math.nan, "s", reason)}
    if not model.steps:
        return {"mode_hops": Metric(0.0, ""), "mode_hop_max_pct": Metric(0.0, "%"),
                "mode_hop_time_s": Metric(math.nan, "s", "no mode hop (step) detected")}
    largest = max(model.steps, key=lambda s: abs(s.size_pct))
    return {"mode_hops": Metric(float(len(model.steps)), ""), "mode_hop_max_pct": Metric(largest.size_pct, "%"),
            "mode_hop_time_s": Metric(largest.time_s, "s")}


def power_series_analysis(time_s: np.ndarray, power_w: np.ndarray, emission_on_s: float | None = None) -> tuple[dict[str, Metric], list[Step]]:
    """The stability metrics of a series and the steps (mode hops) found in it. ``emission_on_s``:
    when emission came on, on the series' time axis (None: not recorded). Raises ``BadInput`` for
    readings or times that are not finite numbers, or no reading at all."""
    p = finite("power readings (W)", power_w)
    t = finite("reading times (s)", time_s)
    if len(t) != len(p):
        raise BadInput(f"{len(p)} readings but {len(t)} reading times")
    enough("power readings", len(p), 1)
    mw = p * 1e3
    model: SeriesModel | None = None
    try:
        model = fit_series(t, p)
        model_reason = ""
    except BadInput as exc:
        model_reason = str(exc)
    fitted = model
    metrics = {
        "mean_mw": Metric(float(np.mean(mw)), "mW"),
        "median_mw": Metric(float(np.median(mw)), "mW"),
        "sd_mw": computed("mW", lambda: _sd(mw)),
        "min_mw": Metric(float(np.min(mw)), "mW"),
        "max_mw": Metric(float(np.max(mw)), "mW"),
        "stability_pct": computed("%", lambda: stability_pct(p)),
        "cv_pct": computed("%", lambda: cv_pct(p)),
        "drift_pct_per_h": computed("%/h", lambda: drift_pct_per_h(t, p)),
        "noise_pct": computed("%", lambda: noise_pct(p, fitted.fitted_w() if fitted is not None else None)),
        "warmup_time_s": (computed("s", lambda: warmup_time_s(fitted, emission_on_s)) if fitted is not None
                          else Metric(math.nan, "s", model_reason)),
        **step_metrics(model, model_reason),
        "samples": Metric(float(len(p)), ""),
    }
    return metrics, (model.steps if model is not None else [])


def power_series_metrics(time_s: np.ndarray, power_w: np.ndarray, emission_on_s: float | None = None) -> dict[str, Metric]:
    """The metrics of ``power_series_analysis``."""
    return power_series_analysis(time_s, power_w, emission_on_s)[0]


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
