"""``microscope-qc serve``: the facility board (``harness.board``) over the results database, served
by waitress until Ctrl-C (SIGINT) or SIGTERM.

It binds 127.0.0.1 by default. Bound to any other address it requires a token: ``--token``, else
``$MICROSCOPE_QC_BOARD_TOKEN``, else one generated and printed once with the URL to open. Flask and
waitress are the optional extra ``board``; without them the command says how to install it.

Contract: ``cmd_serve(args)`` returns the exit status (0 after Ctrl-C); a user mistake (bad policy
file, database that cannot be opened, address in use or not an address of this computer, extra not
installed) is a ``UserError``; a port outside 0-65535 is refused by argparse.
``add_serve(sub)`` defines the arguments. ``serve_app(app, host, port)`` makes the server (tests
start its ``.run()`` in a thread); ``serve_until_stopped(server)`` serves until a stop signal. The
signals only set a flag the loop reads at least once a second: a KeyboardInterrupt raised where
Python swallows it (a finalizer running on the main thread) could leave the server running.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cli.cli_types import at_least, utc_datetime
from harness.cli.shared import db_arg
from harness.common.errors import UserError

TOKEN_ENV = "MICROSCOPE_QC_BOARD_TOKEN"
EXTRA = 'pip install "microscope-qc-harness[board]"'
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "configs" / "facility-policy.yaml"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def board_token(host: str, given: str | None, environ: dict[str, str] | None = None) -> tuple[str | None, bool]:
    """(token, generated): the token the board requires (None on a loopback address without one)."""
    token = given or (environ if environ is not None else os.environ).get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        return secrets.token_urlsafe(24), True
    return token, False


def _require_extra() -> None:
    missing = []
    for module in ("flask", "waitress"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UserError(f"the facility board needs {' and '.join(missing)}: {EXTRA}")


def serve_app(app: Any, host: str, port: int, threads: int = 8) -> Any:
    """A waitress server for ``app`` bound to host:port (not yet serving: call ``.run()``; ``.close()``
    stops it); ``localhost`` is 127.0.0.1. UserError if the address cannot be bound, or if the host
    name is several addresses of this computer."""
    from waitress.server import create_server  # the optional extra, imported when the board starts

    if host == "localhost":  # often both 127.0.0.1 and ::1: one address, so one socket and one URL
        host = "127.0.0.1"
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="microscope-qc")
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except ValueError as exc:  # waitress: a host name that does not resolve, or no address at all
        raise UserError(f"cannot listen on {host}:{port}: {exc}") from None
    if not hasattr(server, "effective_port"):  # waitress made one socket per address the name resolves to
        addresses = ", ".join(str(listen[0]) for listen in server.effective_listen)
        server.close()
        raise UserError(f"{host} is several addresses of this computer ({addresses}): give one of them as --host")
    return server


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    value = at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {text}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    _require_extra()
    from harness.board.app import create_app  # Flask: imported only by this command
    from harness.board.policy import read_policy

    policy = read_policy(args.policy)
    token, generated = board_token(args.host, args.token)
    as_of = args.as_of
    app = create_app(args.db, policy, token, now=(lambda: as_of) if as_of else None, warm=True)
    server = serve_app(app, args.host, args.port)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{server.effective_port}/"

    def announce() -> None:
        if token and generated:
            print(f"board: open {url}?token={token}\n(the token was generated for this run of the server; give --token or ${TOKEN_ENV} to keep one)")
        elif token:
            print(f"board: open {url}?token=<your token>")
        else:
            print(f"board: open {url}")
        print("read-only; Ctrl-C stops it", flush=True)

    serve_until_stopped(server, announce)
    print("board stopped", file=sys.stderr)
    return 0


def serve_until_stopped(server: Any, announce: Callable[[], None], poll_s: float = 1.0) -> None:
    """Take SIGINT and SIGTERM, call ``announce`` (the URL is printed once a stop can be handled), serve
    until one of them comes, then close the listening socket, stop the worker threads and close every
    connection; the previous handlers are restored. (On Windows Ctrl-C stops it; nothing sends SIGTERM
    there.)"""
    from waitress import wasyncore

    stopping = [False]  # a plain flag: an Event's lock could be taken twice by two signals in a row

    def _on_signal(signum: int, frame: Any) -> None:
        stopping[0] = True
        try:
            server.pull_trigger()  # wakes the poll at once
        except OSError:  # the wake-up pipe is gone: the poll's time-out ends the wait
            pass

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        announce()
        while server._map and not stopping[0]:  # an empty map: waitress closed everything itself
            wasyncore.loop(timeout=poll_s, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        server.close()  # the listening socket first: nothing new queues while the threads stop
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)


def add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``serve`` command's arguments."""
    p = sub.add_parser("serve", help="the facility board: every microscope's QC in a web page (read-only)")
    db_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=port_number, default=8080, help="port (default 8080; 0: any free port)")
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY,
                   help="facility policy file: how often each check is due (default: the shipped configs/facility-policy.yaml)")
    p.add_argument("--token", help=f"token a browser must give (default: ${TOKEN_ENV}; generated when --host is not a loopback address)")
    p.add_argument("--as-of", type=utc_datetime, default=None, metavar="ISO",
                   help="judge due dates as of this time (UTC; default: now), e.g. for a facility run on virtual time")
    p.set_defaults(func=cmd_serve)
