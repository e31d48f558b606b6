"""``microscope-qc export``: a run folder's results in another tool's data model.

Contract: ``add_export(sub)`` defines the command; ``cmd_export(args)`` writes the document (to
``--out``, or to standard output) and returns 0. Formats: ``microscope-metrics`` (one dataset of the
microscopemetrics-schema model, which OMERO-metrics displays; YAML, or JSON when ``--out`` ends in
``.json``); stage runs as ``StageRepeatabilityDataset`` of the extension schema
``harness/export/qc_extensions.yaml``. A folder that is not an analysed run, a run the model cannot hold, or a missing
``omero-metrics`` extra is a ``UserError`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.cli_types import output_file
from harness.common.atomic_files import replace_text
from harness.common.errors import UserError

# Start-up stays fast: the export (and the LinkML runtime it loads) is imported when the command runs.


def cmd_export(args: argparse.Namespace) -> int:
    from harness.export.microscopemetrics import NAMESPACE, build_document, file_name, render

    folder = Path(args.run_folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such run folder")
    document = build_document(folder)
    fmt = "json" if args.out is not None and args.out.suffix.lower() == ".json" else "yaml"
    text = render(document, fmt)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        replace_text(args.out, text)
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write ({exc.strerror or exc})") from exc
    hint = file_name(document, fmt)
    print(f"{document.dataset_class}: {args.out} ({len(document.mapped.unmapped)} items not mapped, listed in its output comment); "
          f"for OMERO-metrics attach it as {hint} with namespace {NAMESPACE[document.dataset_class]}", file=sys.stderr)
    return 0


def add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``export`` command's arguments."""
    p = sub.add_parser("export", help="export a run's results in the microscope-metrics data model (OMERO-metrics)")
    p.add_argument("run_folder", metavar="RUN_FOLDER", help="an analysed run folder")
    p.add_argument("--format", choices=["microscope-metrics"], default="microscope-metrics",
                   help="the data model (default microscope-metrics: microscopemetrics-schema 0.0.5, and for stage runs microscope-qc's "
                        "extension of it; needs the omero-metrics extra)")
    p.add_argument("--out", type=output_file, help="the file to write (.json: JSON, otherwise YAML; default: standard output)")
    p.set_defaults(func=cmd_export)
