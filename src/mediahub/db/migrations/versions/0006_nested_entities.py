"""Nested entities are named by their parent too: parent_id on media items and members.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

An amenity AM-1 of community C1 and AM-1 of C2 are different entities: `parent_id`
joins the identity of media items (the one-primary constraint and the entity index)
and of members. Top-level entities have parent_id '' (not NULL: NULLs never collide
in a unique constraint).

Existing nested rows take their parent from the `metadata.parent` the upload route
recorded. Rows with none (batch and CLI uploads) keep '': no parent's members own
them; their uploader, moderators and admins still do. Existing members of a nested
kind keep '' too, so they own only those parentless rows: their membership named no
community, and one cannot be guessed safely (an attacker's uploads could point at any).

Downgrade: nested members with a parent are removed (without one they would collide),
and nested items with a parent lose their primary mark, for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The nested kinds of the kind table when this revision was written, and their parent kinds.
NESTED = {"amenity": "community"}
ENTITY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
PAGE = 500

media = sa.table("media_items", sa.column("id", sa.BigInteger), sa.column("entity_type", sa.String),
                 sa.column("parent_id", sa.String), sa.column("metadata", sa.JSON),
                 sa.column("is_primary", sa.Boolean), sa.column("primary_marker", sa.Boolean))
members = sa.table("entity_members", sa.column("entity_type", sa.String), sa.column("parent_id", sa.String))


def _parent_column() -> sa.Column[Any]:
    return sa.Column("parent_id", sa.String(64), nullable=False, server_default="")


def _recorded_parent(entity_type: str, meta: Any) -> str | None:
    parent = meta.get("parent") if isinstance(meta, dict) else None
    if not isinstance(parent, dict) or parent.get("entity_type") != NESTED[entity_type]:
        return None
    parent_id = parent.get("entity_id")
    return parent_id if isinstance(parent_id, str) and ENTITY_ID_RE.match(parent_id) else None


def _fill_parents() -> None:
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(media.c.id, media.c.entity_type, media.c["metadata"])
            .where(media.c.id > last_id, media.c.entity_type.in_(sorted(NESTED)))
            .order_by(media.c.id).limit(PAGE)
        ).all()
        for media_id, entity_type, meta in rows:
            parent_id = _recorded_parent(entity_type, meta)
            if parent_id is not None:
                connection.execute(sa.update(media).where(media.c.id == media_id).values(parent_id=parent_id))
        if len(rows) < PAGE:
            return
        last_id = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("media_items") as batch:
        batch.add_column(_parent_column())
        batch.drop_constraint("uq_media_one_primary", type_="unique")
        batch.create_unique_constraint(
            "uq_media_one_primary", ["entity_type", "parent_id", "entity_id", "entity_field", "primary_marker"])
    op.drop_index("ix_media_entity", table_name="media_items")
    op.create_index("ix_media_entity", "media_items",
                    ["entity_type", "parent_id", "entity_id", "entity_field", "position"])
    with op.batch_alter_table("entity_members") as batch:
        batch.add_column(_parent_column())
        batch.drop_constraint("uq_member", type_="unique")
        batch.create_unique_constraint("uq_member", ["entity_type", "parent_id", "entity_id", "subject"])
    _fill_parents()


def downgrade() -> None:
    op.execute(sa.delete(members).where(members.c.parent_id != ""))
    op.execute(sa.update(media).where(media.c.parent_id != "").values(is_primary=False, primary_marker=None))
    with op.batch_alter_table("entity_members") as batch:
        batch.drop_constraint("uq_member", type_="unique")
        batch.create_unique_constraint("uq_member", ["entity_type", "entity_id", "subject"])
        batch.drop_column("parent_id")
    op.drop_index("ix_media_entity", table_name="media_items")
    op.create_index("ix_media_entity", "media_items", ["entity_type", "entity_id", "entity_field", "position"])
    with op.batch_alter_table("media_items") as batch:
        batch.drop_constraint("uq_media_one_primary", type_="unique")
        batch.create_unique_constraint(
            "uq_media_one_primary", ["entity_type", "entity_id", "entity_field", "primary_marker"])
        batch.drop_column("parent_id")
