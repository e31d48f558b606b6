"""The registered analyses: the one list that names them, in the order a file of a run folder is
offered to them (the first whose ``applies`` says yes analyses it).

Importing this module is light (the specs only: protocol validation reads ``METRICS`` from it);
``analyses()`` loads the implementations. Contract of an analysis: ``harness.analysis.contract``.
"""

from __future__ import annotations

from pathlib import Path

from harness.analyses import camera, coregistration, flat_field, focus, power, psf, stage
from harness.analysis.contract import Analysis, AnalysisSpec, Result

SPECS: tuple[AnalysisSpec, ...] = (
    power.SPEC,
    camera.SPEC,  # before flat_field: its stack has a dark channel too
    psf.SPEC,  # bead z-stacks (rows tagged psf / coregistration), before flat_field as the camera
    coregistration.SPEC,
    focus.SPEC,  # z-stacks tagged focus / z_calibration, frames tagged z_reference / z_return (the stage analyses take reference/return and up/down)
    flat_field.SPEC,
    stage.REPEATABILITY,
    stage.ISO230,
)


def _metric_units() -> dict[str, str]:
    units: dict[str, str] = {}
    for spec in SPECS:
        for name, unit in spec.metrics.items():
            if units.setdefault(name, unit) != unit:
                raise AssertionError(f"metric {name!r}: {unit!r} in {spec.name}, {units[name]!r} in another analysis")
    return units


METRICS: dict[str, str] = _metric_units()
"""Every metric the analyses report, with its unit: what a protocol's ``acceptance`` may judge."""

NBO_NAMES: dict[tuple[str, str], str] = {key: name for spec in SPECS for key, name in spec.nbo_names.items()}
"""(result kind, metric) -> 4DN-BINA-OME Calibration+Performance field (the QC annotations)."""

SUMMARY: dict[str, tuple[str, ...]] = {kind: keys for spec in SPECS for kind, keys in spec.summary.items()}
"""result kind -> the metrics the terminal summary shows."""


def analyses() -> list[Analysis]:
    """The implementations, in ``SPECS`` order (loads numpy, tifffile, matplotlib)."""
    return [spec.load() for spec in SPECS]


def by_kind() -> dict[str, Analysis]:
    """result kind -> the analysis that writes it."""
    return {kind: a for a in analyses() for kind in a.spec.kinds}


def conventions(kinds: set[str] | None = None) -> str:
    """The conventions of the analyses that wrote results of ``kinds`` (every analysis when none did,
    or for None), as results.json ``conventions`` quotes them."""
    chosen = [a for a in analyses() if kinds and set(a.spec.kinds) & kinds] or analyses()
    return "\n\n".join(f"{a.spec.title}: {a.conventions}" for a in chosen)


def figures(folder: Path, result: Result) -> str:
    """The figures (HTML) of one result, by the analysis that wrote it; ``""`` for any other kind."""
    analysis = by_kind().get(result["kind"])
    return analysis.figures(folder, result) if analysis else ""
