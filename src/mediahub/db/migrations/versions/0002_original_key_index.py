"""Index media_items.original_key, so the file route finds an object's row without a scan.

Revision ID: 0002
Revises: 0001
Create Date: 2024-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_media_original_key", "media_items", ["original_key"])


def downgrade() -> None:
    op.drop_index("ix_media_original_key", table_name="media_items")
