"""Small HTML pieces shared by the run report and the analyses' own report sections: escaping,
numbers, verdict badges, limits, embedded figures. Pure functions returning HTML text."""

from __future__ import annotations

import base64
import html
from typing import Any

COLOURS = {"pass": "#1b7f3b", "warn": "#b36b00", "fail": "#b3261e", "not judged": "#5f6368"}


def e(value: Any) -> str:
    """Text escaped for HTML (None is empty)."""
    return html.escape("" if value is None else str(value))


def badge(verdict: str, big: bool = False) -> str:
    return f'<span class="verdict{" big" if big else ""}" style="background:{COLOURS.get(verdict, "#5f6368")}">{e(verdict.upper())}</span>'


def num(value: Any) -> str:
    """A number for a table cell: floats with 5 significant digits, None as ``n/a``."""
    if value is None:
        return "n/a"
    return f"{value:.5g}" if isinstance(value, float) else e(value)


def limit_text(limit: dict[str, Any] | None) -> str:
    """An acceptance limit as ``pass >= 90; warn 80 .. 100`` (escaped)."""
    if not limit:
        return ""

    def rng(bounds: list[Any] | None) -> str:
        if bounds is None:
            return ""
        lo, hi = bounds
        if lo is not None and hi is not None:
            return f"{lo:g} .. {hi:g}"
        return f">= {lo:g}" if lo is not None else f"<= {hi:g}"

    text = f"pass {rng(limit.get('pass'))}"
    if limit.get("warn"):
        text += f"; warn {rng(limit['warn'])}"
    return e(text)


def figure(png: bytes, caption: str) -> str:
    """A PNG embedded as a data URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}"><figcaption>{e(caption)}</figcaption></figure>'


def limit_value(result: dict[str, Any], metric: str, side: int) -> float | None:
    """One bound (0: lower, 1: upper) of a result's metric's pass range; None without a limit."""
    m = result["metrics"].get(metric)
    if not m or not m["limit"]:
        return None
    value: float | None = m["limit"]["pass"][side]
    return value
