"""The QC harness engine: stations, roles, protocols, runs, analysis, reports and the CLI."""

__version__ = "0.1.0"
