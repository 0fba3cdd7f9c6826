"""Duplicate review and upload analytics: reviewed groups, and indexes for their reads.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08

* `duplicate_reviews`: the duplicate groups a moderator kept whole ("keep all"), by kind and key, with
  the newest member they saw, who and when (db/models.py `KeptDuplicateGroup`).
* `ix_media_pixel_sha256` gains `sha256` and `id`: the exact duplicate groups (equal pixels; equal files
  among rows without a pixel digest) are listed a page at a time with their newest member from the index
  alone. Its first column is the old index's, so pixel lookups use it as before.
* `ix_media_created_at` (created_at, byte_size): uploads per day over a range of days, from the index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "duplicate_reviews",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("up_to_id", sa.BigInteger(), nullable=False),
        sa.Column("reviewed_by", sa.String(128), nullable=False),
        sa.Column("reviewed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("kind", "group_key", name="pk_duplicate_reviews"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.drop_index("ix_media_pixel_sha256", table_name="media_items")
    op.create_index("ix_media_pixel_sha256", "media_items", ["pixel_sha256", "sha256", "id"])
    op.create_index("ix_media_created_at", "media_items", ["created_at", "byte_size"])


def downgrade() -> None:
    op.drop_index("ix_media_created_at", table_name="media_items")
    op.drop_index("ix_media_pixel_sha256", table_name="media_items")
    op.create_index("ix_media_pixel_sha256", "media_items", ["pixel_sha256"])
    op.drop_table("duplicate_reviews")
