"""The finishing pipeline after an acquisition: analyse (``results``: the registered analyses,
QC annotations, report, results.json), record in the results store, final status, manifest
(``pipeline.finish``; what is left to finish is ``harness.records.manifest.unfinished``); the
``Runner`` that uses it (``runner.FinishingRunner``).

Layer: above analysis, analyses, report and store; below recovery, the schedule service and the
command line, which all finish folders through ``pipeline.finish``. The runner does not import it:
its caller hands it the finisher (``harness.run.finisher.Finisher``).
"""
