"""Media rows: an entity's items, primaries and single slots, the moderation queue."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, case, delete, func, literal, or_, select, tuple_, union_all, update
from sqlalchemy.orm import Session

from mediahub.db.models import NO_PARENT, MediaItem, MediaReport, PendingDelete
from mediahub.db.repositories.variants import VariantRepository
from mediahub.errors import Conflict

MODERATION_QUEUE_STATUSES = ("pending", "flagged")
# What an unapproved item may not displace: approved items, and flagged ones (approved, hidden by
# reports until a moderator decides: a dismissal brings them back as they were).
GUARDED_STATUSES = ("approved", "flagged")


def _in_entity(entity_type: str, entity_id: str, parent_id: str | None) -> tuple[ColumnElement[bool], ...]:
    """An entity's rows; a nested kind's entity is named by its parent's id too (None: no parent)."""
    return (
        MediaItem.entity_type == entity_type,
        MediaItem.parent_id == (parent_id or NO_PARENT),
        MediaItem.entity_id == entity_id,
    )


def in_entity_any_parent(entity: tuple[str, str] | None) -> list[ColumnElement[bool]]:
    """The rows of entity (type, id) under any parent; None: every row."""
    if entity is None:
        return []
    return [MediaItem.entity_type == entity[0], MediaItem.entity_id == entity[1]]


def _in_field(entity_type: str, entity_id: str, field: str,
              parent_id: str | None = None) -> tuple[ColumnElement[bool], ...]:
    return (*_in_entity(entity_type, entity_id, parent_id), MediaItem.entity_field == field)


def lock_item(session: Session, media_id: int) -> None:
    """Hold the item's row until commit, on every database.

    A no-op UPDATE: PostgreSQL and MariaDB lock the row, SQLite takes its write
    lock (SELECT ... FOR UPDATE does nothing there). Reads that follow see every
    committed change, and no one else changes the row before this commit.
    """
    session.execute(update(MediaItem).where(MediaItem.id == media_id).values(id=MediaItem.id))


class RowFilter(Protocol):
    """More conditions on the rows of a listing (tags.TagFilter), in the dialect at hand."""

    def conditions(self, dialect: str) -> list[ColumnElement[bool]]: ...


# Where a keyset page starts: after this (entity_field, position, id), the gallery order of ix_media_entity.
GalleryKey = tuple[str, int, int]


def _gallery_page(session: Session, field: str | None,
                  after: GalleryKey | None) -> tuple[list[ColumnElement[bool]], tuple[ColumnElement[Any], ...]]:
    """The conditions and order that read one entity's items (of one field) in gallery order straight from
    ix_media_entity, from the start or after a key, on each database.

    Within one field the order leaves the field out: MariaDB sorts every row of the field when ORDER BY
    names a column its WHERE holds equal. PostgreSQL and SQLite read a row-value comparison as a range of
    the index; MariaDB reads a nested OR as one, but only without an equality on the field (with one it
    reads the field from its start), so there the field is bounded from above and the OR keeps the rest.
    """
    gallery = (MediaItem.position, MediaItem.id)
    if after is None:
        if field is None:
            return [], (MediaItem.entity_field, *gallery)
        return [MediaItem.entity_field == field], gallery
    after_field, position, media_id = after
    if field is not None and field != after_field:
        raise ValueError("the key belongs to another field")  # the service refuses such a cursor first
    if session.get_bind().dialect.name in {"mysql", "mariadb"}:
        later = or_(MediaItem.entity_field > after_field, and_(MediaItem.entity_field == after_field, or_(
            MediaItem.position > position, and_(MediaItem.position == position, MediaItem.id > media_id))))
        bound = [] if field is None else [MediaItem.entity_field <= field]
        return [*bound, later], (MediaItem.entity_field, *gallery)
    if field is None:
        return [tuple_(MediaItem.entity_field, *gallery) > tuple_(after_field, position, media_id)], \
            (MediaItem.entity_field, *gallery)
    return [MediaItem.entity_field == field, tuple_(*gallery) > tuple_(position, media_id)], gallery


def _in_display_order(rows: list[MediaItem]) -> list[MediaItem]:
    return sorted(rows, key=lambda row: (row.position, row.id))


def _renumber(order: list[MediaItem]) -> None:
    """Positions 0, 1, 2... in this order; rows already in their place are not written."""
    for position, row in enumerate(order):
        if row.position != position:
            row.position = position


def _primary_first(order: list[MediaItem]) -> list[MediaItem]:
    """A field's primary is always shown first: `order` with it moved to the front."""
    primary = [row for row in order if row.is_primary]
    return primary + [row for row in order if not row.is_primary]


SWITCH_DONE = "switched"
SWITCH_GONE = "gone"  # the item was deleted
SWITCH_CHANGED = "changed"  # it records another store, or names objects that were not copied


@dataclass(frozen=True)
class SwitchOutcome:
    outcome: str
    item: MediaItem | None
    keys: list[str]  # the item's objects as it names them now


def _require_room(count: int, max_items: int) -> None:
    if count >= max_items:
        raise Conflict(f"this gallery is full: it holds at most {max_items} items", code="gallery_full",
                       limit=max_items)

class MediaRepository:
    """Media items: gallery order, the one primary per entity field, deletes."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, item: MediaItem, max_items: int | None = None) -> MediaItem:
        """Insert `item` at the end of its field, taking over the primary if it claims it (see set_primary).

        With `max_items`, a field already holding that many items (any status) refuses it: 409 `gallery_full`.
        """
        siblings = self.lock_field(item.entity_type, item.entity_id, item.entity_field, item.parent_id)
        if max_items is not None:
            _require_room(len(siblings), max_items)
        if not item.position:
            item.position = max((s.position for s in siblings), default=-1) + 1
        if item.is_primary:
            self._take_primary(item)
            if item.is_primary:
                _renumber([item, *_in_display_order(siblings)])
        item.primary_marker = True if item.is_primary else None
        self.session.add(item)
        self.session.flush()
        return item

    def require_room(self, entity_type: str, entity_id: str, field: str, max_items: int,
                     parent_id: str | None = None) -> None:
        """409 `gallery_full` early, before an upload is read; `add` decides under the field's lock."""
        count = self.session.scalar(
            select(func.count(MediaItem.id)).where(*_in_field(entity_type, entity_id, field, parent_id)))
        _require_room(count or 0, max_items)

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
        parent_id: str | None = None,
        nested_types: tuple[str, ...] = (),
        after: GalleryKey | None = None,
        having: RowFilter | None = None,
    ) -> tuple[list[MediaItem], int]:
        """One page of an entity's media in display order, and the total matching.

        `after`: the page starts after this key (keyset paging: as fast at the millionth item as at
        the first, where an offset reads every row before it); one entity's own items only.

        `statuses_visible` limits the page to those moderation statuses, except
        for items uploaded by `visible_to_uploader` (people see their own uploads).
        `nested_types`: also the items of those kinds nested in this entity (a community's
        amenities), after the entity's own, each entity's items together. `having`: only the rows it keeps
        (a tag filter), each tested row by row within the entity's range.
        """
        own = and_(*_in_entity(entity_type, entity_id, parent_id))
        entity = own
        if nested_types:
            entity = or_(own, and_(MediaItem.entity_type.in_(nested_types), MediaItem.parent_id == entity_id))
        conditions: list[ColumnElement[bool]] = [entity]
        if moderation_status is not None:
            conditions.append(MediaItem.moderation_status == moderation_status)
        if is_primary is not None:
            conditions.append(MediaItem.is_primary.is_(is_primary))
        if having is not None:
            conditions += having.conditions(self.session.get_bind().dialect.name)
        # What the caller sees, as disjoint parts: the visible statuses, and their own uploads of the others.
        parts: list[tuple[ColumnElement[bool], ...]] = [()]
        if statuses_visible is not None:
            shown = sorted(statuses_visible)
            parts = [(MediaItem.moderation_status.in_(shown),)]
            if visible_to_uploader is not None:
                parts.append((MediaItem.uploaded_by == visible_to_uploader, MediaItem.moderation_status.not_in(shown)))
        in_field = [] if field is None else [MediaItem.entity_field == field]
        total = self._count_parts([*conditions, *in_field], parts)
        if statuses_visible is not None:
            conditions.append(or_(*(and_(*part) for part in parts)))
        order: tuple[ColumnElement[Any], ...]
        if nested_types:
            if after is not None:
                raise ValueError("a keyset page reads one entity's own items")  # the service refuses it first
            conditions += in_field
            order = (case((own, 0), else_=1), MediaItem.entity_type, MediaItem.entity_id, MediaItem.entity_field,
                     MediaItem.position, MediaItem.id)
        else:
            # One entity: ix_media_entity's own order, so a page is read from the index, never sorted.
            keyset, order = _gallery_page(self.session, field, after)
            conditions += keyset
        page = select(MediaItem).where(*conditions).order_by(*order).offset(offset).limit(limit)
        return list(self.session.scalars(page)), total

    def _count_parts(self, conditions: list[ColumnElement[bool]],
                     parts: list[tuple[ColumnElement[bool], ...]]) -> int:
        """Rows matching `conditions` and one of the disjoint `parts`, each part counted through its own
        index (an entity's statuses from ix_media_entity alone, a caller's own uploads through
        ix_media_uploaded_by, a status of the queue from ix_media_moderation_queue), where one OR of
        them would read every row of the entity, or of the table."""
        selects = [select(MediaItem.id).where(*conditions, *part) for part in parts]
        counted = (selects[0] if len(selects) == 1 else union_all(*selects)).subquery()
        return self.session.scalar(select(func.count()).select_from(counted)) or 0

    def set_primary(self, item: MediaItem) -> None:
        """Make `item` the only primary of its entity field, or record its claim.

        An item that is not approved never demotes an approved primary: while one
        holds the field, the claim is kept (`claims_primary`) for the item's approval.
        The field's rows are locked first (FOR UPDATE; SQLite has a single
        writer anyway), so concurrent calls run one after the other and the last
        one wins; `uq_media_one_primary` catches anything that slips past.
        """
        rows = self.lock_field(item.entity_type, item.entity_id, item.entity_field, item.parent_id)
        self._take_primary(item)
        item.primary_marker = True if item.is_primary else None
        if item.is_primary:
            _renumber([item, *(row for row in _in_display_order(rows) if row is not item)])
        self.session.flush()

    def clear_primary(self, item: MediaItem) -> None:
        item.is_primary = False
        item.claims_primary = False
        item.primary_marker = None
        self.session.flush()

    def others_in_slot(self, entity_type: str, entity_id: str, field: str, exclude_id: int,
                       parent_id: str | None = None) -> list[MediaItem]:
        """The items a single-slot field (say, an avatar) holds besides `exclude_id`."""
        query = (
            select(MediaItem)
            .where(*_in_field(entity_type, entity_id, field, parent_id), MediaItem.id != exclude_id)
            .order_by(MediaItem.position, MediaItem.id)
        )
        return list(self.session.scalars(query))

    def reorder(self, entity_type: str, entity_id: str, field: str, ids: list[int],
                parent_id: str | None = None, *, partial: bool = False) -> list[MediaItem]:
        """Put the field's items in the order of `ids`, the primary first whatever the order asks;
        the items of `ids` in their new order.

        `ids` names each item of the field exactly once; or, `partial`, some of them (each once), which
        are put in this order in the places they hold together now, the others keeping theirs: a page
        that shows the first items of a long gallery reorders what it shows.
        """
        rows = _in_display_order(self.lock_field(entity_type, entity_id, field, parent_id))
        items = {item.id: item for item in rows}
        named = set(ids)
        if len(named) != len(ids) or not named <= items.keys() or (not partial and named != items.keys()):
            raise Conflict(
                "the new order must list " + ("items of the field, each once" if partial
                                              else "every item of the field exactly once"),
                code="order_mismatch",
                expected=sorted(items),
            )
        places = [index for index, row in enumerate(rows) if row.id in named]
        order = list(rows)
        for index, media_id in zip(places, ids, strict=True):
            order[index] = items[media_id]
        order = _primary_first(order)
        _renumber(order)
        self.session.flush()
        return [row for row in order if row.id in named]

    def delete(self, item: MediaItem) -> list[str]:
        """Remove the row and its reports, and queue its stored objects for deletion, atomically.

        The item is locked first and its variants read again: a rendition stored on request since the
        item was loaded (which takes the same lock) is deleted with it, its object queued like the rest.
        """
        lock_item(self.session, item.id)
        variants = VariantRepository(self.session).for_item(item.id)
        keys = list(dict.fromkeys([item.original_key, *(v.storage_key for v in variants)]))
        self.session.execute(delete(MediaReport).where(MediaReport.media_id == item.id))
        self.session.delete(item)
        self.session.flush()
        still_used = VariantRepository(self.session).used_keys(keys)  # an object is deleted with its last row
        keys = [key for key in keys if key not in still_used]
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
        """(media id, key) for every stored object, once per item, read page by page by id.

        Keyset paging keeps memory flat and stays correct while rows are added.
        """
        last_id = 0
        while True:
            page = self.session.execute(
                select(MediaItem.id, MediaItem.original_key)
                .where(MediaItem.id > last_id)
                .order_by(MediaItem.id)
                .limit(page_size)
            ).all()
            originals = dict(page)
            variant_keys: dict[int, list[str]] = {}
            for media_id, key in VariantRepository(self.session).keys_of(list(originals)):
                variant_keys.setdefault(media_id, []).append(key)
            for media_id, original_key in page:
                yield media_id, original_key
                for key in variant_keys.get(media_id, []):
                    if key != original_key:
                        yield media_id, key
            if len(page) < page_size:
                return
            last_id = page[-1].id

    def count(self, entity: tuple[str, str] | None = None) -> int:
        """Items of entity (type, id), under any parent; None: every item."""
        return self.session.scalar(select(func.count(MediaItem.id)).where(*in_entity_any_parent(entity))) or 0

    def page(self, after_id: int, limit: int, entity: tuple[str, str] | None = None) -> list[MediaItem]:
        """The next `limit` items after `after_id` in id order (keyset paging), of entity (type, id) under
        any parent; None: of every entity."""
        return list(self.session.scalars(
            select(MediaItem).where(MediaItem.id > after_id, *in_entity_any_parent(entity))
            .order_by(MediaItem.id).limit(limit)
        ))

    def get_by_original_key(self, key: str) -> MediaItem | None:
        """The item whose original is stored under `key` (indexed)."""
        return self.session.scalars(select(MediaItem).where(MediaItem.original_key == key).limit(1)).first()

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

    def moderation_queue(self, offset: int = 0, limit: int = 50,
                         score_path: tuple[str, ...] | None = None) -> tuple[list[MediaItem], int]:
        """One page of the items awaiting a moderator (pending, flagged, or with open reports),
        oldest first (or highest score first: the number at `score_path` in the item's metadata, none
        counting as 0), and the total.

        Each source of the queue (a status; the reported items of the other statuses) is read in
        ix_media_moderation_queue's order up to the page's end, and the page is cut from their merge:
        one condition joining them with OR could only be answered by reading the whole table. By score,
        each source is read whole (no index holds a metadata value): the queue's rows, not the table's.
        """
        reported = select(MediaReport.media_id).where(MediaReport.open_marker.is_not(None))
        sources = [(MediaItem.moderation_status == status,) for status in MODERATION_QUEUE_STATUSES]
        sources.append((MediaItem.id.in_(reported), MediaItem.moderation_status.not_in(MODERATION_QUEUE_STATUSES)))
        total = self._count_parts([], sources)
        score = (func.coalesce(MediaItem.meta[score_path].as_float(), 0.0) if score_path
                 else literal(0.0)).label("score")
        heads = [select(MediaItem.id, MediaItem.created_at, score).where(*source)
                 .order_by(score.desc(), MediaItem.created_at, MediaItem.id).limit(offset + limit).subquery()
                 for source in sources]
        waiting = union_all(*(select(head.c.id, head.c.created_at, head.c.score) for head in heads)).subquery()
        page = (select(MediaItem).join(waiting, waiting.c.id == MediaItem.id)
                .order_by(waiting.c.score.desc(), waiting.c.created_at, waiting.c.id).offset(offset).limit(limit))
        return list(self.session.scalars(page)), total

    def switch_store(self, media_id: int, source: tuple[str, str | None], target: tuple[str, str | None],
                     copied: Iterable[str], digests: dict[str, str]) -> SwitchOutcome:
        """Point the item at the store `target` (storage_type, bucket_name), whose copies of the keys `copied`
        are verified, if it still records `source` and names no other object; the missing digests of its
        original and variants are recorded from `digests` (key -> SHA-256).

        The item is locked first, so a delete, a moderation decision or a job's new variants (which
        take the same lock) come wholly before or after. One statement of the caller's transaction.
        """
        lock_item(self.session, media_id)
        item = self.session.get(MediaItem, media_id, populate_existing=True)
        if item is None:
            return SwitchOutcome(SWITCH_GONE, None, [])
        variants = VariantRepository(self.session).for_item(media_id)
        keys = list(dict.fromkeys([item.original_key, *(v.storage_key for v in variants)]))
        if (item.storage_type, item.bucket_name) != source or set(keys) - set(copied):
            return SwitchOutcome(SWITCH_CHANGED, item, keys)
        item.storage_type, item.bucket_name = target
        if item.stored_sha256 is None:
            item.stored_sha256 = digests.get(item.original_key)
        for variant in variants:
            if variant.content_hash is None:
                variant.content_hash = digests.get(variant.storage_key)
        self.session.flush()
        return SwitchOutcome(SWITCH_DONE, item, keys)

    def mark_missing(self, media_id: int, keys: Iterable[str]) -> bool:
        """Mark the item `failed`, with the keys of its objects the store has lost; False when it is gone."""
        item = self.get(media_id)
        if item is None:
            return False
        meta = item.meta or {}
        item.processing_status = "failed"
        item.meta = {**meta, "missing_keys": sorted({*meta.get("missing_keys", []), *keys})}
        return True

    def lock(self, media_id: int) -> MediaItem | None:
        """The row as it is now, locked with its field's rows until the transaction ends; None when gone.

        Every writer of a field locks its rows the same way (by id), so a decision, an
        upload replacing items and a primary change wait for each other instead of
        deadlocking or updating a row another one just deleted.
        """
        item = self.get(media_id)
        if item is None:
            return None
        rows = self.lock_field(item.entity_type, item.entity_id, item.entity_field, item.parent_id)
        return next((row for row in rows if row.id == media_id), None)

    def lock_field(self, entity_type: str, entity_id: str, field: str, parent_id: str | None) -> list[MediaItem]:
        """Lock and return the field's rows.

        SQLite ignores FOR UPDATE and reads outside a transaction until the first write:
        a write matching no row takes its single write lock first, so the rows read are
        the latest and stay so. populate_existing: objects already in the session take the
        locked (latest) values.
        """
        if self.session.get_bind().dialect.name == "sqlite":
            self.session.execute(update(MediaItem).where(MediaItem.id.is_(None)).values(position=MediaItem.position))
        query = (
            select(MediaItem)
            .where(*_in_field(entity_type, entity_id, field, parent_id))
            .order_by(MediaItem.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return list(self.session.scalars(query))

    def _take_primary(self, item: MediaItem) -> None:
        """The primary for `item` unless it is unapproved and an approved (or flagged) item holds it: then its claim."""
        approved = item.moderation_status == "approved"
        others = self._others_in_field(item)
        holder = select(MediaItem.id).where(*others, MediaItem.is_primary.is_(True),
                                            MediaItem.moderation_status.in_(GUARDED_STATUSES))
        if not approved and self.session.scalars(holder.limit(1)).first() is not None:
            item.is_primary, item.claims_primary = False, True
            return
        self._clear_other_primaries(item, keep_guarded=not approved)
        item.is_primary, item.claims_primary = True, False

    def _others_in_field(self, item: MediaItem) -> list[ColumnElement[bool]]:
        conditions = [*_in_field(item.entity_type, item.entity_id, item.entity_field, item.parent_id)]
        if item.id is not None:
            conditions.append(MediaItem.id != item.id)
        return conditions

    def _clear_other_primaries(self, item: MediaItem, keep_guarded: bool) -> None:
        # A bulk UPDATE decided by the database, not by rows read earlier, so it
        # also clears a primary committed by another transaction since then; with
        # `keep_guarded` an approved or flagged primary committed since stays (the unique constraint refuses the race).
        conditions = self._others_in_field(item)
        if keep_guarded:
            conditions.append(MediaItem.moderation_status.not_in(GUARDED_STATUSES))
        self.session.execute(
            update(MediaItem)
            .where(*conditions, or_(MediaItem.is_primary.is_(True), MediaItem.primary_marker.is_not(None)))
            .values(is_primary=False, primary_marker=None)
        )
