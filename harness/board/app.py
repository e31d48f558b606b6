"""The facility board as a Flask application (WSGI; ``microscope-qc serve`` runs it under waitress).

Routes (GET and HEAD only; any other method is 405):
``/`` overview matrix; ``/microscopes/<name>`` (a name may hold "/"); ``/runs/<run_id>``; ``/runs/<run_id>/progress.json``;
``/runs/<run_id>/files/<name>`` (one file of the run's folder listing, see ``run_files``);
``/trends`` and ``/trends/<metric>?subject=&protocol=`` (a metric may hold "/"); ``/certificate?microscope=&from=&to=``.

Rules callers may rely on: the database is only read (``queries``); a file is served only when its
name is in the listing of the folder the store records for that run and that folder is the run's
own (``run_files.is_run_folder``: it holds that run's run.json), else 404; with a ``token``, a
request must carry it (``?token=`` once: it is then kept in a cookie and the URL is cleaned), else
401; every response says no resource outside the board may load (Content-Security-Policy), and a
run's own files are served sandboxed. Without a token (a loopback address), a request whose Host
header is not a loopback name is refused (421), so a web page elsewhere cannot reach the board
through a name it points at 127.0.0.1. Pages are rendered from the package's templates and CSS; no
script but the few inline lines of the live progress.

``create_app(db_url, policy, token, now)`` raises ``UserError`` when the database cannot be opened.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from harness import __version__
from harness.board import pages
from harness.board.policy import EMPTY, Policy
from harness.board.queries import BoardData, open_store
from harness.board.run_files import ProgressReader, file_to_serve
from harness.common.errors import UserError
from harness.common.units import format_seconds
from harness.store.results_store import shown

COOKIE = "microscope_qc_board"
PAGE_CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; script-src 'unsafe-inline'; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]"}  # without a token, a Host header naming anything else (DNS rebinding) is refused
LOG = logging.getLogger(__name__)
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day(text: str | None, what: str) -> date:
    if not text or not DAY.match(text):
        raise UserError(f"{what}: give a date as YYYY-MM-DD (got {text!r})")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a date") from None


def _warm_up(ooc: pages.OutOfControl, data: BoardData) -> None:
    """Compute the overview's out-of-control list ahead; a failure is one logged line (the overview
    computes it again and shows what is wrong)."""
    try:
        ooc.recent(data)
    except Exception as exc:  # noqa: BLE001 - a background thread: anything it raises would be a bare traceback
        LOG.warning("board: the out-of-control list could not be computed ahead: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def create_app(db_url: str | None = None, policy: Policy | None = None, token: str | None = None,
               now: Callable[[], datetime] | None = None, warm: bool = False) -> Flask:
    """The board over the results database at ``db_url``; ``now`` is the time due dates are judged
    against (default: the wall clock, UTC); ``warm``: compute the slow parts of the overview in a
    background thread now."""
    store = open_store(db_url)
    data = BoardData(store)
    progress = ProgressReader()
    policy = policy or EMPTY
    ooc = pages.OutOfControl(policy.watched())
    clock = now or (lambda: datetime.now(timezone.utc))
    if warm:  # the out-of-control points take a pass over every judged value: computed once, before the first visitor asks
        threading.Thread(target=_warm_up, args=(ooc, data), name="board-warm-up", daemon=True).start()
    app = Flask("harness.board")
    app.config.update(BOARD_DATA=data, BOARD_POLICY=policy, BOARD_TOKEN=token)
    app.jinja_env.globals.update(version=__version__, database=shown(store.url), policy=policy, token_required=bool(token))
    app.jinja_env.filters["utc"] = lambda t: "" if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    app.jinja_env.filters["num"] = lambda v: "" if v is None else f"{v:.6g}"
    app.jinja_env.filters["duration"] = lambda s: "" if s is None else (f"{s:.0f} s" if s < 60 else pages.age(s))
    app.jinja_env.filters["interval"] = lambda s: "" if s is None else format_seconds(s)

    @app.before_request
    def _guard() -> Any:
        if request.method not in ("GET", "HEAD"):
            abort(405)
        if token is None:
            if (request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host) not in LOOPBACK_NAMES:
                abort(421, "this board answers only on a loopback address (127.0.0.1, localhost) unless it has a token")
            return None
        given = request.args.get("token")
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            rest = {k: v for k, v in request.args.items(multi=False) if k != "token"}
            response = redirect(request.path + ("?" + urlencode(rest) if rest else ""), code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response
        cookie = request.cookies.get(COOKIE)
        if cookie is None or not hmac.compare_digest(cookie.encode(), token.encode()):
            return Response("401: this board needs its token: open the URL that `microscope-qc serve` printed (…/?token=…)\n",
                            status=401, mimetype="text/plain")
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        response = exc.get_response()
        if exc.code == 405:
            response.headers["Allow"] = "GET, HEAD"
        response.data = render_template("error.html", code=exc.code, message=exc.description or exc.name).encode()
        response.mimetype = "text/html"
        return response

    @app.errorhandler(pages.NotFound)
    def _not_found(exc: pages.NotFound) -> Any:
        return render_template("error.html", code=404, message=str(exc)), 404

    @app.errorhandler(UserError)
    def _user_error(exc: UserError) -> Any:
        return render_template("error.html", code=400, message=str(exc)), 400

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/")
    def overview() -> str:
        return render_template("overview.html", **pages.overview(data, policy, clock(), progress, ooc))

    @app.get("/microscopes/<path:name>")  # a station name is a database key: it may hold "/"
    def microscope(name: str) -> str:
        return render_template("microscope.html", **pages.microscope(data, policy, clock(), name))

    @app.get("/runs/<run_id>")
    def run(run_id: str) -> str:
        return render_template("run.html", **pages.run_page(data, run_id, progress))

    @app.get("/runs/<run_id>/progress.json")
    def run_progress(run_id: str) -> Any:
        found = data.run(run_id)
        if found is None:
            abort(404)
        live = progress.read(found.folder, run_id)
        return jsonify({**live, "run_id": run_id, "status": found.status, "ended_status": live.get("status")})

    @app.get("/runs/<run_id>/files/<name>")
    def run_file(run_id: str, name: str) -> Any:
        found = data.run(run_id)
        path = file_to_serve(found.folder, run_id, name) if found is not None else None
        if path is None:
            abort(404)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        response = send_file(path, mimetype=kind, conditional=True, max_age=0)
        response.headers["Content-Security-Policy"] = FILE_CSP
        return response

    @app.get("/trends")
    def trend_index() -> str:
        return render_template("trends.html", **pages.trend_index(data))

    @app.get("/trends/<path:metric>")
    def trend(metric: str) -> str:
        return render_template("trend.html", **pages.trends(data, metric, request.args.get("subject"), request.args.get("protocol")))

    @app.get("/certificate")
    def certificate() -> Any:
        name, given_from, given_to = request.args.get("microscope"), request.args.get("from"), request.args.get("to")
        if not name or not given_from or not given_to:  # the form, with what was given and the last 365 days by default
            today = clock().astimezone(timezone.utc).date()
            microscopes = sorted(set(data.names()[0]) | set(policy.microscopes()))
            return render_template("certificate_form.html", microscopes=microscopes, selected=name or "",
                                   first=given_from or (today - timedelta(days=365)).isoformat(), last=given_to or today.isoformat()), 200
        first, last = _day(request.args.get("from"), "from"), _day(request.args.get("to"), "to")
        if last >= date.max:  # the day after the period must be a date
            raise UserError(f"to: {last} is too late a date")
        if last < first:
            raise UserError(f"the period ends ({last}) before it starts ({first})")
        return render_template("certificate.html", **pages.certificate(data, policy, clock(), name, first, last))

    return app
