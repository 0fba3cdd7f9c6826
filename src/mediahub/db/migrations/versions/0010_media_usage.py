"""Storage analytics from totals kept up to date (`media_usage`) instead of a scan per request.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07

One row per value of each grouping column (storage_type, entity_type, media_type,
moderation_status) and shard: items, their originals' bytes, the distinct objects they name
and those objects' bytes. Filled here from the existing rows, in shard 0, by the same counting
rule the application keeps them with (`mediahub.db.repositories.usage.count_rows`), over this
migration's own definitions of the two tables it reads.

Downgrade: the table is dropped (the analytics then has nothing to read: downgrade the code too).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import MYSQL_TABLE_OPTIONS
from mediahub.db.repositories.usage import count_rows, usage_rows

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

media = sa.table("media_items", sa.column("id", sa.BigInteger), sa.column("storage_type", sa.String),
                 sa.column("entity_type", sa.String), sa.column("media_type", sa.String),
                 sa.column("moderation_status", sa.String), sa.column("byte_size", sa.BigInteger),
                 sa.column("original_key", sa.String))
variants = sa.table("media_variants", sa.column("media_id", sa.BigInteger), sa.column("storage_key", sa.String),
                    sa.column("byte_size", sa.BigInteger))


def upgrade() -> None:
    usage = op.create_table(
        "media_usage",
        sa.Column("group_name", sa.String(32), nullable=False),
        sa.Column("group_value", sa.String(64), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("objects", sa.BigInteger(), nullable=False),
        sa.Column("object_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "group_value", "shard", name="pk_media_usage"),
        **MYSQL_TABLE_OPTIONS,
    )
    rows = usage_rows(count_rows(op.get_bind(), media, variants), shard=0)
    if rows:
        op.bulk_insert(usage, rows)


def downgrade() -> None:
    op.drop_table("media_usage")
