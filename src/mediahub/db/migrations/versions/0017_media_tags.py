"""Machine tags: what a classifier saw in an item, and moderators' review of it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

* `media_tags`: per item, room and object tags with their score, source (machine or moderator), model and
  review state (db/models.py `MediaTag`), deleted with their item; indexed by item (the unique key), by
  label (filtering by tag) and by state (the decided rows, for the export).
* `jobs.settles_item`: false for jobs that are not part of making their item (tagging), which leave its
  processing status alone. Existing jobs are all part of it.

Downgrade: the table (and every tag and review in it) and the column are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_tags",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("media_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), server_default="", nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_media_tags"),
        sa.ForeignKeyConstraint(["media_id"], ["media_items.id"], ondelete="CASCADE",
                                name="fk_media_tags_media_id_media_items"),
        sa.UniqueConstraint("media_id", "source", "model", "kind", "label", name="uq_media_tag"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_media_tags_label", "media_tags", ["label", "media_id"])
    op.create_index("ix_media_tags_state", "media_tags", ["state", "id"])
    op.add_column("jobs", sa.Column("settles_item", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    op.drop_table("media_tags")
    # Not in batch mode on SQLite: a plain column is dropped in place (jobs has no foreign key to rebuild).
    op.drop_column("jobs", "settles_item")
