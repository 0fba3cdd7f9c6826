"""An item's variants: one row per rendition (size and format) and the object key that holds it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from mediahub.db.models import PRESET, MediaItem, MediaVariant, utcnow


@dataclass(frozen=True)
class VariantRow:
    """The values of a variant to insert."""

    name: str
    format: str
    storage_key: str
    width: int
    height: int
    byte_size: int
    content_type: str
    kind: str = PRESET
    content_hash: str | None = None  # SHA-256 of the bytes, when the writer had them

    def model(self) -> MediaVariant:
        """As a model, for an item inserted with its variants (ingest)."""
        return MediaVariant(name=self.name, format=self.format, storage_key=self.storage_key, width=self.width,
                            height=self.height, byte_size=self.byte_size, content_type=self.content_type,
                            kind=self.kind, content_hash=self.content_hash)


@dataclass(frozen=True)
class Rendition(VariantRow):
    """A stored rendition as delivery reads it: its values and when it was made."""

    created_at: datetime | None = None


@dataclass(frozen=True)
class DeliveryItem:
    """What delivery reads of an item, with its renditions of some names (not every row of a busy item)."""

    id: int
    public_id: str
    moderation_status: str
    media_type: str
    content_type: str
    original_key: str
    width: int | None
    height: int | None
    entity_type: str
    entity_field: str
    meta: dict[str, Any]
    storage_type: str  # the store its row records its objects are in
    bucket_name: str | None
    has_png_presets: bool  # its presets keep alpha
    renditions: tuple[Rendition, ...]

    @property
    def store(self) -> tuple[str, str | None]:
        return self.storage_type, self.bucket_name


_ITEM_COLUMNS = (MediaItem.id, MediaItem.public_id, MediaItem.moderation_status, MediaItem.media_type,
                 MediaItem.content_type, MediaItem.original_key, MediaItem.width, MediaItem.height,
                 MediaItem.entity_type, MediaItem.entity_field, MediaItem.meta, MediaItem.storage_type,
                 MediaItem.bucket_name)
_RENDITION_COLUMNS = (MediaVariant.name, MediaVariant.format, MediaVariant.storage_key, MediaVariant.width,
                      MediaVariant.height, MediaVariant.byte_size, MediaVariant.content_type, MediaVariant.kind,
                      MediaVariant.content_hash, MediaVariant.created_at)

_PNG_PRESETS = aliased(MediaVariant)
# Built once: a statement built per call (its alias above is new each time) would be compiled per call.
_DELIVERY_QUERY = (
    select(*_ITEM_COLUMNS,
           exists().where(_PNG_PRESETS.media_id == MediaItem.id, _PNG_PRESETS.kind == PRESET,
                          _PNG_PRESETS.format == "png").correlate(MediaItem).label("png_presets"),
           *_RENDITION_COLUMNS)
    .select_from(MediaItem)
    .outerjoin(MediaVariant, and_(MediaVariant.media_id == MediaItem.id,
                                  MediaVariant.name.in_(bindparam("names", expanding=True))))
    .where(MediaItem.public_id == bindparam("public_id"))
)

_RENDITION_QUERY = select(*_RENDITION_COLUMNS).where(
    MediaVariant.media_id == bindparam("media_id"), MediaVariant.name == bindparam("name"),
    MediaVariant.format == bindparam("format"))


class VariantRepository:
    """Variant rows; several rows of an item may name one object (see MediaVariant)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def find_by_key(self, storage_key: str) -> tuple[MediaItem, str] | None:
        """The item a variant object belongs to, and the object's content type (one indexed lookup)."""
        found = self.session.execute(
            select(MediaItem, MediaVariant.content_type)
            .join(MediaVariant, MediaVariant.media_id == MediaItem.id)
            .where(MediaVariant.storage_key == storage_key)
            .limit(1)
        ).first()
        return None if found is None else (found[0], found[1])

    def for_delivery(self, public_id: str, names: Iterable[str]) -> DeliveryItem | None:
        """The item `public_id` with its renditions named `names`, in one indexed query."""
        rows = self.session.execute(_DELIVERY_QUERY, {"public_id": public_id, "names": sorted(names)}).all()
        if not rows:
            return None
        first = rows[0]
        width = len(_ITEM_COLUMNS) + 1
        renditions = tuple(Rendition(*row[width:]) for row in rows if row[width] is not None)
        return DeliveryItem(*first[:width - 1], bool(first[width - 1]), renditions)

    def rendition(self, media_id: int, name: str, fmt: str) -> Rendition | None:
        """The item's rendition `name` in `fmt`, of any kind, as delivery reads it (one indexed lookup)."""
        row = self.session.execute(_RENDITION_QUERY, {"media_id": media_id, "name": name, "format": fmt}).first()
        return None if row is None else Rendition(*row)

    def count_kind(self, media_id: int, kind: str) -> int:
        return self.session.scalar(select(func.count()).select_from(MediaVariant).where(
            MediaVariant.media_id == media_id, MediaVariant.kind == kind)) or 0

    def for_item(self, media_id: int) -> list[MediaVariant]:
        """The item's variants as stored now, in insertion order."""
        return list(self.session.scalars(
            select(MediaVariant).where(MediaVariant.media_id == media_id).order_by(MediaVariant.id)
            .execution_options(populate_existing=True)
        ))

    def replace(self, media_id: int, remove_ids: Iterable[int], rows: list[VariantRow]) -> list[str]:
        """Delete the rows `remove_ids` of the item, insert `rows`, and return the keys of the deleted
        rows that no row (of any item) and no original names any more: the objects to delete.

        The caller holds the item's lock (`media.lock_item`), so concurrent writers of one item
        apply one after the other.
        """
        remove_ids = list(remove_ids)
        removed_keys: set[str] = set()
        if remove_ids:
            removed_keys = set(self.session.scalars(
                select(MediaVariant.storage_key).where(MediaVariant.media_id == media_id,
                                                       MediaVariant.id.in_(remove_ids))))
            self.session.execute(delete(MediaVariant).where(MediaVariant.media_id == media_id,
                                                            MediaVariant.id.in_(remove_ids)))
        if rows:
            now = utcnow()
            self.session.execute(insert(MediaVariant), [
                {"media_id": media_id, "name": r.name, "format": r.format, "storage_key": r.storage_key,
                 "width": r.width, "height": r.height, "byte_size": r.byte_size, "content_type": r.content_type,
                 "kind": r.kind, "content_hash": r.content_hash, "created_at": now}
                for r in rows
            ])
        return sorted(removed_keys - self.used_keys(removed_keys))

    def add_once(self, media_id: int, row: VariantRow) -> bool:
        """Insert `row` unless the item has a rendition of its name and format already (inserted by someone
        else meanwhile): whether it was inserted."""
        variant = row.model()
        variant.media_id = media_id
        try:
            with self.session.begin_nested():
                self.session.add(variant)
        except IntegrityError:
            return False
        return True

    def remove_kind(self, media_id: int, kind: str) -> list[str]:
        """Delete the item's rows of `kind` (say, its stored transform results); the keys of those rows that
        nothing names any more, as `replace` returns them. The caller holds the item's lock."""
        ids = self.session.scalars(select(MediaVariant.id).where(MediaVariant.media_id == media_id,
                                                                 MediaVariant.kind == kind))
        return self.replace(media_id, list(ids), [])

    def used_keys(self, keys: Iterable[str]) -> set[str]:
        """Those of `keys` a variant row or an item's original still names."""
        keys = sorted(set(keys))
        if not keys:
            return set()
        return set(self.session.scalars(union(
            select(MediaVariant.storage_key).where(MediaVariant.storage_key.in_(keys)),
            select(MediaItem.original_key).where(MediaItem.original_key.in_(keys)),
        )))

    def keys_of(self, media_ids: list[int]) -> Iterator[tuple[int, str]]:
        """(media id, key) of each distinct variant object of the items, by item then row order."""
        seen: set[tuple[int, str]] = set()
        query = (select(MediaVariant.media_id, MediaVariant.storage_key)
                 .where(MediaVariant.media_id.in_(media_ids)).order_by(MediaVariant.media_id, MediaVariant.id))
        for media_id, key in self.session.execute(query):
            if (media_id, key) not in seen:
                seen.add((media_id, key))
                yield media_id, key
