"""Initial schema: media items, entity members, pending deletes.

Revision ID: 0001
Revises:
Create Date: 2024-11-26

Types are spelled out here rather than imported from the models, so this
revision keeps creating the same schema when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_items",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("entity_field", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("primary_marker", sa.Boolean(), nullable=True),
        sa.Column("media_type", sa.String(8), nullable=False),
        sa.Column("storage_type", sa.String(8), nullable=False),
        sa.Column("bucket_name", sa.String(255), nullable=True),
        sa.Column("original_key", sa.String(512), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("caption", sa.Text(), nullable=True),
        sa.Column("alt_text", sa.String(500), nullable=True),
        sa.Column("moderation_status", sa.String(16), nullable=False),
        sa.Column("moderation_reason", sa.String(500), nullable=True),
        sa.Column("processing_status", sa.String(16), nullable=False),
        sa.Column("image_hash", sa.String(16), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("uploaded_by", sa.String(128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_media_items"),
        sa.UniqueConstraint("public_id", name="uq_media_items_public_id"),
        sa.UniqueConstraint(
            "entity_type", "entity_id", "entity_field", "primary_marker", name="uq_media_one_primary"
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_media_entity", "media_items", ["entity_type", "entity_id", "entity_field", "position"])
    for column in ("is_primary", "moderation_status", "storage_type", "sha256", "image_hash", "uploaded_by"):
        op.create_index(f"ix_media_{column}", "media_items", [column])

    op.create_table(
        "entity_members",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entity_members"),
        sa.UniqueConstraint("entity_type", "entity_id", "subject", name="uq_member"),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "pending_deletes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pending_deletes"),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("pending_deletes")
    op.drop_table("entity_members")
    op.drop_table("media_items")
