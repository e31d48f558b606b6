"""What every fit and formula of the analyses checks before it computes: finite numbers, enough
points, something that varies, a denominator that is not zero. A check that fails raises
``BadInput`` whose text is the reason (for a whole result: the analysis refuses its input, see
``harness.finishing.results``), or gives a ``Metric`` that is not computed with the reason (one metric: it is
``not judged`` and says why). No fit is ever handed a NaN or an infinity.
"""

from __future__ import annotations

import math

import numpy as np

from harness.common.errors import BadInput


def finite(what: str, values: np.ndarray) -> np.ndarray:
    """``values`` as float; BadInput if any is NaN or infinite (naming how many and the first)."""
    arr = np.asarray(values, dtype=float)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0])
        raise BadInput(f"{what}: {int(bad.sum())} of {arr.size} values are not finite numbers (first at index {first}: {arr.ravel()[first]})")
    return arr


def enough(what: str, n: int, need: int) -> None:
    if n < need:
        raise BadInput(f"{what}: needs at least {need} points, has {n}")


def varies(what: str, values: np.ndarray) -> None:
    if np.asarray(values).size and float(np.ptp(values)) == 0.0:
        raise BadInput(f"{what}: all values are equal ({float(np.asarray(values).ravel()[0]):g}): nothing to fit")


def line_fit(x: np.ndarray, y: np.ndarray, what: str) -> tuple[float, float]:
    """Ordinary-least-squares slope and intercept, after the checks (finite, >= 2 points, x varies)."""
    x, y = finite(f"{what} (x)", x), finite(f"{what} (y)", y)
    enough(what, len(x), 2)
    varies(f"{what} (x)", x)
    try:
        slope, intercept = np.polyfit(x, y, 1)
    except (np.linalg.LinAlgError, ValueError) as exc:  # checked above; a numerical failure is still a refusal
        raise BadInput(f"{what}: the fit did not converge ({exc})") from None
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise BadInput(f"{what}: the fit gave no finite line")
    return float(slope), float(intercept)


def positive(what: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise BadInput(f"{what} is {value:g}, not above zero")
    return value
