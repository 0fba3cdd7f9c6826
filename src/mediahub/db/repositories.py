"""Queries over the metadata store, one small class per table.

Each repository works inside the caller's `Session` and transaction (it
flushes, never commits), so a service can combine several calls atomically.
Nothing here knows about HTTP or settings.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mediahub.db.models import EntityMember, MediaItem, PendingDelete
from mediahub.errors import Conflict, InvalidInput

MODERATION_QUEUE_STATUSES = ("pending", "flagged")
USAGE_COLUMNS = frozenset({"storage_type", "entity_type", "media_type", "moderation_status"})
MEMBER_ROLES = frozenset({"owner", "editor"})
LAST_ERROR_MAX = 500  # PendingDelete.last_error is String(500); PostgreSQL refuses longer


def _in_field(entity_type: str, entity_id: str, field: str) -> tuple[ColumnElement[bool], ...]:
    return (
        MediaItem.entity_type == entity_type,
        MediaItem.entity_id == entity_id,
        MediaItem.entity_field == field,
    )


class MediaRepository:
    """Media items: gallery order, the one primary per entity field, deletes."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, item: MediaItem) -> MediaItem:
        """Insert `item` at the end of its field, taking over the primary if it claims it."""
        siblings = self._lock_field(item.entity_type, item.entity_id, item.entity_field)
        if not item.position:
            item.position = max((s.position for s in siblings), default=-1) + 1
        if item.is_primary:
            self._clear_other_primaries(item)
        item.primary_marker = True if item.is_primary else None
        self.session.add(item)
        self.session.flush()
        return item

    def get(self, media_id: int) -> MediaItem | None:
        return self.session.get(MediaItem, media_id)

    def get_by_public_id(self, public_id: str) -> MediaItem | None:
        return self.session.scalars(select(MediaItem).where(MediaItem.public_id == public_id)).one_or_none()

    def list_for_entity(
        self,
        entity_type: str,
        entity_id: str,
        *,
        field: str | None = None,
        moderation_status: str | None = None,
        is_primary: bool | None = None,
        statuses_visible: set[str] | None = None,
        visible_to_uploader: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[MediaItem], int]:
        """One page of an entity's media in display order, and the total matching.

        `statuses_visible` limits the page to those moderation statuses, except
        for items uploaded by `visible_to_uploader` (people see their own uploads).
        """
        conditions: list[ColumnElement[bool]] = [
            MediaItem.entity_type == entity_type,
            MediaItem.entity_id == entity_id,
        ]
        if field is not None:
            conditions.append(MediaItem.entity_field == field)
        if moderation_status is not None:
            conditions.append(MediaItem.moderation_status == moderation_status)
        if is_primary is not None:
            conditions.append(MediaItem.is_primary.is_(is_primary))
        if statuses_visible is not None:
            visible = MediaItem.moderation_status.in_(sorted(statuses_visible))
            if visible_to_uploader is not None:
                visible = or_(visible, MediaItem.uploaded_by == visible_to_uploader)
            conditions.append(visible)
        total = self.session.scalar(select(func.count(MediaItem.id)).where(*conditions)) or 0
        page = (
            select(MediaItem)
            .where(*conditions)
            .order_by(MediaItem.entity_field, MediaItem.position, MediaItem.id)
            .offset(offset)
            .limit(limit)
        )
        return list(self.session.scalars(page)), total

    def set_primary(self, item: MediaItem) -> None:
        """Make `item` the only primary of its entity field.

        The field's rows are locked first (FOR UPDATE; SQLite has a single
        writer anyway), so concurrent calls run one after the other and the last
        one wins; `uq_media_one_primary` catches anything that slips past.
        """
        self._lock_field(item.entity_type, item.entity_id, item.entity_field)
        self._clear_other_primaries(item)
        item.is_primary = True
        item.primary_marker = True
        self.session.flush()

    def clear_primary(self, item: MediaItem) -> None:
        item.is_primary = False
        item.primary_marker = None
        self.session.flush()

    def others_in_slot(self, entity_type: str, entity_id: str, field: str, exclude_id: int) -> list[MediaItem]:
        """The items a single-slot field (say, an avatar) holds besides `exclude_id`."""
        query = (
            select(MediaItem)
            .where(*_in_field(entity_type, entity_id, field), MediaItem.id != exclude_id)
            .order_by(MediaItem.position, MediaItem.id)
        )
        return list(self.session.scalars(query))

    def reorder(self, entity_type: str, entity_id: str, field: str, ids: list[int]) -> list[MediaItem]:
        """Put the field's items in the order of `ids`, which must name each item exactly once."""
        items = {item.id: item for item in self._lock_field(entity_type, entity_id, field)}
        if sorted(ids) != sorted(items):
            raise Conflict(
                "the new order must list every item of the field exactly once",
                code="order_mismatch",
                expected=sorted(items),
            )
        for position, media_id in enumerate(ids):
            items[media_id].position = position
        self.session.flush()
        return [items[media_id] for media_id in ids]

    def delete(self, item: MediaItem) -> list[str]:
        """Remove the row and queue its stored objects for deletion, atomically."""
        keys = item.keys()
        self.session.delete(item)
        self.session.add_all(PendingDelete(storage_key=key) for key in keys)
        self.session.flush()
        return keys

    def find_by_sha256(
        self,
        sha256: str,
        *,
        entity_type: str | None = None,
        entity_id: str | None = None,
        uploaded_by: str | None = None,
    ) -> list[MediaItem]:
        """Exact duplicates of a file, optionally within one entity or one uploader."""
        conditions = [MediaItem.sha256 == sha256]
        if entity_type is not None:
            conditions.append(MediaItem.entity_type == entity_type)
        if entity_id is not None:
            conditions.append(MediaItem.entity_id == entity_id)
        if uploaded_by is not None:
            conditions.append(MediaItem.uploaded_by == uploaded_by)
        return list(self.session.scalars(select(MediaItem).where(*conditions).order_by(MediaItem.id)))

    def all_keys(self, page_size: int = 500) -> Iterator[tuple[int, str]]:
        """(media id, key) for every stored object, read page by page by id.

        Keyset paging keeps memory flat and stays correct while rows are added.
        """
        last_id = 0
        while True:
            page = self.session.execute(
                select(MediaItem.id, MediaItem.original_key, MediaItem.variants)
                .where(MediaItem.id > last_id)
                .order_by(MediaItem.id)
                .limit(page_size)
            ).all()
            for media_id, original_key, variants in page:
                yield media_id, original_key
                for variant in variants or []:
                    yield media_id, variant["key"]
            if len(page) < page_size:
                return
            last_id = page[-1].id

    def ids(self, page_size: int = 500) -> Iterator[int]:
        """Every media id, ascending, read page by page (keyset paging, as `all_keys`)."""
        last_id = 0
        while True:
            page = list(self.session.scalars(
                select(MediaItem.id).where(MediaItem.id > last_id).order_by(MediaItem.id).limit(page_size)
            ))
            yield from page
            if len(page) < page_size:
                return
            last_id = page[-1]

    def usage_by(self, column_name: str) -> dict[str, dict[str, int]]:
        """Item count and original bytes per value of one grouping column."""
        if column_name not in USAGE_COLUMNS:
            raise InvalidInput(
                f"cannot group usage by {column_name!r}", code="invalid_group", allowed=sorted(USAGE_COLUMNS)
            )
        column = getattr(MediaItem, column_name)
        rows = self.session.execute(
            select(column, func.count(MediaItem.id), func.coalesce(func.sum(MediaItem.byte_size), 0)).group_by(
                column
            )
        )
        # PostgreSQL sums BIGINT as NUMERIC (a Decimal): normalise to int.
        return {value: {"count": int(count), "bytes": int(size)} for value, count, size in rows}

    def moderation_queue(self, offset: int = 0, limit: int = 50) -> list[MediaItem]:
        """Items awaiting a moderator, oldest first."""
        query = (
            select(MediaItem)
            .where(MediaItem.moderation_status.in_(MODERATION_QUEUE_STATUSES))
            .order_by(MediaItem.created_at, MediaItem.id)
            .offset(offset)
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def _lock_field(self, entity_type: str, entity_id: str, field: str) -> list[MediaItem]:
        """Lock and return the field's rows; SQLite ignores FOR UPDATE (one writer at a time).

        populate_existing: objects already in the session take the locked (latest) values.
        """
        query = (
            select(MediaItem)
            .where(*_in_field(entity_type, entity_id, field))
            .order_by(MediaItem.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return list(self.session.scalars(query))

    def _clear_other_primaries(self, item: MediaItem) -> None:
        # A bulk UPDATE decided by the database, not by rows read earlier, so it
        # also clears a primary committed by another transaction since then.
        conditions = [*_in_field(item.entity_type, item.entity_id, item.entity_field)]
        if item.id is not None:
            conditions.append(MediaItem.id != item.id)
        self.session.execute(
            update(MediaItem)
            .where(*conditions, or_(MediaItem.is_primary.is_(True), MediaItem.primary_marker.is_not(None)))
            .values(is_primary=False, primary_marker=None)
        )


class PendingDeleteRepository:
    """The queue of stored objects still to delete."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def due(self, limit: int) -> list[PendingDelete]:
        """The next objects to try, fewest attempts first so a stuck key cannot starve the rest.

        Rows another worker holds are skipped (SKIP LOCKED on PostgreSQL and MariaDB).
        """
        query = (
            select(PendingDelete)
            .order_by(PendingDelete.attempts, PendingDelete.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(query))

    def done(self, ids: list[int]) -> None:
        if ids:
            self.session.execute(delete(PendingDelete).where(PendingDelete.id.in_(ids)))

    def failed(self, pending_id: int, error: str) -> None:
        self.session.execute(
            update(PendingDelete)
            .where(PendingDelete.id == pending_id)
            .values(attempts=PendingDelete.attempts + 1, last_error=error[:LAST_ERROR_MAX])
        )


class MemberRepository:
    """Who owns or edits an entity."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def grant(self, entity_type: str, entity_id: str, subject: str, role: str = "owner") -> EntityMember:
        """Add `subject` with `role`, or change the role of an existing member."""
        if role not in MEMBER_ROLES:
            raise InvalidInput(f"unknown role {role!r}", code="invalid_role", allowed=sorted(MEMBER_ROLES))
        member = self._find(entity_type, entity_id, subject) or self._insert(entity_type, entity_id, subject, role)
        member.role = role
        self.session.flush()
        return member

    def revoke(self, entity_type: str, entity_id: str, subject: str) -> bool:
        """Remove the membership; False when there was none."""
        result: Any = self.session.execute(delete(EntityMember).where(*self._key(entity_type, entity_id, subject)))
        return bool(result.rowcount)

    def is_member(self, entity_type: str, entity_id: str, subject: str) -> bool:
        return self._find(entity_type, entity_id, subject) is not None

    def _find(self, entity_type: str, entity_id: str, subject: str) -> EntityMember | None:
        query = select(EntityMember).where(*self._key(entity_type, entity_id, subject))
        return self.session.scalars(query).one_or_none()

    def _insert(self, entity_type: str, entity_id: str, subject: str, role: str) -> EntityMember:
        """Insert in a savepoint; if a concurrent grant won the race, use its row."""
        member = EntityMember(entity_type=entity_type, entity_id=entity_id, subject=subject, role=role)
        try:
            with self.session.begin_nested():
                self.session.add(member)
        except IntegrityError:
            existing = self._find(entity_type, entity_id, subject)
            if existing is None:
                raise
            return existing
        return member

    @staticmethod
    def _key(entity_type: str, entity_id: str, subject: str) -> tuple[ColumnElement[bool], ...]:
        return (
            EntityMember.entity_type == entity_type,
            EntityMember.entity_id == entity_id,
            EntityMember.subject == subject,
        )

    # Defined last: inside the class body the name `list` is this method from here on.
    def list(self, entity_type: str, entity_id: str) -> builtins.list[EntityMember]:
        query = (
            select(EntityMember)
            .where(EntityMember.entity_type == entity_type, EntityMember.entity_id == entity_id)
            .order_by(EntityMember.id)
        )
        return builtins.list(self.session.scalars(query))
