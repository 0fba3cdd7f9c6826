"""Indexes for reads that must not grow with the library: gallery pages and the moderation queue.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

* `ix_media_entity` gains `id` and `moderation_status` as its last columns: a page of an entity
  is then read in gallery order (field, position, id) straight from the index instead of sorting
  every row of the entity, and the items of an entity in the statuses a caller may see are
  counted from the index without reading the rows.
* `ix_media_moderation_queue` (moderation_status, created_at, id) replaces
  `ix_media_moderation_status` (its first column, so it serves every query that one did): the
  queue reads the oldest pending and flagged items a page at a time.
* `ix_reports_open` (open_marker, media_id): the queue's reported items come from the open
  reports alone, however many closed ones accumulate.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTITY_BEFORE = ["entity_type", "parent_id", "entity_id", "entity_field", "position"]


def upgrade() -> None:
    op.drop_index("ix_media_entity", table_name="media_items")
    op.create_index("ix_media_entity", "media_items", [*ENTITY_BEFORE, "id", "moderation_status"])
    op.create_index("ix_media_moderation_queue", "media_items", ["moderation_status", "created_at", "id"])
    op.drop_index("ix_media_moderation_status", table_name="media_items")
    op.create_index("ix_reports_open", "media_reports", ["open_marker", "media_id"])


def downgrade() -> None:
    op.drop_index("ix_reports_open", table_name="media_reports")
    op.create_index("ix_media_moderation_status", "media_items", ["moderation_status"])
    op.drop_index("ix_media_moderation_queue", table_name="media_items")
    op.drop_index("ix_media_entity", table_name="media_items")
    op.create_index("ix_media_entity", "media_items", ENTITY_BEFORE)
