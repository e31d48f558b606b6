"""``python -m harness`` runs the ``microscope-qc`` command."""

from .cli import main

main()
