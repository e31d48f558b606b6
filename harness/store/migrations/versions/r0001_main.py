"""The schema before migrations: tables ``runs`` and ``metrics`` as ``metadata.create_all`` made them
(a database made then has these tables and no version table; it is stamped with this revision).

Revision ID: 0001_main
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_main"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("station", sa.String(255), nullable=False),
        sa.Column("protocol", sa.String(255), nullable=False),
        sa.Column("protocol_version", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("started_utc", sa.DateTime),
        sa.Column("ended_utc", sa.DateTime),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("analysed_utc", sa.DateTime),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("imported_utc", sa.DateTime, nullable=False),
    )
    op.create_index("ix_runs_station", "runs", ["station"])
    op.create_index("ix_runs_protocol", "runs", ["protocol"])
    op.create_index("ix_runs_started_utc", "runs", ["started_utc"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
        sa.Column("series", sa.String(255)),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(255), nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("unit", sa.String(64)),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("limit_json", sa.Text),
    )
    op.create_index("ix_metrics_run_id", "metrics", ["run_id"])
    op.create_index("ix_metrics_metric_subject", "metrics", ["metric", "subject"])


def downgrade() -> None:
    op.drop_table("metrics")
    op.drop_table("runs")
