"""What every analysis does with its metrics: judge them against the protocol's acceptance limits
and shape results.json entries; the result of a file that could not be analysed; partial metrics
not judged. Pure functions of their arguments (no file is read)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.analysis.contract import Result
from harness.analysis.metric import Metric
from harness.analysis.verdicts import judge, overall
from harness.protocol.protocol_file import Limit


def entry(name: str, metric: Metric, limits: Mapping[str, Limit]) -> dict[str, Any]:
    """One metric as results.json holds it: value (None when not finite), unit, limit, verdict
    (``not judged`` when the metric says why it was not computed, then ``reason``)."""
    limit = limits.get(name)
    value = None if not math.isfinite(metric.value) else metric.value
    out = {
        "value": value, "unit": metric.unit,
        "limit": limit.model_dump(by_alias=True) if limit else None,
        "verdict": "not judged" if metric.reason else judge(metric.value, limit),
    }
    if metric.reason:
        out["reason"] = metric.reason
    return out


def judged(metrics: Mapping[str, Metric], limits: Mapping[str, Limit]) -> tuple[dict[str, dict[str, Any]], str]:
    """Every metric judged (``entry``), and the overall verdict of them."""
    out = {name: entry(name, m, limits) for name, m in metrics.items()}
    return out, overall([m["verdict"] for m in out.values()])


def number(text: str | None) -> float:
    """A CSV cell as a number; an empty or unreadable cell is NaN (which the formulas refuse)."""
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def failed_result(source: str, kind: str | None, reason: str) -> Result:
    """The place of a result that could not be computed: not judged, with the reason."""
    what = {"power_series": "power series", "ome_tiff": "image stack"}.get(kind or "", kind or "file")
    return {"series": source, "kind": "analysis failed", "subject": source, "metrics": {}, "verdict": "not judged",
            "error": reason, "note": f"{what} not analysed: {reason}"}


def not_judged(results: list[Result], reason: str) -> None:
    """Partial metrics of a run that did not complete: values kept, verdicts not given."""
    for r in results:
        for m in r.get("metrics", {}).values():
            if m.get("verdict") != "not judged":
                m["verdict"], m["reason"] = "not judged", reason
        r["verdict"] = "not judged"
        r.setdefault("note", reason)
