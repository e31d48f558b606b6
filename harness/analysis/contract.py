"""The contract between the finishing pipeline and one analysis (power stability, flat field, ...).

An analysis comes in two parts, so that protocol validation can know every metric without loading
numpy, tifffile or matplotlib:

- an ``AnalysisSpec`` (light: plain data): its name, the result kinds it writes, its metrics with
  their units, their 4DN-BINA-OME Calibration+Performance names, the metrics the terminal summary
  shows, and where its implementation is (``module``, whose ``ANALYSIS`` is the ``Analysis``);
- an ``Analysis`` (the implementation: reads files, computes, draws).

The registered analyses are listed, in the order a file is offered to them, in
``harness/analyses/registry.py``. For every file run.json lists, the pipeline
(``harness.finishing.results.analyse_run``) calls ``applies`` of each analysis in turn; the first that
says yes gets ``analyse`` for that file; an OME-TIFF no analysis takes is listed as not analysed.
The results are what ``analyse`` returns, judged by the analysis itself (``judging.judged``); the
pipeline only withholds the verdicts of a run that did not complete. When the report
is written, ``figures`` and ``section`` are called once per result whose ``kind`` is one of the
analysis' ``spec.kinds``; the QC annotations written into an analysed OME-TIFF use
``spec.nbo_names``.

A result is a JSON-able dict with at least ``series`` (the file it was computed from), ``kind`` (one
of ``spec.kinds``), ``subject`` (what was measured, e.g. ``488 nm``), ``metrics`` (name -> the
judged entry of ``harness.analysis.judging.entry``: value, unit, limit, verdict[, reason]) and
``verdict``; anything else it holds is the analysis' own (tables, profiles, ...) and is kept in
results.json as is.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.protocol.protocol_file import Limit

Result = dict[str, Any]


@dataclass(frozen=True)
class AnalysisSpec:
    """What is known about an analysis without running it (no heavy imports)."""

    name: str  # e.g. "power"
    title: str  # its heading in results.json ``conventions``, e.g. "Power"
    kinds: tuple[str, ...]  # the result kinds it writes, e.g. ("stability", "linearity")
    metrics: Mapping[str, str]  # metric -> unit ("" for a count or a ratio): what an acceptance may judge
    module: str  # the module whose ``ANALYSIS`` implements it
    nbo_names: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (kind, metric) -> 4DN-BINA-OME name
    summary: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> metrics shown by the terminal summary

    def load(self) -> Analysis:
        """The implementation (imports numpy and the rest: only where files are analysed or reported)."""
        analysis: Analysis = importlib.import_module(self.module).ANALYSIS
        return analysis


class Analysis(Protocol):
    """One analysis. Called by the finishing pipeline (``harness.finishing``), never by the runner."""

    spec: AnalysisSpec

    @property
    def conventions(self) -> str:
        """How its metrics are computed (formulas, SD with n or n - 1, ...): quoted in results.json
        ``conventions`` and the report, after ``spec.title``."""
        ...

    def applies(self, folder: Path, run: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
        """Whether this analysis takes the file ``name`` (run.json ``files`` entry ``entry``, whose
        ``kind`` is ``power_series``, ``frame_log`` or ``ome_tiff``) of the run folder. May read small
        files of the folder (a frame log); may raise, which counts as this file's analysis failing."""
        ...

    def analyse(self, folder: Path, name: str, entry: Mapping[str, Any], limits: Mapping[str, Limit]) -> list[Result]:
        """The results computed from one file, judged against the protocol's acceptance ``limits``
        (an empty list: nothing to analyse in it). May write files of its own into the folder (e.g.
        a correction image, named in its result). Raises ``BadInput`` when the data cannot be
        analysed (not finite, too few points, no signal): that file's result is then ``analysis
        failed`` with the message; any other exception is the same, with its traceback kept. Raises
        ``UnsafePath`` for a name outside the folder."""
        ...

    def figures(self, folder: Path, result: Result) -> str:
        """HTML of the result's figures (PNG data URIs, ``harness.report.html_parts.figure``), ``""``
        if none. May read the result's files in the folder; an exception costs the figure only
        (the report says it was not drawn)."""
        ...

    def section(self, result: Result) -> list[str]:
        """HTML blocks shown after the result's figures (tables of its own), in order; none: ``[]``.
        Must not raise."""
        ...
