"""The analyses, one package each, listed in ``registry.py`` (the one place that names them).

Layer: above ``harness.analysis`` (formulas, the ``Analysis`` contract, judging) and
``harness.report`` (the report skeleton, HTML pieces, plotting helpers), below the finishing
pipeline (``harness.finishing``), which runs them. Each package's ``__init__`` holds only its
``AnalysisSpec`` (no heavy imports: protocol validation reads the metric names from it); its
``analysis`` module holds the ``Analysis`` (``ANALYSIS``), its ``figures`` module what it draws.

Adding an analysis (say PSF): a package ``harness/analyses/psf/`` (``__init__.py`` with its
``SPEC``, ``analysis.py`` with ``ANALYSIS``, the formulas where they fit, e.g.
``harness/analysis/psf_metrics.py``), and its ``SPEC`` added to ``registry.SPECS``.
"""
