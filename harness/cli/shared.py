"""What the command modules share: common arguments (``--station``, ``--db``), a text table, and
whether the process ends when the command returns.

Contract: ``station_arg``/``db_arg`` add the option to a parser (same help everywhere); ``table``
formats rows under a header, columns aligned, no trailing spaces; ``EXITS_AFTER_COMMAND`` is True
only when ``main()`` runs the command as the process's own (then signal handlers are not given back).
"""

from __future__ import annotations

import argparse

from harness.common import shipped

EXITS_AFTER_COMMAND = False  # set by main(): the process ends when the command returns


def station_arg(p: argparse.ArgumentParser) -> None:
    """``--station``/``-s``: a station file or a shipped one by name."""
    p.add_argument("--station", "-s", type=shipped.station, default=None,
                   help="station file, or a shipped one by name: simulated, demo-micromanager (default: simulated)")


def db_arg(p: argparse.ArgumentParser) -> None:
    """``--db``: the results database URL."""
    p.add_argument("--db", metavar="URL", help="results database URL (default: $MICROSCOPE_QC_DB, else results.sqlite in the user data folder)")


def table(rows: list[list[str]], header: list[str]) -> str:
    """Rows under a header, columns aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
