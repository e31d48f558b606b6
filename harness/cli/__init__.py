"""The command line: ``microscope-qc`` and its sub-commands."""
