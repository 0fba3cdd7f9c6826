"""Uploads whose bytes arrive apart from their ingest: resumable (tus) and direct to the bucket.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

- uploads: one row per upload in progress or recently finished (db/models.py `Upload`).

Downgrade: the table is dropped; staged bytes still stored (temp files, S3 multipart uploads)
are left for the operator (`mediahub verify` lists them before the downgrade).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, OBJECT_KEY, TIMESTAMP

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("public_id", sa.String(64), nullable=False),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("principal", sa.JSON, nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=True),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("entity_field", sa.String(32), nullable=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("length", sa.BigInteger, nullable=True),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("concat", sa.String(8), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("storage_key", OBJECT_KEY, nullable=False),
        sa.Column("staging", sa.JSON, nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("media_id", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.JSON, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.UniqueConstraint("public_id", name="uq_uploads_public_id"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_uploads_expires_at", "uploads", ["expires_at"])
    op.create_index("ix_uploads_created_by_state", "uploads", ["created_by", "state"])


def downgrade() -> None:
    op.drop_table("uploads")
