"""Exports of a run folder's results into other tools' data models.

``harness.export.microscopemetrics``: a run's results as one dataset of the microscope-metrics data
model (PyPI ``microscopemetrics-schema``, the model OMERO-metrics reads and displays). The mapping of
each result kind lives next to it (``mm_power``, ``mm_flat_field``); they build plain dicts, so only
instantiating and writing the document needs the optional ``omero-metrics`` extra.
"""
