"""User reports become rows; an unapproved item's primary claim waits for its approval.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01

`media_reports`: who reported an item, why and when; open until a moderator decides
on the item or dismisses its reports (one open report per reporter and item).
`media_items.claims_primary`: an unapproved upload that asked to be the primary
while an approved item held it takes the primary when it is approved.
Existing rows claim nothing (their primaries are already settled).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("media_items") as batch:
        batch.add_column(sa.Column("claims_primary", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "media_reports",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("media_id", sa.BigInteger(), nullable=False),
        sa.Column("reporter", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("open_marker", sa.Boolean(), nullable=True),
        sa.Column("resolution", sa.String(16), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("closed_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_media_reports"),
        sa.UniqueConstraint("media_id", "reporter", "open_marker", name="uq_report_one_open"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_reports_reporter_created", "media_reports", ["reporter", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_reports_reporter_created", table_name="media_reports")
    op.drop_table("media_reports")
    with op.batch_alter_table("media_items") as batch:
        batch.drop_column("claims_primary")
