"""Online storage migration: digests of stored originals, the stores rows record, the migration journal.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10

* `media_items.stored_sha256`: SHA-256 of the original as stored (after GPS and metadata are
  stripped, or its re-encode), recorded by whoever writes it; `sha256` is of the bytes as uploaded.
  NULL for rows stored before: `mediahub storage migrate` records it from the bytes it copies.
* `ix_media_store` (storage_type, bucket_name) in place of `ix_media_storage_type`: the stores the
  rows record are found a seek each (runtime.py), and a store's rows counted (analytics) as before.
* `storage_migrations`: one row per `mediahub storage migrate` run towards a target store, with the
  source stores it met; `storage_migration_objects`: its journal, one row per item and object key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, OBJECT_KEY, TIMESTAMP

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Not in batch mode: on SQLite a batch recreates media_items, and dropping the old table would cascade
    # into media_variants (foreign keys are on). Every backend adds and drops a plain column in place.
    op.add_column("media_items", sa.Column("stored_sha256", sa.String(64), nullable=True))
    op.drop_index("ix_media_storage_type", table_name="media_items")
    op.create_index("ix_media_store", "media_items", ["storage_type", "bucket_name"])
    op.create_table(
        "storage_migrations",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("target_type", sa.String(8), nullable=False),
        sa.Column("target_bucket", sa.String(255), nullable=True),
        sa.Column("sources", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_storage_migrations"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_storage_migrations_state", "storage_migrations", ["state"])
    op.create_table(
        "storage_migration_objects",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("media_id", sa.BigInteger, nullable=False),
        sa.Column("storage_key", OBJECT_KEY, nullable=False),
        sa.Column("source_type", sa.String(8), nullable=False),
        sa.Column("source_bucket", sa.String(255), nullable=True),
        sa.Column("byte_size", sa.BigInteger, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("digest_from", sa.String(16), nullable=True),
        sa.Column("copied", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("switched_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_storage_migration_objects"),
        sa.ForeignKeyConstraint(["run_id"], ["storage_migrations.id"], ondelete="CASCADE",
                                name="fk_storage_migration_objects_run_id_storage_migrations"),
        sa.UniqueConstraint("run_id", "media_id", "storage_key", name="uq_migration_object"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_migration_objects_state", "storage_migration_objects", ["run_id", "state", "id"])


def downgrade() -> None:
    op.drop_table("storage_migration_objects")
    op.drop_table("storage_migrations")
    op.drop_index("ix_media_store", table_name="media_items")
    op.create_index("ix_media_storage_type", "media_items", ["storage_type"])
    op.drop_column("media_items", "stored_sha256")
