"""The tables of the results store as the code reads and writes them (the newest schema revision;
``harness.store.migrations`` brings a database there). Columns are never renamed or dropped without a
migration; a new column or index is a new migration revision plus its line here.

- ``runs``: one row per run (``run_id``), its outcome word (``status``: ``running`` while a run is
  under way, then the final word of ``endings.py``), QC verdict, times (UTC), folder, host, the
  simulated station's ``seed`` (None on hardware), and ``source_sha256`` (a digest of what the row
  was read from; empty for a ``running`` row).
- ``metrics``: one row per metric of a run's results.json.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa


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
    sa.Column("ended_utc", UTCDateTime, index=True),  # revision 0002: the index
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("folder", sa.Text, nullable=False),
    sa.Column("host", sa.String(255)),
    sa.Column("analysed_utc", UTCDateTime),  # results.json's time of analysis; None: not analysed
    sa.Column("source_sha256", sa.String(64), nullable=False),  # run.json + results.json + folder: unchanged = nothing to do
    sa.Column("imported_utc", UTCDateTime, nullable=False),
    sa.Column("seed", sa.BigInteger),  # revision 0002: run.json station.seed (simulated stations)
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
