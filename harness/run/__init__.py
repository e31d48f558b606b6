"""Acquisition: preflight, the runner that executes a plan on a station, progress, and the
finishing pipeline after it.

- ``runner``: the run loop and its ending; ``steps/``: each step kind's preflight check and execution
  (registry ``steps.EXECUTORS``, contract ``steps.base``); ``preflight``: a plan checked against a
  station; ``station_facts``: what a station (loaded, or its file) tells preflight.
- ``signals`` (Ctrl-C/SIGTERM, whole records), ``retries`` (device retries, missing count), ``folders``
  (run folder names), ``console`` (operator prompt, progress display: injected), ``progress``,
  ``instrument_info`` (OME instrument metadata and run provenance), ``snapshot`` (``snap --out``).
"""
