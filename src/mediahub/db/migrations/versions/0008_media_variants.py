"""An item's variants become rows of `media_variants` instead of a JSON list on the item.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Each entry {name, format, key, width, height, size, content_type} of `media_items.variants`
becomes a row; the file route then finds a variant by its key through an index. Entries
that are not objects or lack a name, format or key are dropped (no reader could use them);
a missing width, height or size becomes 0.
An item holds one variant per (name, format): where the list names a pair twice the last
entry wins, as jobs append their renditions after the ones they replace. Rows keep their
item's created_at.

Downgrade: each item's rows become its JSON list again, in row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from mediahub.db.migration_types import BIG_ID, MYSQL_TABLE_OPTIONS, TIMESTAMP

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 500
# Column widths of the new table, which values copied from the JSON must fit.
NAME_MAX, FORMAT_MAX, KEY_MAX, CONTENT_TYPE_MAX = 64, 16, 512, 64

media = sa.table("media_items", sa.column("id", sa.BigInteger), sa.column("variants", sa.JSON),
                 sa.column("created_at", TIMESTAMP))
variants = sa.table("media_variants", sa.column("id", sa.BigInteger), sa.column("media_id", sa.BigInteger),
                    sa.column("name", sa.String), sa.column("format", sa.String),
                    sa.column("storage_key", sa.String), sa.column("width", sa.Integer),
                    sa.column("height", sa.Integer), sa.column("byte_size", sa.BigInteger),
                    sa.column("content_type", sa.String), sa.column("created_at", TIMESTAMP))


def _count(value: Any) -> int:
    """A width, height or size; 0 where the entry has none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _text(entry: dict[str, Any], name: str, limit: int) -> str | None:
    value = entry.get(name)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _rows(media_id: int, entries: Any, created_at: Any) -> list[dict[str, Any]]:
    """The variant rows of one item's JSON list, one per (name, format), the last entry winning."""
    by_pair: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name, fmt = _text(entry, "name", NAME_MAX), _text(entry, "format", FORMAT_MAX)
        key = _text(entry, "key", KEY_MAX)
        if name is None or fmt is None or key is None:
            continue
        by_pair.pop((name, fmt), None)  # the winner takes the later place in the order
        by_pair[(name, fmt)] = {
            "media_id": media_id, "name": name, "format": fmt, "storage_key": key,
            "width": _count(entry.get("width")), "height": _count(entry.get("height")),
            "byte_size": _count(entry.get("size")),
            "content_type": _text(entry, "content_type", CONTENT_TYPE_MAX) or "application/octet-stream",
            "created_at": created_at,
        }
    return list(by_pair.values())


def _copy_json_to_rows() -> None:
    connection = op.get_bind()
    last_id = 0
    while True:
        page = connection.execute(
            sa.select(media.c.id, media.c.variants, media.c.created_at)
            .where(media.c.id > last_id).order_by(media.c.id).limit(PAGE)
        ).all()
        rows = [row for media_id, entries, created_at in page for row in _rows(media_id, entries, created_at)]
        if rows:
            connection.execute(sa.insert(variants), rows)
        if len(page) < PAGE:
            return
        last_id = page[-1].id


def _copy_rows_to_json() -> None:
    connection = op.get_bind()
    last_id = 0
    while True:
        ids = list(connection.scalars(
            sa.select(media.c.id).where(media.c.id > last_id).order_by(media.c.id).limit(PAGE)))
        if not ids:
            return
        lists: dict[int, list[dict[str, Any]]] = {media_id: [] for media_id in ids}
        for row in connection.execute(
            sa.select(variants).where(variants.c.media_id.in_(ids)).order_by(variants.c.id)
        ).mappings():
            lists[row["media_id"]].append({
                "name": row["name"], "format": row["format"], "key": row["storage_key"], "width": row["width"],
                "height": row["height"], "size": row["byte_size"], "content_type": row["content_type"],
            })
        for media_id, entries in lists.items():
            connection.execute(sa.update(media).where(media.c.id == media_id).values(variants=entries))
        if len(ids) < PAGE:
            return
        last_id = ids[-1]


def upgrade() -> None:
    op.create_table(
        "media_variants",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("media_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(NAME_MAX), nullable=False),
        sa.Column("format", sa.String(FORMAT_MAX), nullable=False),
        sa.Column("storage_key", sa.String(KEY_MAX), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(CONTENT_TYPE_MAX), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_media_variants"),
        sa.ForeignKeyConstraint(["media_id"], ["media_items.id"], ondelete="CASCADE",
                                name="fk_media_variants_media_id_media_items"),
        sa.UniqueConstraint("media_id", "name", "format", name="uq_variant_name_format"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_variants_storage_key", "media_variants", ["storage_key"])
    _copy_json_to_rows()
    # Not in batch mode on SQLite: a batch recreates media_items, and dropping the old table
    # would cascade into media_variants (foreign keys are on). SQLite drops a plain column in place.
    op.drop_column("media_items", "variants")


def downgrade() -> None:
    # Nullable until filled. SQLite's batch recreates media_items: only once media_variants is gone.
    op.add_column("media_items", sa.Column("variants", sa.JSON(), nullable=True))
    _copy_rows_to_json()
    op.drop_index("ix_variants_storage_key", table_name="media_variants")
    op.drop_table("media_variants")
    with op.batch_alter_table("media_items") as batch:
        batch.alter_column("variants", existing_type=sa.JSON(), nullable=False)
