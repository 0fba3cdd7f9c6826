"""Delivery: renditions made on request, stored beside the presets, and rendered once.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

- media_variants.kind: `preset` (the configured sizes, listed in the item's JSON) or
  `transform` (a signed on-the-fly transform's stored result, named by its options' digest,
  never listed; deleted with its item and when the item's focal point changes).
- media_variants.content_hash: SHA-256 of the object's bytes, the strong ETag of the
  rendition; null for rows written before it (their ETag is computed when served).
- render_claims: one row per rendition being made on request, so that concurrent misses
  for it, in any process, render it once (media/delivery.py).

Downgrade: the table and the columns are dropped, transform results first (their objects
stay in the store, where `mediahub verify` finds them as stray).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("media_variants") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="preset"))
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
    op.create_table(
        "render_claims",
        sa.Column("media_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("claimed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("media_id", "name", "format", name="pk_render_claims"),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("render_claims")
    op.execute(sa.text("DELETE FROM media_variants WHERE kind <> 'preset'"))
    with op.batch_alter_table("media_variants") as batch:
        batch.drop_column("content_hash")
        batch.drop_column("kind")
