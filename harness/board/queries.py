"""The board's read-only queries over the results store (``runs`` and ``metrics`` of
``harness.store.results_store``): the last run of each microscope x check, the runs now running,
one microscope's runs, one run with its metrics, the runs of a period, the metrics there are.

Nothing here writes: every query is a SELECT on a connection of ``ResultsStore(url).engine``.
Columns other helpers add later are read when present: ``runs.seed`` (reflected once; absent: None).
A running run is a ``runs`` row with ``status == "running"``.

Contract: ``open_store(url)`` (a SQLite URL whose file does not exist is a ``UserError``: the board
never creates a database), ``BoardData(store)`` with the methods below; they raise ``UserError``
when the database cannot be read (the store's own message).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from harness.common.errors import UserError
from harness.store.results_store import ChartKey, Point, ResultsStore, metrics, resolve_url, runs, shown

RUNNING, COMPLETED = "running", "completed"
RUN_COLUMNS = ("run_id", "station", "protocol", "protocol_version", "status", "reason", "started_utc", "ended_utc", "verdict", "folder", "host")


def open_store(db_url: str | None) -> ResultsStore:
    """The results store at ``db_url`` (or ``$MICROSCOPE_QC_DB``, or the default); a SQLite file that
    does not exist is refused rather than created, and the schema is never upgraded (the board may run
    newer software than the stations recording into a shared database: it reads what is there)."""
    url = resolve_url(db_url)
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError as exc:
        raise UserError(f"results database {url}: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and not os.path.isfile(str(parsed.database)):
        raise UserError(f"results database {shown(url)}: no such file (run or import runs first, or give --db)")
    return ResultsStore(url, upgrade=False)


@dataclass
class Run:
    """One ``runs`` row (plus ``seed`` when the store has that column)."""

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
    seed: int | None = None

    @property
    def when(self) -> datetime | None:
        return self.ended_utc or self.started_utc


@dataclass
class Metric:
    subject: str
    kind: str
    metric: str
    value: float | None
    unit: str | None
    verdict: str
    limit_json: str | None
    series: str | None = None


@dataclass
class Cell:
    """What the board knows of one check on one microscope."""

    last: Run | None = None  # the newest finished run (any outcome)
    last_completed: Run | None = None  # the newest completed run: the one that counts for "due"
    runs: int = 0


@dataclass
class Matrix:
    microscopes: list[str]
    checks: list[str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, microscope: str, check: str) -> Cell:
        return self.cells.get((microscope, check)) or Cell()


def _utc_day(value: date) -> datetime:
    return datetime.combine(value, time(), timezone.utc)


class BoardData:
    """Read-only queries; one per app (it holds the store's connection pool)."""

    def __init__(self, store: ResultsStore) -> None:
        self.store = store
        self.engine = store.engine
        with self._errors():
            self.has_seed = "seed" in {c["name"] for c in sa.inspect(self.engine).get_columns("runs")}
        self._seed = sa.column("seed") if self.has_seed else sa.null()

    @contextmanager
    def _errors(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa_exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            raise UserError(f"results database {shown(self.store.url)}: {str(orig or exc).strip().splitlines()[0]}") from None

    def _select_runs(self) -> sa.Select:
        return sa.select(*(runs.c[name] for name in RUN_COLUMNS), self._seed.label("seed"))

    def _runs(self, query: sa.Select) -> list[Run]:
        with self._errors() as conn:
            return [Run(**dict(r._mapping)) for r in conn.execute(query)]

    # --- overview --------------------------------------------------------------------------------
    def names(self) -> tuple[list[str], list[str]]:
        """Every station and every protocol of the store, sorted."""
        with self._errors() as conn:
            stations = sorted(r[0] for r in conn.execute(sa.select(runs.c.station).distinct()))
            protocols = sorted(r[0] for r in conn.execute(sa.select(runs.c.protocol).distinct()))
        return stations, protocols

    def matrix(self, microscopes: list[str], checks: list[str]) -> Matrix:
        """The last (and last completed) run of each microscope x check, from one pass over the runs
        (a few columns of each row: thousands of runs read in milliseconds)."""
        out = Matrix(microscopes, checks)
        cols = [runs.c.run_id, runs.c.station, runs.c.protocol, runs.c.status, runs.c.started_utc, runs.c.ended_utc, runs.c.verdict]
        query = sa.select(*cols).where(runs.c.status != RUNNING).order_by(runs.c.ended_utc, runs.c.started_utc, runs.c.run_id)
        newest: dict[tuple[str, str], tuple[str, str]] = {}
        counts: dict[tuple[str, str], int] = {}
        with self._errors() as conn:
            for r in conn.execute(query):
                key = (r.station, r.protocol)
                last, done = newest.get(key, ("", ""))
                newest[key] = (r.run_id, r.run_id if r.status == COMPLETED else done)
                counts[key] = counts.get(key, 0) + 1
        wanted = {rid for pair in newest.values() for rid in pair if rid}
        by_id = {r.run_id: r for r in self.runs_by_id(sorted(wanted))}
        for key, (last, done) in newest.items():
            out.cells[key] = Cell(by_id.get(last), by_id.get(done), counts[key])
        return out

    def runs_by_id(self, run_ids: list[str]) -> list[Run]:
        found: list[Run] = []
        for start in range(0, len(run_ids), 500):  # bounded IN lists
            found += self._runs(self._select_runs().where(runs.c.run_id.in_(run_ids[start:start + 500])))
        return found

    def running(self) -> list[Run]:
        """The runs now running (rows with status "running"), oldest first."""
        return self._runs(self._select_runs().where(runs.c.status == RUNNING).order_by(runs.c.started_utc, runs.c.run_id))

    # --- one microscope, one run -----------------------------------------------------------------
    def station_runs(self, station: str, limit: int = 30) -> list[Run]:
        """The newest ``limit`` runs of a station, newest first."""
        query = self._select_runs().where(runs.c.station == station)
        return self._runs(query.order_by(runs.c.started_utc.desc(), runs.c.run_id.desc()).limit(limit))

    def run(self, run_id: str) -> Run | None:
        found = self._runs(self._select_runs().where(runs.c.run_id == run_id))
        return found[0] if found else None

    def run_metrics(self, run_ids: list[str]) -> dict[str, list[Metric]]:
        """The metrics of each run, in the order they were recorded."""
        out: dict[str, list[Metric]] = {rid: [] for rid in run_ids}
        cols = [metrics.c.run_id, metrics.c.subject, metrics.c.kind, metrics.c.metric, metrics.c.value, metrics.c.unit,
                metrics.c.verdict, metrics.c.limit_json, metrics.c.series]
        with self._errors() as conn:
            for start in range(0, len(run_ids), 500):
                query = sa.select(*cols).where(metrics.c.run_id.in_(run_ids[start:start + 500])).order_by(metrics.c.id)
                for r in conn.execute(query):
                    values = dict(r._mapping)
                    out[values.pop("run_id")].append(Metric(**values))
        return out

    def judged_metrics(self, station: str) -> list[tuple[str, str, str, str]]:
        """(protocol, metric, subject, kind) of a station's completed runs that have an acceptance
        limit: the metrics its protocols judge, the key ones to show as trends."""
        query = (sa.select(runs.c.protocol, metrics.c.metric, metrics.c.subject, metrics.c.kind)
                 .select_from(metrics.join(runs, metrics.c.run_id == runs.c.run_id))
                 .where(runs.c.station == station, runs.c.status == COMPLETED, metrics.c.limit_json.is_not(None), metrics.c.value.is_not(None))
                 .distinct())
        with self._errors() as conn:
            return sorted((r[0], r[1], r[2], r[3]) for r in conn.execute(query))

    # --- a period (certificate) ------------------------------------------------------------------
    def period_runs(self, station: str, first: date, last: date) -> list[Run]:
        """A station's finished runs that started on the UTC days ``first`` to ``last`` (inclusive)."""
        query = self._select_runs().where(runs.c.station == station, runs.c.status != RUNNING,
                                          runs.c.started_utc >= _utc_day(first), runs.c.started_utc < _utc_day(last + timedelta(days=1)))
        return self._runs(query.order_by(runs.c.started_utc, runs.c.run_id))

    # --- trends ----------------------------------------------------------------------------------
    def metric_index(self) -> list[dict[str, Any]]:
        """Each metric the newest completed run of some microscope x check has: its unit(s), checks and
        microscopes. From those runs only (a metric no check reports any more is not listed): a few
        thousand rows however long the history."""
        stations, protocols = self.names()
        newest = [c.last_completed.run_id for c in self.matrix(stations, protocols).cells.values() if c.last_completed is not None]
        by_run = {r.run_id: r for r in self.runs_by_id(newest)}
        found: dict[str, dict[str, Any]] = {}
        for run_id, rows in self.run_metrics(newest).items():
            run = by_run[run_id]
            for m in rows:
                if m.value is None:
                    continue
                entry = found.setdefault(m.metric, {"metric": m.metric, "units": set(), "protocols": set(), "stations": set()})
                entry["units"].add(m.unit or "")
                entry["protocols"].add(run.protocol)
                entry["stations"].add(run.station)
        return [{**e, "units": sorted(e["units"]), "protocols": sorted(e["protocols"]), "stations": sorted(e["stations"])}
                for _, e in sorted(found.items())]

    def signature(self) -> tuple[Any, ...]:
        """Changes whenever a run is recorded or re-imported: (runs, newest import)."""
        with self._errors() as conn:
            row = conn.execute(sa.select(sa.func.count(), sa.func.max(runs.c.imported_utc))).first()
        return tuple(row) if row else ()

    def judged_series(self, watched: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
                      ) -> dict[tuple[str, str, str, str, str, str | None], list[tuple[datetime, float, str]]]:
        """Every judged metric's values (completed runs, computed values, with an acceptance limit),
        and those of the ``watched`` (protocol, metric) pairs, grouped as the trend charts group
        them, in order of the runs' end: one query."""
        chosen = [metrics.c.limit_json.is_not(None)] + [sa.and_(runs.c.protocol == p, metrics.c.metric == m) for p, m in sorted(watched)]
        query = (sa.select(runs.c.station, runs.c.protocol, metrics.c.subject, metrics.c.kind, metrics.c.metric, metrics.c.unit,
                           runs.c.ended_utc, metrics.c.value, runs.c.run_id)
                 .select_from(metrics.join(runs, metrics.c.run_id == runs.c.run_id))
                 .where(runs.c.status == COMPLETED, metrics.c.value.is_not(None), sa.or_(*chosen))
                 .order_by(runs.c.ended_utc, runs.c.run_id))
        out: dict[tuple[str, str, str, str, str, str | None], list[tuple[datetime, float, str]]] = {}
        with self._errors() as conn:
            for r in conn.execute(query):
                out.setdefault((r.station, r.protocol, r.subject, r.kind, r.metric, r.unit), []).append((r.ended_utc, r.value, r.run_id))
        return out

    def metric_points(self, metric: str, station: str | None = None, subject: str | None = None,
                      protocol: str | None = None) -> dict[ChartKey, list[tuple[Point, str | None]]]:
        """A metric's values (completed runs, computed values) grouped as the trend charts group them
        (``ChartKey``), each with the acceptance limit it was judged by, in order of the runs' end:
        one query, however many microscopes."""
        query = (sa.select(runs.c.station, runs.c.protocol, metrics.c.subject, metrics.c.kind, metrics.c.unit,
                           runs.c.ended_utc, metrics.c.value, runs.c.run_id, metrics.c.verdict, metrics.c.limit_json)
                 .select_from(metrics.join(runs, metrics.c.run_id == runs.c.run_id))
                 .where(metrics.c.metric == metric, runs.c.status == COMPLETED, metrics.c.value.is_not(None)))
        for column, value in ((runs.c.station, station), (metrics.c.subject, subject), (runs.c.protocol, protocol)):
            if value is not None:
                query = query.where(column == value)
        out: dict[ChartKey, list[tuple[Point, str | None]]] = {}
        with self._errors() as conn:
            for r in conn.execute(query.order_by(runs.c.ended_utc, runs.c.run_id)):
                key = ChartKey(r.station, r.protocol, r.subject, r.kind, r.unit)
                out.setdefault(key, []).append((Point(r.ended_utc, r.value, r.run_id, r.verdict), r.limit_json))
        return out
