"""The results store: every run's status, verdict and metrics in one SQL database, for history and
trend queries across runs and stations.

An embedded SQLite file in the user data folder by default; a database URL (argument, or the
``MICROSCOPE_QC_DB`` environment variable) points every microscope of a facility at one shared
database instead (e.g. ``postgresql://qc@dbhost/qc``, PostgreSQL through psycopg 3: the ``postgres``
extra). The run folders stay the record: the store holds a copy of what ``run.json`` and
``results.json`` say, and importing a folder again brings the copy up to date (a re-analysed run
replaces its metrics) or changes nothing.

Opening a store brings its schema to the newest revision (``harness.store.migrations``: once, however
many processes open a new database at once; a database made by newer software is refused). Every wait
is bounded (``harness.store.connection``: connect, lock and statement timeouts); a database error is
one ``UserError`` line naming the database (password hidden): ``Unreachable`` and ``Busy`` when
trying again later may work, ``Incompatible`` when the database's schema is newer than this
software. Many processes may write at once: importing takes the run's row ``FOR UPDATE`` (SQLite:
the file's write lock), so two imports of one run serialise and none duplicates.

A run under way has a row with status ``running`` (``register_start``), replaced by its record when it
ends (``record_run``). A record the database could not take (unreachable, busy, or a schema newer
than this software) is queued on this computer (``harness.store.pending``) and delivered by the next
successful ``record_run`` or import into the same database, and by ``microscope-qc import
--pending``. A queued run whose folder is not there when delivering (a drive not mounted) stays
queued; one whose folder is there but is not a run is moved out of the queue (``pending.drop``).

Times are stored as UTC. Trend series use completed runs only: an aborted or failed run measured
less than the protocol asks for, so its metrics are not comparable with the others.

``status`` is the run's outcome word (``endings.py``): completed, analysis failed (measured, but the
analysis failed or refused its input), failed, aborted, interrupted, or unsafe (the safe state was not
confirmed). ``verdict`` is the QC verdict of a completed run; a run that could not be completed is
``not judged`` (its partial metrics are kept with the verdict ``not judged``), so ``history --verdict
fail`` lists instruments that failed QC, never measurements that could not be made.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import platformdirs
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from harness.common.errors import UserError
from harness.store import pending
from harness.store.connection import Busy, Incompatible, Timeouts, Unreachable, database_key, failure, lock_holders, open_engine, shown, writer
from harness.store.migrations import ensure_schema
from harness.store.run_rows import read_run_folder, running_row
from harness.store.schema import UTCDateTime, metadata, metrics, runs

__all__ = ["ENV_VAR", "Busy", "ChartKey", "Incompatible", "Point", "ResultsStore", "RunRecord", "UTCDateTime", "Unreachable", "import_run",
           "metadata", "metrics", "record_run", "register_start", "resolve_url", "runs", "shown"]

ENV_VAR = "MICROSCOPE_QC_DB"
VERDICTS = ("pass", "warn", "fail", "not judged")
IMPORTED, PRESENT, UPDATED = "imported", "already present", "updated"
RECORDED = (IMPORTED, PRESENT, UPDATED)
KEPT = "kept in the queue"  # deliver_pending: the folder is not there now
RETRY_LATER = (Unreachable, Busy, Incompatible)  # a record not taken for one of these is queued, not lost


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    station: str
    protocol: str
    protocol_version: str | None
    status: str
    reason: str
    started_utc: datetime | None
    ended_utc: datetime | None
    verdict: str
    folder: str
    host: str | None
    imported_utc: datetime
    seed: int | None = None


class Point(NamedTuple):
    """One run's value of a metric."""

    ended_utc: datetime
    value: float
    run_id: str
    verdict: str


class ChartKey(NamedTuple):
    """What makes values comparable: same station, protocol, subject and kind of result."""

    station: str
    protocol: str
    subject: str
    kind: str
    unit: str | None


# --- where the database is -----------------------------------------------------------------------
def default_url() -> str:
    """The embedded SQLite file in the user data folder (the folder is created on first use)."""
    path = Path(platformdirs.user_data_dir("microscope-qc")) / "results.sqlite"
    return sa.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def resolve_url(db_url: str | None = None) -> str:
    """The argument, else ``$MICROSCOPE_QC_DB``, else the embedded default."""
    return db_url or os.environ.get(ENV_VAR) or default_url()


# --- the store -----------------------------------------------------------------------------------
def _utc(value: date | datetime) -> datetime:
    """A datetime as aware (naive: UTC); a date as the start of that UTC day."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.combine(value, time(), timezone.utc)


class ResultsStore:
    """One database connection pool; ``with ResultsStore(url) as store: ...``. Opening it brings the
    schema up to date, unless ``upgrade=False`` (a reader that must not write: the schema is read as
    it is). ``timeouts``: the bounded waits (default: from the environment)."""

    def __init__(self, db_url: str | None = None, timeouts: Timeouts | None = None, upgrade: bool = True) -> None:
        self.url = resolve_url(db_url)
        self.timeouts = timeouts or Timeouts.from_env()
        if not (db_url or os.environ.get(ENV_VAR)):  # the default: its folder may not exist yet
            Path(platformdirs.user_data_dir("microscope-qc")).mkdir(parents=True, exist_ok=True)
        self.engine = open_engine(self.url, self.timeouts)
        self._writer = writer(self.engine)
        try:
            with self._errors("opening it (schema version)"):
                ensure_schema(self.engine, self.url, upgrade)
        except UserError:
            self.engine.dispose()
            raise

    @property
    def key(self) -> str:
        """The database as queued records name it (``connection.database_key``)."""
        return database_key(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _failure(self, exc: sa_exc.SQLAlchemyError, doing: str) -> UserError:
        holders = lock_holders(self.engine) if getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03" else ""
        return failure(exc, self.url, doing, self.timeouts, holders)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            raise self._failure(exc, doing) from None

    # --- writing ---------------------------------------------------------------------------------
    def import_run(self, folder: str | Path) -> str:
        """Copy a run folder into the store: ``"imported"``, ``"updated"`` (run.json or results.json
        changed, e.g. re-analysed: its metrics are replaced; or the folder moved; or the run was
        ``running``) or ``"already present"`` (nothing changed; or the store holds a newer analysis of
        the same run). Safe with other writers at once (the run's row is locked while it changes)."""
        row, rows = read_run_folder(folder)
        doing = f"recording run {row['run_id'][:8]}"
        for attempt in range(1, 4):
            try:
                with self._writer.begin() as conn:
                    return self._import(conn, row, rows)
            except sa_exc.SQLAlchemyError as exc:
                # another process inserted the same run just now, or a dead-lock was broken: look again
                if attempt < 3 and isinstance(exc, sa_exc.DBAPIError) and _retryable(exc):
                    continue
                raise self._failure(exc, doing) from None
        raise AssertionError("unreachable")

    def _import(self, conn: sa.Connection, row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
        query = sa.select(runs.c.source_sha256, runs.c.analysed_utc).where(runs.c.run_id == row["run_id"]).with_for_update()
        stored = conn.execute(query).first()
        if stored is not None:
            if stored.source_sha256 == row["source_sha256"]:
                return PRESENT
            if stored.analysed_utc and row["analysed_utc"] and row["analysed_utc"] < stored.analysed_utc:
                return PRESENT  # an older copy of the folder: keep the newer analysis
        now = datetime.now(timezone.utc)
        if stored is None:
            conn.execute(sa.insert(runs).values(**row, imported_utc=now))
        else:
            conn.execute(sa.update(runs).where(runs.c.run_id == row["run_id"]).values(**row, imported_utc=now))
            conn.execute(sa.delete(metrics).where(metrics.c.run_id == row["run_id"]))
        if rows:
            conn.execute(sa.insert(metrics), rows)
        return IMPORTED if stored is None or stored.source_sha256 == "" else UPDATED  # "": a running row, recorded now

    def register_start(self, folder: str | Path) -> bool:
        """A ``running`` row for a run that has just started (its run.json written); False if the run
        has a row already (e.g. it ended before this came through: its record stays)."""
        row = {**running_row(folder), "imported_utc": datetime.now(timezone.utc)}
        dialect = self.engine.dialect.name
        insert: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
        with self._errors(f"registering run {row['run_id'][:8]}"), self._writer.begin() as conn:
            if insert is not None:  # one statement: a row another process (or the run's end) wrote meanwhile stays
                stmt = insert(runs).values(**row).on_conflict_do_nothing(index_elements=["run_id"]).returning(runs.c.run_id)
                return conn.execute(stmt).first() is not None
            if conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == row["run_id"])).first() is not None:
                return False
            conn.execute(sa.insert(runs).values(**row))
            return True

    def deliver_pending(self) -> list[tuple[str, str]]:
        """Record the runs queued on this computer for this database, oldest first: ``(folder, what
        the store said)`` each (``RECORDED`` words when recorded). A folder that is not there now
        stays queued (said so: ``KEPT``); one that is there but is not a run is moved out of the
        queue (``pending.drop``, said so). Stops at the first database error (raised), keeping the
        rest queued."""
        said = []
        for entry in pending.waiting(self.url):
            if not Path(entry.folder).is_dir():
                said.append((entry.folder, f"{KEPT}: the folder is not there now (a drive or share not mounted?); it is recorded "
                                           f"once it is back (to forget the run instead, delete {entry.path})"))
                continue
            try:
                said.append((entry.folder, self.import_run(entry.folder)))
            except RETRY_LATER:
                raise
            except UserError as exc:
                moved = pending.drop(entry, str(exc))
                said.append((entry.folder, f"dropped from the queue (set aside as {moved}): {exc}"))
                continue
            pending.remove(entry)
        return said

    def pending_count(self) -> int:
        """How many runs queued on this computer wait to be recorded in this database."""
        try:
            return len(pending.waiting(self.url))
        except OSError:
            return 0

    def pending_note(self) -> str:
        """``pending.note`` of this database: "" if no runs queued on this computer wait for it."""
        try:
            return pending.note(self.url)
        except OSError:
            return ""

    # --- reading ---------------------------------------------------------------------------------
    def history(self, station: str | None = None, protocol: str | None = None, verdict: str | None = None,
                since: date | datetime | None = None, until: date | datetime | None = None) -> list[RunRecord]:
        """Runs in order of their start. ``since``/``until`` bound the start time, both inclusive; a
        date means the whole UTC day. Naive datetimes are taken as UTC."""
        if verdict is not None and verdict not in VERDICTS:
            raise UserError(f"no verdict {verdict!r} (verdicts: {', '.join(VERDICTS)})")
        query = sa.select(*(getattr(runs.c, f) for f in RunRecord.__dataclass_fields__))
        if station is not None:
            query = query.where(runs.c.station == station)
        if protocol is not None:
            query = query.where(runs.c.protocol == protocol)
        if verdict is not None:
            query = query.where(runs.c.verdict == verdict)
        if since is not None:
            query = query.where(runs.c.started_utc >= _utc(since))
        if until is not None:
            if isinstance(until, datetime):
                query = query.where(runs.c.started_utc <= _utc(until))
            else:
                query = query.where(runs.c.started_utc < _utc(until + timedelta(days=1)))
        with self._errors("reading the run history"), self.engine.connect() as conn:
            return [RunRecord(**r._mapping) for r in conn.execute(query.order_by(runs.c.started_utc, runs.c.run_id))]

    def runs_by_id(self, run_ids: list[str]) -> dict[str, RunRecord]:
        query = sa.select(*(getattr(runs.c, f) for f in RunRecord.__dataclass_fields__)).where(runs.c.run_id.in_(run_ids))
        with self._errors("reading runs"), self.engine.connect() as conn:
            return {r.run_id: RunRecord(**r._mapping) for r in conn.execute(query)}

    def _metric_query(self, columns: list[Any], metric: str | None, station: str | None, subject: str | None,
                      protocol: str | None, kind: str | None) -> sa.Select:
        query = sa.select(*columns).select_from(metrics.join(runs, metrics.c.run_id == runs.c.run_id))
        query = query.where(runs.c.status == "completed", metrics.c.value.is_not(None))
        for column, value in ((metrics.c.metric, metric), (runs.c.station, station), (metrics.c.subject, subject),
                              (runs.c.protocol, protocol), (metrics.c.kind, kind)):
            if value is not None:
                query = query.where(column == value)
        return query

    def chart_keys(self, metric: str, station: str | None = None, subject: str | None = None,
                   protocol: str | None = None, kind: str | None = None) -> list[ChartKey]:
        """The comparable groups of a metric's values (completed runs only), sorted."""
        cols = [runs.c.station, runs.c.protocol, metrics.c.subject, metrics.c.kind, metrics.c.unit]
        query = self._metric_query(cols, metric, station, subject, protocol, kind).distinct()
        with self._errors("reading metrics"), self.engine.connect() as conn:
            found = {ChartKey(*r) for r in conn.execute(query)}
        return sorted(found, key=lambda k: (k.station, k.protocol, k.kind, _subject_order(k.subject), k.unit or ""))

    def series(self, station: str, metric: str, subject: str | None = None, protocol: str | None = None,
               kind: str | None = None) -> list[Point]:
        """A metric's values on one station over time (completed runs, computed values), ordered by
        the runs' end. Values are only comparable for one subject, protocol and kind of result: if
        the ones not given leave more than one, this is a UserError naming them."""
        keys = self.chart_keys(metric, station, subject, protocol, kind)
        for field, option in (("subject", "subject"), ("protocol", "protocol"), ("kind", "kind")):
            values = sorted({getattr(k, field) for k in keys}, key=_subject_order if field == "subject" else str)
            if len(values) > 1:
                raise UserError(f"metric {metric!r} on station {station!r} has several {field}s ({', '.join(values)}): say which {option}")
        cols = [runs.c.ended_utc, metrics.c.value, runs.c.run_id, metrics.c.verdict]
        query = self._metric_query(cols, metric, station, subject, protocol, kind).order_by(runs.c.ended_utc, runs.c.run_id)
        with self._errors("reading metrics"), self.engine.connect() as conn:
            return [Point(*r) for r in conn.execute(query)]

    def acceptance_limit(self, key: ChartKey, metric: str) -> dict[str, Any] | None:
        """The acceptance limit (``{"pass": [lo, hi], "warn": ...}``) the newest run of a chart's group
        was judged by, or None if it had none."""
        cols = [metrics.c.limit_json]
        query = self._metric_query(cols, metric, key.station, key.subject, key.protocol, key.kind)
        query = query.order_by(runs.c.ended_utc.desc(), runs.c.run_id.desc()).limit(1)
        with self._errors("reading metrics"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return json.loads(row[0]) if row and row[0] else None

    def names(self, column: str, station: str | None = None) -> list[str]:
        """Distinct values of ``"station"``, ``"protocol"`` or ``"metric"`` (of one station's runs)."""
        col = metrics.c.metric if column == "metric" else getattr(runs.c, column)
        query = sa.select(col).select_from(runs.join(metrics, metrics.c.run_id == runs.c.run_id, isouter=column != "metric"))
        if station is not None:
            query = query.where(runs.c.station == station)
        with self._errors("reading metrics"), self.engine.connect() as conn:
            return sorted({r[0] for r in conn.execute(query.distinct())})


def _subject_order(subject: str) -> tuple[float, str]:
    """"405 nm" before "1000 um moves": by the leading number, then by text."""
    head = subject.split(" ", 1)[0].split("+", 1)[0]
    try:
        return float(head), subject
    except ValueError:
        return math.inf, subject


def _retryable(exc: sa_exc.DBAPIError) -> bool:
    """Worth one more try at once: a unique key another writer took just now, a broken dead-lock."""
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, sa_exc.IntegrityError) or state in ("40P01", "40001")


def import_run(folder: str | Path, db_url: str | None = None) -> str:
    """Import one run folder; see ``ResultsStore.import_run``."""
    with ResultsStore(db_url) as store:
        return store.import_run(folder)


def record_run(folder: str | Path, db_url: str | None = None) -> str:
    """Record a just-finished (and analysed) run in the results store: ``"imported"``, ``"updated"``
    or ``"already present"`` (and how many queued runs were delivered with it); ``"queued: ..."``
    when the database is unreachable, busy or newer than this software (``harness.store.pending``:
    recorded later). For the run
    command and the scheduler, after analysis. Raises ``UserError`` only (a bad URL, a folder that
    cannot be read, a queue that cannot be written), whose message says how to record the run later;
    the run folder itself is never touched."""
    url = resolve_url(db_url)
    try:
        with ResultsStore(url) as store:
            said = store.import_run(folder)
            try:
                delivered = [w for _, w in store.deliver_pending() if w in RECORDED]
            except UserError as exc:  # this run is recorded; the queue waits for the next time
                return f"{said}; queued runs not delivered yet: {exc}"
    except RETRY_LATER as exc:
        try:
            pending.queue(folder, url, str(exc))
        except OSError as err:
            raise UserError(f"{exc}\nnot queued either ({err}); the run is safe on disk; record it later with: microscope-qc import {folder}") from None
        if isinstance(exc, Incompatible):
            return f"queued: will be recorded in {shown(url)} once this computer's microscope-qc-harness is upgraded ({exc})"
        return f"queued: will be recorded when {shown(url)} is reachable ({exc})"
    except UserError as exc:
        raise UserError(f"{exc}\nthe run is safe on disk; record it later with: microscope-qc import {folder}") from None
    if delivered:
        return f"{said}; {len(delivered)} queued run{'s' if len(delivered) != 1 else ''} delivered"
    return said


def register_start(folder: str | Path, db_url: str | None = None, wait_s: float = 3.0) -> str:
    """Put a ``running`` row in the store for a run that has just started; what happened, in words.
    Never raises and waits at most ``wait_s`` for each of connecting, a lock and the statement: a
    missing database must not hold up a run (its record at the end is what counts)."""
    try:
        with ResultsStore(db_url, Timeouts.from_env(cap_s=wait_s)) as store:
            return "registered as running" if store.register_start(folder) else "already recorded"
    except UserError as exc:
        return f"not registered: {exc}"
