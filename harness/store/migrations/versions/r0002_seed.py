"""What the facility board needs: the simulated station's seed of a run (``runs.seed``, nullable: None
on hardware and for runs recorded before), and an index on ``runs.ended_utc`` (the newest runs of a
microscope, the age of its last check). Every row is kept.

Revision ID: 0002_seed
Revises: 0001_main
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_seed"
down_revision = "0001_main"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("seed", sa.BigInteger, nullable=True))
    op.create_index("ix_runs_ended_utc", "runs", ["ended_utc"])


def downgrade() -> None:
    op.drop_index("ix_runs_ended_utc", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("seed")
