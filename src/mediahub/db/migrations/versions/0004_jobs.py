"""The jobs table: an outbox of background work (owned by the jobs work).

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-14

Types are spelled out here (as in 0001) so this revision keeps creating the
same table when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("media_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", TIMESTAMP, nullable=False),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_jobs_media_id", "jobs", ["media_id"])
    op.create_index("ix_jobs_status_run_after", "jobs", ["status", "run_after"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_run_after", table_name="jobs")
    op.drop_index("ix_jobs_media_id", table_name="jobs")
    op.drop_table("jobs")
