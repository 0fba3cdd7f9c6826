"""What a streaming, resumable `mediahub verify` reads and writes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

- PostgreSQL: the storage key columns (media_items.original_key, media_variants.storage_key,
  pending_deletes.storage_key) take the C collation, so that they compare and sort as bytes, as
  S3 lists keys, whatever the database's own collation (a linguistic one puts `a-b` after `a/b`).
  Their indexes are rebuilt, the table is not rewritten. SQLite and MariaDB (utf8mb4_bin) compare
  bytes already.
- An index on pending_deletes.storage_key: verify reads the queued keys in key order.
- `verify_checkpoints`: how far an interrupted pass got, per store.

Downgrade: the checkpoints and the index are dropped, PostgreSQL's columns take the database's
collation again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_COLUMNS = (("media_items", "original_key"), ("media_variants", "storage_key"), ("pending_deletes", "storage_key"))
KEY_LENGTH = 512


def _collate_keys(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in KEY_COLUMNS:
        op.alter_column(table, column, type_=sa.String(KEY_LENGTH, collation=collation),
                        existing_type=sa.String(KEY_LENGTH), existing_nullable=False)


def upgrade() -> None:
    _collate_keys("C")
    op.create_index("ix_pending_deletes_storage_key", "pending_deletes", ["storage_key"])
    op.create_table(
        "verify_checkpoints",
        sa.Column("store", sa.String(512), nullable=False),
        sa.Column("after_key", sa.String(KEY_LENGTH).with_variant(sa.String(KEY_LENGTH, collation="C"), "postgresql"),
                  nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False)
          for name in ("objects", "keys_in_db", "stray", "missing", "removed", "marked")),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("store", name="pk_verify_checkpoints"),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("verify_checkpoints")
    op.drop_index("ix_pending_deletes_storage_key", table_name="pending_deletes")
    _collate_keys(None)
