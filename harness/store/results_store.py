"""The results store: every run's status, verdict and metrics in one SQL database, for history and
trend queries across runs and stations.

An embedded SQLite file in the user data folder by default; a database URL (argument, or the
``MICROSCOPE_QC_DB`` environment variable) points every microscope of a facility at one shared
database instead (e.g. ``postgresql+psycopg://qc@dbhost/qc``). The run folders stay the record: the
store holds a copy of what ``run.json`` and ``results.json`` say, and importing a folder again brings
the copy up to date (a re-analysed run replaces its metrics) or changes nothing.

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

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from harness.common.errors import UserError
from harness.store.run_rows import read_run_folder

ENV_VAR = "MICROSCOPE_QC_DB"
VERDICTS = ("pass", "warn", "fail", "not judged")
IMPORTED, PRESENT, UPDATED = "imported", "already present", "updated"


class UTCDateTime(sa.types.TypeDecorator):
    """An aware UTC datetime, stored naive (as UTC) so every database keeps the same instant."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("station", sa.String(255), nullable=False, index=True),
    sa.Column("protocol", sa.String(255), nullable=False, index=True),
    sa.Column("protocol_version", sa.String(64)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("started_utc", UTCDateTime, index=True),
    sa.Column("ended_utc", UTCDateTime),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("folder", sa.Text, nullable=False),
    sa.Column("host", sa.String(255)),
    sa.Column("analysed_utc", UTCDateTime),  # results.json's time of analysis; None: not analysed
    sa.Column("source_sha256", sa.String(64), nullable=False),  # run.json + results.json + folder: unchanged = nothing to do
    sa.Column("imported_utc", UTCDateTime, nullable=False),
)

metrics = sa.Table(
    "metrics", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("series", sa.String(255)),  # the file the result comes from
    sa.Column("subject", sa.String(255), nullable=False),  # "488 nm", "1000 um moves", ...
    sa.Column("kind", sa.String(64), nullable=False),  # stability, linearity, flat_field, ...
    sa.Column("metric", sa.String(255), nullable=False),
    sa.Column("value", sa.Double),  # None: could not be computed
    sa.Column("unit", sa.String(64)),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("limit_json", sa.Text),  # the protocol's acceptance limit, as results.json gives it
    sa.Index("ix_metrics_metric_subject", "metric", "subject"),
)


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
    import platformdirs

    path = Path(platformdirs.user_data_dir("microscope-qc")) / "results.sqlite"
    return sa.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def resolve_url(db_url: str | None = None) -> str:
    """The argument, else ``$MICROSCOPE_QC_DB``, else the embedded default."""
    return db_url or os.environ.get(ENV_VAR) or default_url()


def shown(url: str) -> str:
    """The URL as it may be printed: without its password."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return url


def _message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


# --- the store -----------------------------------------------------------------------------------
def _utc(value: date | datetime) -> datetime:
    """A datetime as aware (naive: UTC); a date as the start of that UTC day."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.combine(value, time(), timezone.utc)


class ResultsStore:
    """One database connection pool; ``with ResultsStore(url) as store: ...``."""

    def __init__(self, db_url: str | None = None) -> None:
        self.url = resolve_url(db_url)
        try:
            url = sa.make_url(self.url)
            if not (db_url or os.environ.get(ENV_VAR)):  # the default: its folder may not exist yet
                Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, pool_pre_ping=url.get_backend_name() != "sqlite")
        except ImportError as exc:
            raise UserError(f"results database {shown(self.url)}: its database driver is not installed ({exc})") from None
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, OSError) as exc:
            raise UserError(f"results database {shown(self.url)}: {_message(exc)}") from None
        try:
            with self._errors():
                try:
                    metadata.create_all(self.engine)
                except sa_exc.OperationalError:  # another process created the tables at the same moment
                    metadata.create_all(self.engine)
        except UserError:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            raise UserError(f"results database {shown(self.url)}: {_message(exc)}") from None

    # --- writing ---------------------------------------------------------------------------------
    def import_run(self, folder: str | Path) -> str:
        """Copy a run folder into the store: ``"imported"``, ``"updated"`` (run.json or results.json
        changed, e.g. re-analysed: its metrics are replaced; or the folder moved) or ``"already
        present"`` (nothing changed; or the store holds a newer analysis of the same run)."""
        row, rows = read_run_folder(folder)
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    return self._import(conn, row, rows)
            except sa_exc.IntegrityError as exc:  # another process imported the same run just now: look again
                if attempt == 2:
                    raise UserError(f"results database {shown(self.url)}: {_message(exc)}") from None
            except sa_exc.SQLAlchemyError as exc:
                raise UserError(f"results database {shown(self.url)}: {_message(exc)}") from None
        raise AssertionError("unreachable")

    def _import(self, conn: sa.Connection, row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
        stored = conn.execute(sa.select(runs.c.source_sha256, runs.c.analysed_utc).where(runs.c.run_id == row["run_id"])).first()
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
        return IMPORTED if stored is None else UPDATED

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
        with self._errors(), self.engine.connect() as conn:
            return [RunRecord(**r._mapping) for r in conn.execute(query.order_by(runs.c.started_utc, runs.c.run_id))]

    def runs_by_id(self, run_ids: list[str]) -> dict[str, RunRecord]:
        query = sa.select(*(getattr(runs.c, f) for f in RunRecord.__dataclass_fields__)).where(runs.c.run_id.in_(run_ids))
        with self._errors(), self.engine.connect() as conn:
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
        with self._errors(), self.engine.connect() as conn:
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
        with self._errors(), self.engine.connect() as conn:
            return [Point(*r) for r in conn.execute(query)]

    def acceptance_limit(self, key: ChartKey, metric: str) -> dict[str, Any] | None:
        """The acceptance limit (``{"pass": [lo, hi], "warn": ...}``) the newest run of a chart's group
        was judged by, or None if it had none."""
        cols = [metrics.c.limit_json]
        query = self._metric_query(cols, metric, key.station, key.subject, key.protocol, key.kind)
        query = query.order_by(runs.c.ended_utc.desc(), runs.c.run_id.desc()).limit(1)
        with self._errors(), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return json.loads(row[0]) if row and row[0] else None

    def names(self, column: str, station: str | None = None) -> list[str]:
        """Distinct values of ``"station"``, ``"protocol"`` or ``"metric"`` (of one station's runs)."""
        col = metrics.c.metric if column == "metric" else getattr(runs.c, column)
        query = sa.select(col).select_from(runs.join(metrics, metrics.c.run_id == runs.c.run_id, isouter=column != "metric"))
        if station is not None:
            query = query.where(runs.c.station == station)
        with self._errors(), self.engine.connect() as conn:
            return sorted({r[0] for r in conn.execute(query.distinct())})


def _subject_order(subject: str) -> tuple[float, str]:
    """"405 nm" before "1000 um moves": by the leading number, then by text."""
    head = subject.split(" ", 1)[0].split("+", 1)[0]
    try:
        return float(head), subject
    except ValueError:
        return math.inf, subject


def import_run(folder: str | Path, db_url: str | None = None) -> str:
    """Import one run folder; see ``ResultsStore.import_run``."""
    with ResultsStore(db_url) as store:
        return store.import_run(folder)


def record_run(folder: str | Path, db_url: str | None = None) -> str:
    """Record a just-finished (and analysed) run in the results store: ``"imported"``, ``"updated"``
    or ``"already present"``. For the run command and the scheduler, after analysis. Raises
    ``UserError`` only (database unreachable, folder unreadable), whose message says how to record the
    run later; the run folder itself is never touched."""
    try:
        return import_run(folder, db_url)
    except UserError as exc:
        raise UserError(f"{exc}\nthe run is safe on disk; record it later with: microscope-qc import {folder}") from None
