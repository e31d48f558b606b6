"""Acquisition: preflight, the runner that executes a plan on a station, progress, and the
finishing pipeline after it."""
