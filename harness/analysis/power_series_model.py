"""A model of one power series, for the warm-up and mode-hop metrics (``harness.analysis.power_metrics``
states the definitions in its conventions).

The model, in units of the series' median power ``m`` and time ``x`` (s, the series' time):

    P(x) / m = c0 + c1 (x - x_mean) + sum_k h_k [x >= x_k] + b exp(-(x - x_first) / tau)

steady level ``c0``, linear drift ``c1``, a step ``h_k`` at each detected step (mode hop) and an
exponential settling term (amplitude ``b`` at the first reading, time constant ``tau``). For a
fixed ``tau`` the model is linear (ordinary least squares); ``tau`` is found by a search over a
logarithmic grid from the shortest reading interval to 10 x the record, refined by a bounded
1-D minimisation (variable projection). The drift and the settling term are each in or out, as the
data ask (the smallest Bayesian information criterion of the four models); the settling term is a
candidate only when it lowers the residual sum of squares significantly (F statistic for its 2
parameters >= ``SETTLING_MIN_F``). The uncertainty of the settling quantities comes from the
Jacobian of all parameters (``cov = s^2 (J^T J)^-1``, delta method).

Steps: successive differences, centred on their median, larger than ``STEP_THRESHOLD`` robust SDs
of them (1.4826 MAD, floored at ``NOISE_FLOOR`` of the level so a noise-free series has a scale, and at the
rounding noise of the readings: quantum x sqrt(2/12), the quantum being the smallest change between
successive readings that recurs: at least 3 times and in 1 % of the changes);
consecutive large differences are one step (a reading taken while the power hopped is left out of
the fit); large differences that add up to less than the threshold are a spike (readings off and
back), not a step, and its readings are left out of the fit. Found first in the readings (the large
hops), then in the residuals of the model (the smooth part removed, so a warm-up or a drift is not a
step); a step whose fitted size is not above the threshold is dropped. Detection and fit alternate
until the steps no longer change (at most ``MAX_ROUNDS`` rounds).

Callers may rely on: ``fit_series`` raises ``BadInput`` (the reason as text) for fewer than
``MIN_READINGS`` readings or a median power not above zero, never anything else for finite input;
``SeriesModel`` holds the fit (numbers and arrays); ``settling_crossing`` gives the time (after the
first reading) at which the settling term enters a band, or raises ``BadInput`` (or one of its
subclasses ``InsideBand``, ``StillSettling``, ``NoSettling``) saying why the record does not show it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar

from harness.analysis.input_checks import enough, positive
from harness.common.errors import BadInput

MAD_TO_SD = 1.4826  # the MAD of normally distributed values times this is their SD
STEP_THRESHOLD = 6.0  # robust SDs of the successive residual differences
QUANTUM_MIN_SHARE = 0.01  # a change recurring in at least this share of the changes can be the reading quantum
NOISE_FLOOR = 1e-6  # relative to the level: the smallest robust SD used (a noise-free series)
MIN_READINGS = 20  # for the model fit
SETTLING_MIN_F = 25.0  # F statistic (2 extra parameters) for the settling term to be kept
MAX_ROUNDS = 5
EXACT_RSS = 1e-24  # per reading, relative: a model this close fits exactly (noise-free input)
TAU_GRID = 60


@dataclass(frozen=True)
class Step:
    """A step of the power, complete at reading ``index`` (readings taken while it happened are not in the fit)."""

    index: int  # the first reading after the step
    time_s: float  # midway between the last reading before the step and the first after it
    size_pct: float  # in % of the fitted steady level just before it


@dataclass
class SeriesModel:
    """The fitted model (see the module doc); coefficients relative to the median power ``scale``."""

    x: np.ndarray
    used: np.ndarray  # readings in the fit (not those taken while the power hopped, nor spikes)
    scale: float
    steps: list[Step] = field(default_factory=list)
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))  # c0, c1, h_1..h_k[, b]
    tau_s: float = math.nan  # NaN: no settling term kept
    settling_f: float = 0.0  # F statistic of the settling term (0: not fitted)
    cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    residual_sd: float = 0.0  # relative to ``scale``

    def steady(self, x: float) -> float:
        """The fitted steady level (no settling term), relative, at time ``x``."""
        level = self.coef[0] + self.coef[1] * (x - float(np.mean(self.x)))
        for k, s in enumerate(self.steps):
            if x >= self.x[s.index]:
                level += self.coef[2 + k]
        return float(level)

    def fitted_w(self) -> np.ndarray:
        """The model at every reading, in the readings' unit."""
        return _prediction(self, self.x) * self.scale

    @property
    def settling_amplitude(self) -> float:
        """Relative amplitude of the settling term at the first reading (0 without one)."""
        return float(self.coef[-1]) if math.isfinite(self.tau_s) else 0.0


def _design(x: np.ndarray, step_at: list[float], tau: float | None, drift: bool = True) -> np.ndarray:
    """Columns: level, drift (zero when not fitted), steps, settling term (with a ``tau``)."""
    cols = [np.ones_like(x), (x - float(np.mean(x))) if drift else np.zeros_like(x)]
    cols += [(x >= a).astype(float) for a in step_at]
    if tau is not None:
        cols.append(np.exp(-(x - x[0]) / tau))
    return np.column_stack(cols)


def _solve(x: np.ndarray, y: np.ndarray, used: np.ndarray, step_at: list[float], tau: float | None, drift: bool) -> tuple[np.ndarray, float]:
    a = _design(x, step_at, tau, drift)[used]
    coef, *_ = np.linalg.lstsq(a, y[used], rcond=None)
    res = y[used] - a @ coef
    return coef, float(res @ res)


def _best_tau(x: np.ndarray, y: np.ndarray, used: np.ndarray, step_at: list[float], drift: bool) -> tuple[float, float]:
    """The time constant with the smallest residual sum of squares, and that sum."""
    span = float(x[-1] - x[0])
    grid = np.geomspace(max(float(np.min(np.diff(x))), span * 1e-4), 10.0 * span, TAU_GRID)
    rss = np.array([_solve(x, y, used, step_at, float(t), drift)[1] for t in grid])
    i = int(np.argmin(rss))
    lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    best = minimize_scalar(lambda u: _solve(x, y, used, step_at, math.exp(u), drift)[1], bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-4})
    if best.success and float(best.fun) <= rss[i]:
        return math.exp(float(best.x)), float(best.fun)
    return float(grid[i]), float(rss[i])


def _robust_sd(values: np.ndarray) -> float:
    return MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))


def reading_quantum(values: np.ndarray) -> float:
    """The reading quantum (a meter's display resolution): the smallest change from one reading to the
    next that recurs (at least ``QUANTUM_MIN_SHARE`` of the changes, and 3 times); 0 when none does
    (readings that are not rounded, or a clean step that happens once)."""
    v = np.asarray(values, dtype=float)
    d = np.abs(np.diff(v))
    scale = float(np.max(np.abs(v))) if len(v) else 0.0
    d = d[d > 1e-12 * scale]
    if len(d) < 3:
        return 0.0
    steps, counts = np.unique(np.round(d / (scale or 1.0), 12), return_counts=True)
    often = counts >= max(3, QUANTUM_MIN_SHARE * (len(v) - 1))
    return float(steps[often].min() * (scale or 1.0)) if often.any() else 0.0


def _difference_threshold(d: np.ndarray, quantum: float) -> float:
    """How large a change from one reading to the next must be to be a step: ``STEP_THRESHOLD`` robust
    SDs of the changes, the SD at least the rounding noise of two readings (quantum x sqrt(2/12): a
    rounded series whose changes are mostly 0 has a MAD of 0, and without it every display digit
    would be a hop)."""
    return STEP_THRESHOLD * max(_robust_sd(d), NOISE_FLOOR, quantum * math.sqrt(2.0 / 12.0))


def _step_groups(residual: np.ndarray, quantum: float = 0.0) -> tuple[list[tuple[int, int]], list[int]]:
    """(last reading before, first reading after) of each step in the residuals, and the readings of
    spikes (see the module doc)."""
    d = np.diff(residual)
    if len(d) < 2:
        return [], []
    c = d - float(np.median(d))
    threshold = _difference_threshold(d, quantum)
    big = np.abs(c) > threshold
    groups: list[tuple[int, int]] = []
    spikes: list[int] = []
    j = 0
    while j < len(d):
        if not big[j]:
            j += 1
            continue
        k = j
        while k + 1 < len(d) and big[k + 1]:
            k += 1
        if abs(float(np.sum(c[j:k + 1]))) > threshold:
            groups.append((j, k + 1))
        else:  # the power came back: readings j+1..k were off
            spikes += range(j + 1, k + 1)
        j = k + 1
    return groups, spikes


def fit_series(time_s: np.ndarray, power: np.ndarray) -> SeriesModel:
    """The model of the series (see the module doc). ``BadInput`` for too few readings or no power."""
    enough("power series model", len(power), MIN_READINGS)
    scale = positive("power series model: the median power", float(np.median(power)))
    x = np.asarray(time_s, dtype=float)
    y = np.asarray(power, dtype=float) / scale
    if float(x[-1] - x[0]) <= 0 or np.any(np.diff(x) <= 0):
        raise BadInput("power series model: reading times do not increase")
    quantum = reading_quantum(y)
    groups, spikes = _step_groups(y, quantum)  # the large steps first, from the readings themselves
    skip = set(spikes)
    model = _fit_with_steps(x, y, groups, scale, skip)
    for _ in range(MAX_ROUNDS):
        residual = y - _prediction(model, x)
        threshold = _difference_threshold(np.diff(residual), quantum)
        kept = [g for g, s in zip(groups, model.steps) if abs(s.size_pct) / 100.0 > threshold]
        found, spikes = _step_groups(residual, quantum)
        merged = sorted(set(kept) | set(found))
        if merged == groups and skip.issuperset(spikes):
            break
        groups, skip = merged, skip | set(spikes)
        model = _fit_with_steps(x, y, groups, scale, skip)
    return model


def _prediction(model: SeriesModel, x: np.ndarray) -> np.ndarray:
    tau = model.tau_s if math.isfinite(model.tau_s) else None
    return _design(x, [float(x[s.index]) for s in model.steps], tau) @ model.coef


def _fit_with_steps(x: np.ndarray, y: np.ndarray, groups: list[tuple[int, int]], scale: float, skip: set[int]) -> SeriesModel:
    """The model with steps at ``groups``, without the readings ``skip`` (spikes): drift and settling
    term each in or out, as the data ask (Bayesian information criterion; a settling term also
    needs F >= ``SETTLING_MIN_F``)."""
    used = np.ones(len(x), dtype=bool)
    used[sorted(skip)] = False
    for before, after in groups:
        used[before + 1:after] = False  # taken while the power hopped
    step_at = [float(x[after]) for _, after in groups]
    n = int(used.sum())
    candidates: list[tuple[float, bool, float | None, float]] = []  # (BIC, drift, tau or None, F)
    for drift in (False, True):
        k = 2 + len(groups) if drift else 1 + len(groups)
        _, rss0 = _solve(x, y, used, step_at, None, drift)
        candidates.append((_bic(n, rss0, k), drift, None, 0.0))
        if n > k + 4 and rss0 > EXACT_RSS * n:  # (an exact fit without it needs no settling term)
            tau, rss1 = _best_tau(x, y, used, step_at, drift)
            f = ((rss0 - rss1) / 2.0) / (rss1 / (n - k - 2)) if rss1 > 0 else (math.inf if rss0 > 0 else 0.0)
            if f >= SETTLING_MIN_F:
                candidates.append((_bic(n, rss1, k + 2), drift, tau, f))
    _, drift, tau_kept, f = min(candidates, key=lambda c: c[0])
    coef, rss = _solve(x, y, used, step_at, tau_kept, drift)
    columns = _design(x, step_at, tau_kept, drift)[used]
    if tau_kept is not None:
        xr = x[used] - x[0]
        columns = np.column_stack([columns, coef[-1] * xr / tau_kept**2 * np.exp(-xr / tau_kept)])
    if not drift:
        columns = np.delete(columns, 1, axis=1)
    s2 = rss / max(n - columns.shape[1], 1)
    try:
        cov = s2 * np.linalg.inv(columns.T @ columns)
    except np.linalg.LinAlgError:
        cov = np.full((columns.shape[1],) * 2, math.inf)
    if not drift:  # the drift coefficient is 0, without uncertainty
        cov = np.insert(np.insert(cov, 1, 0.0, axis=0), 1, 0.0, axis=1)
    model = SeriesModel(x=x, used=used, scale=scale, coef=coef, tau_s=tau_kept if tau_kept is not None else math.nan,
                        settling_f=float(f), cov=cov, residual_sd=math.sqrt(s2))
    for k, (before, after) in enumerate(groups):
        level = model.steady(float(x[before]))
        size = 100.0 * float(coef[2 + k]) / level if level > 0 else math.nan
        model.steps.append(Step(index=after, time_s=float(x[before] + x[after]) / 2.0, size_pct=size))
    return model


def _bic(n: int, rss: float, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + k * math.log(n)


def _settling_at(model: SeriesModel, x: float) -> tuple[float, float]:
    """The settling term's size relative to the steady level at ``x``, and its standard error
    (delta method over level, drift, steps, amplitude and time constant)."""
    tau, b = model.tau_s, model.settling_amplitude
    level = model.steady(x)
    dx = x - float(model.x[0])
    f = abs(b) * math.exp(-dx / tau) / level
    grad = np.zeros(len(model.cov))
    grad[0] = -f / level
    grad[1] = -f * (x - float(np.mean(model.x))) / level
    for k, s in enumerate(model.steps):
        grad[2 + k] = -f / level if x >= model.x[s.index] else 0.0
    grad[-2] = f / b
    grad[-1] = f * dx / tau**2
    var = float(grad @ model.cov @ grad)
    return f, (math.sqrt(var) if math.isfinite(var) and var >= 0 else math.inf)


def settling_crossing(model: SeriesModel, band: float, max_rel_se: float) -> float:
    """Time after the first reading at which the settling term enters +-``band`` (relative) of the
    steady level and stays. Raises ``InsideBand``: inside it from the first reading; ``StillSettling``:
    outside it at the last reading (each by more than 2 standard errors); ``NoSettling``: no settling
    term in the model; ``BadInput`` otherwise when the fit does not determine it (within 2 standard
    errors of the band edge at either end, or a standard error above ``max_rel_se`` of the time)."""
    x = model.x
    if not math.isfinite(model.tau_s) or model.settling_amplitude == 0.0:
        raise NoSettling(f"no settling term in the record (none lowers the residuals enough: F >= {SETTLING_MIN_F:g} needed)")
    tau, b = model.tau_s, model.settling_amplitude
    if model.steady(float(x[0])) <= 0 or model.steady(float(x[-1])) <= 0:
        raise BadInput("the fitted steady level is not above zero")
    side = "below" if b < 0 else "above"
    f0, se0 = _settling_at(model, float(x[0]))
    end, se_end = _settling_at(model, float(x[-1]))
    what = f"band +-{100 * band:g} %, settling time constant {tau:.0f} s"
    if end > band:
        if end - 2 * se_end > band:
            raise StillSettling(f"still settling at the end of the record: {100 * end:.2f} +- {100 * se_end:.2g} % {side} the fitted "
                                f"steady level ({what})", end)
        raise BadInput(f"the fit does not determine it: the settling term is {100 * end:.2f} +- {100 * se_end:.2g} % at the last reading ({what})")
    if f0 <= band:
        if f0 + 2 * se0 <= band:
            raise InsideBand(f"inside +-{100 * band:g} % of the fitted steady level from the first reading ({100 * f0:.2f} +- {100 * se0:.2g} % "
                             f"{side} it there)")
        raise BadInput(f"the fit does not determine it: the settling term is {100 * f0:.2f} +- {100 * se0:.2g} % at the first reading ({what})")
    crossing = tau * math.log(f0 / band)
    # crossing = tau ln(f0 / band): d crossing = ln(f0 / band) d tau + tau d f0 / f0 (f0's own error includes tau's)
    grad = np.zeros(len(model.cov))
    level0 = model.steady(float(x[0]))
    grad[0] = -tau / level0
    grad[1] = -tau * (float(x[0]) - float(np.mean(x))) / level0
    grad[-2] = tau / b
    grad[-1] = math.log(f0 / band)
    var = float(grad @ model.cov @ grad)
    se = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.inf
    if not se <= max_rel_se * max(crossing, float(np.median(np.diff(x)))):
        raise BadInput(f"the fit does not determine it: settling into +-{100 * band:g} % {crossing:.0f} +- {se:.0f} s after "
                       f"the first reading (standard error above {100 * max_rel_se:g} %; {what})")
    return crossing


class StillSettling(BadInput):
    """The settling term is outside the band at the last reading; ``fraction`` its relative size there."""

    def __init__(self, text: str, fraction: float) -> None:
        super().__init__(text)
        self.fraction = fraction


class InsideBand(BadInput):
    """The settling term is inside the band from the first reading."""


class NoSettling(BadInput):
    """No settling term is found in the record."""
