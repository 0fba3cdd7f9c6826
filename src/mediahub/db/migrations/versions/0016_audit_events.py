"""The audit trail: who changed what, when and why.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-12

* `audit_events`: one row per change of moderation, reports, deletes, members, primaries, order, text,
  uploads, duplicate reviews and storage moves (db/models.py `AuditEvent`), with the indexes of its
  listings: newest first over all, by item, actor, action and entity.

Downgrade: the table and the trail in it are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("media_id", sa.BigInteger(), nullable=True),
        sa.Column("media_public_id", sa.String(32), nullable=True),
        sa.Column("entity_type", sa.String(32), nullable=True),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_audit_occurred", "audit_events", ["occurred_at", "id"])
    op.create_index("ix_audit_media", "audit_events", ["media_public_id", "occurred_at", "id"])
    op.create_index("ix_audit_actor", "audit_events", ["actor", "occurred_at", "id"])
    op.create_index("ix_audit_action", "audit_events", ["action", "occurred_at", "id"])
    op.create_index("ix_audit_entity", "audit_events", ["entity_type", "entity_id", "parent_id", "occurred_at", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
