"""Truth that changes over days: a laser whose output declines with age or steps on a date (a fibre
coupling that degrades), a stage axis that wears. Days count from the world's ``day_zero`` (an
aware UTC date-time) at the station clock's date (``Clock.utc``), so that runs on different dates,
each with its own station clock, see one history.

Pure functions of the parameters and the date; no randomness. ``days_since`` raises ValueError
when a truth that changes with the date has no ``day_zero`` (``WorldParams`` refuses that first).
"""

from __future__ import annotations

from datetime import datetime

from .clock import Clock
from .params import AxisParams, LaserParams


def days_since(day_zero: datetime | None, clock: Clock, t: float) -> float:
    """Days from ``day_zero`` to the date-time of station time ``t``."""
    if day_zero is None:
        raise ValueError("a truth that changes with the date needs the simulation's day_zero")
    return (clock.utc(t) - day_zero).total_seconds() / 86400.0


def laser_age_factor(p: LaserParams, day: float) -> float:
    """Output on ``day`` relative to the new laser's: linear ageing from ``ageing_from_day`` times
    every step whose day has come (never below 0)."""
    factor = 1.0 + p.ageing_pct_per_day / 100.0 * max(day - p.ageing_from_day, 0.0)
    for step in p.power_steps:
        if day >= step.day:
            factor *= 1.0 + step.step_pct / 100.0
    return max(factor, 0.0)


def axis_backlash_um(p: AxisParams, day: float) -> float:
    """Backlash on ``day``: the axis's own plus its growth since ``wear_from_day``."""
    return p.backlash_um + p.backlash_growth_um_per_day * max(day - p.wear_from_day, 0.0)


def axis_repeatability_um(p: AxisParams, day: float) -> float:
    """Repeatability error (sigma of one move) on ``day``."""
    return p.repeatability_sigma_um + p.repeatability_growth_um_per_day * max(day - p.wear_from_day, 0.0)
