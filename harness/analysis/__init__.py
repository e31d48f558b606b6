"""Analysis of a run folder: metrics per measurement, verdicts against acceptance limits, and the
QC annotations written back into the OME-TIFFs."""
