"""Opening the results database: its URL, its driver, bounded waits, and what a database error means
for the user.

Contract:
- ``engine_url(url)``: ``postgresql://`` and ``postgres://`` mean PostgreSQL through psycopg 3
  (``postgresql+psycopg://``; SQLAlchemy alone would pick psycopg2); a SQLite file named by a
  relative path is made absolute (against the current folder when the URL is read), so one URL
  names one file however the current folder changes later; other URLs are kept.
- ``shown(url)`` (messages) and ``database_key(url)`` (queued records, see ``pending``) never hold a
  password: neither the one in the URL's user part nor a ``password`` or ``sslpassword`` query key
  (shown as ``***``).
- ``open_engine(url, timeouts)``: an Engine whose waits are bounded. Raises ``UserError`` for a bad
  URL, or a missing driver (naming the ``postgres`` extra).
- Every wait is bounded (``Timeouts.from_env``; seconds, environment variables):

  ``MICROSCOPE_QC_DB_CONNECT_TIMEOUT`` (default 10): reaching a PostgreSQL server;
  ``MICROSCOPE_QC_DB_LOCK_TIMEOUT`` (default 10): waiting for a lock another connection holds
  (PostgreSQL ``lock_timeout``; SQLite's busy timeout on the database file);
  ``MICROSCOPE_QC_DB_STATEMENT_TIMEOUT`` (default 60): one statement (PostgreSQL ``statement_timeout``).

  A value that is not a positive number is a ``UserError`` naming the variable.

  Once connected to PostgreSQL, a host that vanishes (cable pulled, machine off) is noticed by TCP
  keepalives (libpq ``keepalives_idle`` 10 s, then 3 probes 5 s apart) and by ``tcp_user_timeout``
  (data unacknowledged longer than the statement timeout): the connection fails as ``Unreachable``
  instead of waiting for the operating system's defaults (hours). A server that still answers TCP
  but does not work (frozen, overloaded) is bounded only by ``statement_timeout``, which that server
  enforces itself: a server too broken to enforce it can hold a statement longer.
- SQLite transactions begin with ``BEGIN`` (reads) or ``BEGIN IMMEDIATE`` (connections of
  ``writer(engine)``): a writer takes the file's write lock first, waiting up to the lock timeout,
  so two writers never dead-lock on upgrading a read lock.
- ``failure(exc, url, doing, timeouts)``: the one-line ``UserError`` for a database error:
  ``Unreachable`` (refused, timed out, shut down: worth trying again later), ``Busy`` (a lock or
  statement timeout: which database, what waited, how long, what to do), else a plain ``UserError``.
- ``Incompatible`` (raised by ``harness.store.migrations``): the database's schema was made by newer
  software; like ``Unreachable`` and ``Busy`` a reason to queue a record rather than lose it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from harness.common.errors import UserError

CONNECT_TIMEOUT_VAR = "MICROSCOPE_QC_DB_CONNECT_TIMEOUT"
LOCK_TIMEOUT_VAR = "MICROSCOPE_QC_DB_LOCK_TIMEOUT"
STATEMENT_TIMEOUT_VAR = "MICROSCOPE_QC_DB_STATEMENT_TIMEOUT"
DEFAULTS = {CONNECT_TIMEOUT_VAR: 10.0, LOCK_TIMEOUT_VAR: 10.0, STATEMENT_TIMEOUT_VAR: 60.0}
EXTRA_HINT = 'pip install "microscope-qc-harness[postgres]"'
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}  # libpq, seconds
HIDDEN_QUERY_KEYS = ("password", "sslpassword")  # libpq parameters that are secrets, if given in the query string
APPLICATION = "microscope-qc"  # PostgreSQL's application_name: what an administrator sees in pg_stat_activity

# PostgreSQL SQLSTATEs: the server went away or cannot take connections; a wait cut short
_GONE_STATES = {"57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"}
LOCK_TIMEOUT, STATEMENT_TIMEOUT = "55P03", "57014"
_GONE_WORDS = ("connection refused", "timeout expired", "timed out", "could not connect", "server closed the connection",
               "no route to host", "network is unreachable", "could not translate host name", "name or service not known",
               "temporary failure in name resolution", "the database system is", "connection to server", "server conn crashed",
               "terminating connection", "connection is closed", "connection already closed", "consuming input failed")
_MISTAKE_WORDS = ("does not exist", "authentication failed", "no pg_hba.conf entry", "permission denied", "password")


class Unreachable(UserError):
    """The database could not be reached (refused, timed out, shut down): worth trying again later."""


class Busy(UserError):
    """A bounded wait ran out (a lock held elsewhere, a statement too slow): worth trying again later."""


class Incompatible(UserError):
    """The database's schema was made by newer software: this computer's software must be upgraded
    before it can write there (its records are queued meanwhile)."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds: reaching the server, waiting for a lock, one statement."""

    connect_s: float = DEFAULTS[CONNECT_TIMEOUT_VAR]
    lock_s: float = DEFAULTS[LOCK_TIMEOUT_VAR]
    statement_s: float = DEFAULTS[STATEMENT_TIMEOUT_VAR]

    @classmethod
    def from_env(cls, cap_s: float | None = None) -> Timeouts:
        """From the environment (defaults above); ``cap_s``: none longer than that (a run's start)."""
        values = []
        for var in (CONNECT_TIMEOUT_VAR, LOCK_TIMEOUT_VAR, STATEMENT_TIMEOUT_VAR):
            text = os.environ.get(var, "").strip()
            try:
                value = float(text) if text else DEFAULTS[var]
            except ValueError:
                value = -1.0
            if not value > 0 or value == float("inf"):
                raise UserError(f"{var}={text!r}: not a number of seconds above 0")
            values.append(min(value, cap_s) if cap_s else value)
        return cls(*values)


def engine_url(url: str) -> sa.URL:
    """The URL SQLAlchemy is given (see the module's contract). Raises ``sa_exc.ArgumentError`` or
    ``ValueError`` (e.g. a port that is not a number)."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and str(parsed.query.get("uri", "")).lower() not in ("true", "1") and not os.path.isabs(parsed.database):
        parsed = parsed.set(database=os.path.abspath(parsed.database))
    return parsed


def _without_secrets(parsed: sa.URL) -> str:
    """``parsed`` rendered with its password and secret query keys as ``***``."""
    hidden = [k for k in HIDDEN_QUERY_KEYS if k in parsed.query]
    text = parsed.difference_update_query(hidden).render_as_string(hide_password=True)
    return text + ("&" if "?" in text else "?") + "&".join(f"{k}=***" for k in hidden) if hidden else text


def _masked(url: str) -> str:
    """A URL SQLAlchemy cannot read, with anything that looks like a password masked."""
    url = re.sub(r"(://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)
    keys = "|".join(HIDDEN_QUERY_KEYS)
    return re.sub(rf"((?:^|[?&])(?:{keys})=)[^&#]*", r"\1***", url)


def shown(url: str) -> str:
    """The URL as it may be printed: without its password (see the module's contract)."""
    try:
        return _without_secrets(sa.make_url(url))
    except (sa_exc.ArgumentError, ValueError):
        return _masked(url)


def database_key(url: str) -> str:
    """The database a URL names, as the same text however it was spelt (driver made explicit,
    SQLite path absolute, passwords hidden): what queued records are filed under."""
    try:
        return _without_secrets(engine_url(url))
    except (sa_exc.ArgumentError, ValueError):
        return _masked(url)


def open_engine(url: str, timeouts: Timeouts) -> sa.Engine:
    """An engine with bounded waits (see the module's contract)."""
    backend = ""
    try:
        parsed = engine_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            engine = sa.create_engine(parsed, connect_args={"timeout": timeouts.lock_s})
            _sqlite_transactions(engine)
            return engine
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            if "connect_timeout" not in parsed.query:
                connect_args["connect_timeout"] = max(1, round(timeouts.connect_s))
            ms = (round(timeouts.lock_s * 1000), round(timeouts.statement_s * 1000))
            user_options = parsed.query.get("options")
            connect_args["options"] = f"-c lock_timeout={ms[0]} -c statement_timeout={ms[1]}" + (f" {user_options}" if isinstance(user_options, str) else "")
            if "application_name" not in parsed.query:
                connect_args["application_name"] = APPLICATION
            connect_args.update({k: v for k, v in KEEPALIVES.items() if k not in parsed.query})
            if "tcp_user_timeout" not in parsed.query:  # ms unacknowledged before the connection is given up
                connect_args["tcp_user_timeout"] = ms[1]
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except ImportError as exc:
        if "psycopg" in str(exc) or backend == "postgresql":
            raise UserError(f"results database {shown(url)}: PostgreSQL needs the psycopg driver: {EXTRA_HINT}") from None
        raise UserError(f"results database {shown(url)}: its database driver is not installed ({exc})") from None
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ValueError) as exc:
        raise UserError(f"results database {shown(url)}: {first_line(exc)}") from None


def _sqlite_transactions(engine: sa.Engine) -> None:
    """The pysqlite recipe of SQLAlchemy's documentation: SQLAlchemy, not the driver, begins each
    transaction, so DDL is transactional and a writer can begin with ``BEGIN IMMEDIATE``."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_write") else "BEGIN")


def writer(engine: sa.Engine) -> sa.Engine:
    """The engine for write transactions (SQLite: ``BEGIN IMMEDIATE``; elsewhere the same engine)."""
    return engine.execution_options(sqlite_write=True)


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return state if isinstance(state, str) else None


def is_gone(exc: BaseException) -> bool:
    """The server could not be reached or went away (not a mistake in the URL, name or password)."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if _sqlstate(exc) in _GONE_STATES or exc.connection_invalidated:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, sa_exc.OperationalError) and any(w in text for w in _GONE_WORDS) and not any(w in text for w in _MISTAKE_WORDS)


def failure(exc: sa_exc.SQLAlchemyError, url: str, doing: str, timeouts: Timeouts, holders: str = "") -> UserError:
    """The one-line message for ``exc``, raised while ``doing`` (e.g. "reading the run history")."""
    where = f"results database {shown(url)}"
    state = _sqlstate(exc)
    if state == LOCK_TIMEOUT:
        held = holders or "another connection holds a lock on the results tables or on the rows being written"
        return Busy(f"{where}: {doing} waited {timeouts.lock_s:g} s for a lock and gave up: {held}; try again once it is released "
                    f"(a long transaction or LOCK TABLE elsewhere; the wait is {LOCK_TIMEOUT_VAR})")
    if state == STATEMENT_TIMEOUT:
        return Busy(f"{where}: {doing} ran longer than {timeouts.statement_s:g} s and was cancelled (the server is overloaded, "
                    f"or a lock is held elsewhere); try again later (the limit is {STATEMENT_TIMEOUT_VAR})")
    text = first_line(exc)
    if isinstance(exc, sa_exc.OperationalError) and "database is locked" in text.lower():
        return Busy(f"{where}: {doing} waited {timeouts.lock_s:g} s for the database file and gave up: another process holds "
                    f"its write lock (a long write, or a transaction left open); try again (the wait is {LOCK_TIMEOUT_VAR})")
    if is_gone(exc):
        return Unreachable(f"{where}: not reachable while {doing} ({text}; waited at most {timeouts.connect_s:g} s, "
                           f"{CONNECT_TIMEOUT_VAR})")
    return UserError(f"{where}: {text}")


def lock_holders(engine: sa.Engine) -> str:
    """PostgreSQL: who holds strong locks on the store's tables now (for a lock timeout's message);
    "" if nobody, or it cannot be told."""
    if engine.dialect.name != "postgresql":
        return ""
    query = sa.text(
        "SELECT c.relname, l.mode, l.pid, a.client_addr, a.application_name FROM pg_locks l "
        "JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.granted AND l.pid <> pg_backend_pid() AND c.relname IN ('runs', 'metrics', 'alembic_version') "
        "AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock') ORDER BY c.relname, l.pid")
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(query))
    except sa_exc.SQLAlchemyError:
        return ""
    return "; ".join(f"another connection (pid {r.pid}, {r.application_name or 'no application name'}"
                     f"{', client ' + str(r.client_addr) if r.client_addr else ''}) holds a lock on table {r.relname} ({r.mode})" for r in rows)
