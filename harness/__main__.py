"""``python -m harness`` runs the ``microscope-qc`` command."""

from harness.cli.commands import main

main()
