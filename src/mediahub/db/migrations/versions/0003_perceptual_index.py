"""Duplicate-detection columns: pixel digest, fingerprint thumbnail, indexed pHash bands.

Revision ID: 0003
Revises: 0002

`hash_w0..3` / `hash_c0..3` hold the whole-picture and centre pHashes of the
64x64 grey fingerprint thumbnail as four 16-bit bands each, one index per band
(multi-index hashing, see dedup/policy.py). Rows written before this
revision have NULLs and take part in exact (SHA-256) matching only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BAND_COLUMNS = [f"hash_{kind}{band}" for kind in "wc" for band in range(4)]


def upgrade() -> None:
    with op.batch_alter_table("media_items") as batch:
        batch.add_column(sa.Column("pixel_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("dedup_thumb", sa.LargeBinary(), nullable=True))
        for column in BAND_COLUMNS:
            batch.add_column(sa.Column(column, sa.Integer(), nullable=True))
    op.create_index("ix_media_pixel_sha256", "media_items", ["pixel_sha256"])
    for column in BAND_COLUMNS:
        op.create_index(f"ix_media_{column}", "media_items", [column])


def downgrade() -> None:
    for column in reversed(BAND_COLUMNS):
        op.drop_index(f"ix_media_{column}", table_name="media_items")
    op.drop_index("ix_media_pixel_sha256", table_name="media_items")
    with op.batch_alter_table("media_items") as batch:
        for column in reversed(BAND_COLUMNS):
            batch.drop_column(column)
        batch.drop_column("dedup_thumb")
        batch.drop_column("pixel_sha256")
