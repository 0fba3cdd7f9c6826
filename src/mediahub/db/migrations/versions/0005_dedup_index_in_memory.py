"""Near-duplicate lookups move into memory: index updated_at, drop the pHash band indexes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Each process now holds the pHashes in its own index (dedup/index.py),
loaded from the band columns (kept: they store the hashes) and synced by id and
by `updated_at`, which gets an index. The eight band indexes of 0003 served the
SQL band lookup, which is gone.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BAND_COLUMNS = [f"hash_{kind}{band}" for kind in "wc" for band in range(4)]


def upgrade() -> None:
    op.create_index("ix_media_updated_at", "media_items", ["updated_at"])
    for column in BAND_COLUMNS:
        op.drop_index(f"ix_media_{column}", table_name="media_items")


def downgrade() -> None:
    for column in BAND_COLUMNS:
        op.create_index(f"ix_media_{column}", "media_items", [column])
    op.drop_index("ix_media_updated_at", table_name="media_items")
