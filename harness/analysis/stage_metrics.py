"""Stage repeatability (QUAREP-LiMi WG6) from image pairs: each ``return`` frame is registered
against the ``reference`` frame taken just before it in the same cycle.

Conventions: displacement = the stage's positioning error as seen by the camera: the sample's image
moves opposite to the stage, so d = -(image shift) x pixel size, in um, per axis. Tables per move
size, for all approach directions and per direction: mean, SD (n-1) and max |d| per axis, and
max |d| of the 2-D displacement.
Input: frames that cannot be registered (see ``registration.py``) and a stack without a single
reference/return pair (or ISO 230-2 target with an up-approach image) are refused with ``BadInput``;
an SD from fewer than 2 values is not computed and says why.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import numpy as np

from harness.analysis.metric import Metric
from harness.analysis.registration import shift_px
from harness.common.errors import BadInput


def pair_frames(rows: list[dict[str, Any]], reference: str = "reference", ret: str = "return") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(reference row, return row) pairs in acquisition order (rows with ``status`` and ``tag``; the tags
    ``reference``/``return`` unless named: the Z repeatability pairs z-stacks the same way); rows without
    a real frame are skipped."""
    pairs, last = [], None
    for row in rows:
        if row["status"] != "ok":
            last = None if row["tag"] == reference else last
            continue
        if row["tag"] == reference:
            last = row
        elif row["tag"] == ret and last is not None:
            pairs.append((last, row))
            last = None
    return pairs


def displacements(pairs: list[tuple[dict[str, str], dict[str, str]]], page: Any, pixel_um: float) -> list[dict[str, Any]]:
    if not pairs:
        raise BadInput("stage repeatability: no reference/return pair with both frames recorded")
    if not (math.isfinite(pixel_um) and pixel_um > 0):
        raise BadInput(f"stage repeatability: the pixel size is {pixel_um}, not a positive number")
    out = []
    for ref, ret in pairs:
        dx, dy = shift_px(page(int(ref["ifd"])), page(int(ret["ifd"])))
        ctx = json.loads(ret["context"] or "{}")
        out.append({"size": str(ctx.get("size", "")), "direction": str(ctx.get("direction", "")), "round": ctx.get("round"),
                    "dx_um": -dx * pixel_um, "dy_um": -dy * pixel_um})
    return out


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "mean_um": float(np.mean(values)),
        "sd_um": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
        "max_abs_um": float(np.max(np.abs(values))),
    }


def repeatability_tables(rows: list[dict[str, Any]], axes: tuple[str, ...] = ("x", "y")) -> dict[str, Any]:
    """Per move size, per direction ("all" first): n, and per axis a (rows' ``d<axis>_um``) mean, SD, max |d|;
    with the two axes x and y also max |d| of the 2-D displacement (the Z repeatability uses ``axes=("z",)``)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["size"]].append(r)
    out = {}
    for size, items in groups.items():
        table: dict[str, Any] = {}
        for direction in ["all"] + sorted({r["direction"] for r in items}):
            sel = [r for r in items if direction == "all" or r["direction"] == direction]
            d = {a: np.array([r[f"d{a}_um"] for r in sel]) for a in axes}
            table[direction] = {"n": len(sel), **{a: _stats(v) for a, v in d.items()}}
            if axes == ("x", "y"):
                table[direction]["max_abs_2d_um"] = float(np.max(np.hypot(d["x"], d["y"])))
        out[size] = table
    return out


def repeatability_metrics(table: dict[str, Any]) -> dict[str, Metric]:
    """Headline metrics of one move size (all directions)."""
    a = table["all"]
    few = "" if a["n"] > 1 else f"an SD needs at least 2 reference/return pairs, there {'is' if a['n'] == 1 else 'are'} {a['n']}"
    return {
        "max_displacement_um": Metric(a["max_abs_2d_um"], "um"),
        "sd_x_um": Metric(a["x"]["sd_um"], "um", few),
        "sd_y_um": Metric(a["y"]["sd_um"], "um", few),
        "mean_x_um": Metric(a["x"]["mean_um"], "um"),
        "mean_y_um": Metric(a["y"]["mean_um"], "um"),
        "pairs": Metric(float(a["n"]), ""),
    }


def iso230_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The frame-log rows ``iso230_metrics`` registers: recorded up/down frames of the targets that
    have an up-approach image."""
    ok = [r for r in rows if r["status"] == "ok" and r["tag"] in ("up", "down")]
    with_up = {_target(r) for r in ok if r["tag"] == "up"}
    return [r for r in ok if _target(r) in with_up]


def _target(row: dict[str, str]) -> str:
    return str(json.loads(row["context"] or "{}").get("target", ""))


def iso230_metrics(rows: list[dict[str, str]], page: Any, pixel_um: float, axis: str = "x") -> tuple[dict[str, Metric], list[dict[str, Any]]]:
    """ISO 230-2 along one axis from images at each target and approach (``tag`` up / down).

    Deviations are measured relative to the first up-approach image at each target (no absolute scale is
    in the sample), so the repeatability R (and R_up, R_down) and reversal B are reported; the
    systematic deviation E, range M and accuracy A need an absolute reference and are not.
    Notation after ISO 230-2: s with n - 1; B_i = mean_up - mean_down; R_i = max(2 s_up + 2 s_down + |B_i|, 4 s_up, 4 s_down).
    """
    by_target: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: {"up": [], "down": []})
    for row in rows:
        if row["status"] == "ok" and row["tag"] in ("up", "down"):
            by_target[_target(row)][row["tag"]].append(row)
    index = 0 if axis == "x" else 1
    if not any(groups["up"] for groups in by_target.values()):
        raise BadInput("ISO 230-2: no target with an up-approach image")
    if not (math.isfinite(pixel_um) and pixel_um > 0):
        raise BadInput(f"ISO 230-2: the pixel size is {pixel_um}, not a positive number")
    table: list[dict[str, Any]] = []
    for target, groups in by_target.items():
        if not groups["up"]:
            continue
        ref = page(int(groups["up"][0]["ifd"]))
        dev = {d: np.array([-shift_px(ref, page(int(r["ifd"])))[index] * pixel_um for r in groups[d]]) for d in ("up", "down")}
        s_up = float(np.std(dev["up"], ddof=1)) if len(dev["up"]) > 1 else math.nan
        s_down = float(np.std(dev["down"], ddof=1)) if len(dev["down"]) > 1 else math.nan
        b_i = float(np.mean(dev["up"]) - np.mean(dev["down"])) if len(dev["down"]) else math.nan
        table.append({
            "target": target, "n_up": len(dev["up"]), "n_down": len(dev["down"]),
            "mean_up_um": float(np.mean(dev["up"])), "mean_down_um": float(np.mean(dev["down"])) if len(dev["down"]) else math.nan,
            "s_up_um": s_up, "s_down_um": s_down, "B_i_um": b_i,
            "R_up_i_um": 4 * s_up, "R_down_i_um": 4 * s_down,
            "R_i_um": max(2 * s_up + 2 * s_down + abs(b_i), 4 * s_up, 4 * s_down),
        })
    def worst(key: str, absolute: bool = False) -> float:
        values = [abs(t[key]) if absolute else t[key] for t in table if not math.isnan(t[key])]
        return max(values) if values else math.nan

    def metric(key: str, why: str, absolute: bool = False) -> Metric:
        value = worst(key, absolute)
        return Metric(value, "um", "" if math.isfinite(value) else why)

    two = "needs at least 2 images per target and approach direction"
    metrics = {
        "bidirectional_repeatability_R_um": metric("R_i_um", two + " (both directions)"),
        "repeatability_R_up_um": metric("R_up_i_um", two + " (up)"),
        "repeatability_R_down_um": metric("R_down_i_um", two + " (down)"),
        "reversal_B_um": metric("B_i_um", "needs images from both approach directions at a target", absolute=True),
        "targets": Metric(float(len(table)), ""),
    }
    return metrics, table
