"""Judge metrics against a protocol's acceptance limits: pass, warn, fail, or not judged."""

from __future__ import annotations

import math

from harness.protocol.protocol_file import Limit

ORDER = {"fail": 3, "warn": 2, "pass": 1, "not judged": 0}


def _inside(value: float, bounds: tuple[float | None, float | None]) -> bool:
    lo, hi = bounds
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def judge(value: float, limit: Limit | None) -> str:
    if limit is None:
        return "not judged"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "fail"  # a metric that could not be computed cannot pass
    if _inside(value, limit.pass_):
        return "pass"
    if limit.warn is not None and _inside(value, limit.warn):
        return "warn"
    return "fail"


def overall(verdicts: list[str]) -> str:
    return max(verdicts, key=lambda v: ORDER[v], default="not judged")
