"""What every analysis builds on: the formulas (``power_metrics``, ``flat_field_metrics``,
``stage_metrics``, ``frame_stats``, ``registration``, ``control_chart``: pure functions of numbers),
the ``Analysis`` contract (``contract``), judging against acceptance limits (``verdicts``,
``judging``) and the QC annotations written back into the OME-TIFFs (``qc_annotations``).

The analyses themselves (which files they take, their results, figures and report sections) are in
``harness.analyses``; running them over a run folder is the finishing pipeline's
(``harness.finishing.results``)."""
