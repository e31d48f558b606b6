"""The ``microscope-qc`` command: one tool, with subcommands to run QC protocols on a station, look
at a station, analyse and recover run folders, read the results store and run schedules.

Every user mistake ends in one message and exit status 2, a device failure in one message and exit
status 3; the station is always put into its safe state and unloaded before the process exits.

Contract: ``main()`` is the console entry point (``python -m harness`` too); ``run(argv)`` runs one
command in this process and returns its exit status (tests, embedding); ``build_parser()`` is the
whole command line. The commands live by group: ``run_commands`` (run, analyze, recover),
``station_commands`` (devices, meter, snap, move, validate, schema), ``store_commands`` (history,
trend, import), ``schedule_cli`` (schedule ...), ``export_commands`` (export), ``board_commands`` (serve).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from devices.errors import DeviceError, SafetyLimitError
from harness import __version__
from harness.cli import board_commands, export_commands, facility_commands, run_commands, schedule_cli, shared, station_commands, store_commands
from harness.cli.run_commands import cmd_analyze, cmd_recover, cmd_run
from harness.cli.station_commands import cmd_devices, cmd_meter, cmd_move, cmd_schema, cmd_snap, cmd_validate
from harness.cli.store_commands import cmd_history, cmd_import, cmd_trend
from harness.common.errors import EXIT_DEVICE, EXIT_INTERRUPTED, EXIT_PRECONDITION, EXIT_RUN_FAILED, EXIT_USER, StationError, UserError

__all__ = ["EXIT_USER", "EXIT_DEVICE", "build_parser", "main", "run", "cmd_analyze", "cmd_devices", "cmd_history", "cmd_import", "cmd_meter",
           "cmd_move", "cmd_recover", "cmd_run", "cmd_schema", "cmd_snap", "cmd_trend", "cmd_validate"]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (commands in the order ``--help`` lists them)."""
    parser = argparse.ArgumentParser(prog="microscope-qc", description="Quality control of light microscopes (QUAREP-LiMi) through Micro-Manager.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the devices do")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    station_commands.add_devices(sub)
    run_commands.add_run(sub)
    run_commands.add_analyze(sub)
    station_commands.add_validate(sub)
    station_commands.add_schema(sub)
    station_commands.add_meter(sub)
    station_commands.add_snap(sub)
    station_commands.add_move(sub)
    store_commands.add_history(sub)
    store_commands.add_trend(sub)
    store_commands.add_import(sub)
    run_commands.add_recover(sub)
    export_commands.add_export(sub)
    schedule_cli.add_parser(sub)
    board_commands.add_serve(sub)
    facility_commands.add_facility(sub)
    return parser


_OWN_LOGGERS = ("harness", "devices", "simulators")


def _configure_logging(verbose: bool) -> None:
    """Warnings and errors on stderr; with ``-v`` also what the harness and the drivers do (every
    SCPI exchange, every device loaded), but not the chatter of third-party libraries. The levels sit
    on the handler, not on the root logger: importing pymmcore-plus sets the root logger to DEBUG."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "microscope_qc", False)]:
        root.removeHandler(old)  # run() called again in one process
    handler = logging.StreamHandler()
    handler.microscope_qc = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda r: r.levelno >= logging.WARNING or (verbose and r.name.split(".")[0] in _OWN_LOGGERS))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for chatty in ("pyvisa", "pymmcore-plus"):  # DEBUG on every read and property: not even built
        logging.getLogger(chatty).setLevel(logging.WARNING)


def run(argv: Sequence[str] | None, out: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except StationError as exc:  # a device that cannot be reached: not the user's mistake, may be retried
        out(f"device error: {exc}")
        return EXIT_DEVICE
    except UserError as exc:
        out(f"error: {exc}")
        return EXIT_USER
    except SafetyLimitError as exc:  # a value the user asked for, refused before anything was sent
        out(f"error: {exc}")
        return EXIT_USER
    except DeviceError as exc:
        out(f"device error: {exc}")
        return EXIT_DEVICE
    except BrokenPipeError:  # the reader went away (`... | head`): nothing more to say to it
        _stdout_to_devnull()
        return 0
    except KeyboardInterrupt:
        out("interrupted: devices were put into their safe state")
        return EXIT_INTERRUPTED
    except OSError as exc:
        from harness.common.disk_full import full_path, is_disk_full, message

        if not is_disk_full(exc):
            raise
        out(message(full_path(exc)))  # one message, not a traceback; a run's own ending says where its data are
        return EXIT_RUN_FAILED
    except Exception as exc:
        from harness.station.station_lock import StationBusy  # imported here: only the commands that take the lock need it

        if isinstance(exc, StationBusy):
            out(f"not started: {exc}")
            return EXIT_PRECONDITION
        raise


def _stdout_to_devnull() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main() -> None:
    shared.EXITS_AFTER_COMMAND = True
    code = run(None)
    try:
        sys.stdout.flush()  # what is still buffered goes now, where a reader that went away can be told apart
    except BrokenPipeError:
        _stdout_to_devnull()
    sys.exit(code)
