"""Which variant objects to store, and swapping a job's variants into an item.

A small picture gives several sizes the same pixels (a 480x360 photo has no distinct
`medium` and `large`): such a variant is not stored again, its row names the object of
the next larger variant of its format, or the original itself when that is stored in
the same format at the same size and is not larger than the re-encode. Objects are
therefore shared between rows of one item; one is deleted only with the last row (or
original) that names it (`VariantRepository.replace`, `MediaRepository.delete`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mediahub.db.models import MediaItem, MediaVariant, PendingDelete
from mediahub.db.repositories import MediaRepository, VariantRepository, VariantRow
from mediahub.db.repositories.media import lock_item
from mediahub.db.session import Database
from mediahub.media import exposure
from mediahub.pipeline.formats import CONTENT_TYPES
from mediahub.pipeline.variants import Encoded
from mediahub.storage.base import Storage

FORMAT_OF_CONTENT_TYPE = {content_type: fmt for fmt, content_type in CONTENT_TYPES.items()}


@dataclass(frozen=True)
class StoredOriginal:
    """What variants compare with: the original's key, image format (None: not an image), size and bytes."""

    key: str
    format: str | None
    width: int | None
    height: int | None
    byte_size: int

    @classmethod
    def of_item(cls, item: MediaItem) -> StoredOriginal:
        fmt = FORMAT_OF_CONTENT_TYPE.get(item.content_type) if item.media_type == "image" else None
        return cls(item.original_key, fmt, item.width, item.height, item.byte_size)


@dataclass(frozen=True)
class PlannedVariant:
    row: VariantRow
    source: bytes | Path | None  # what to store under row.storage_key; None: an existing object

    @property
    def stored(self) -> bool:
        return self.source is not None


@dataclass(frozen=True)
class _Object:
    key: str
    size: tuple[int | None, int | None]
    byte_size: int
    original: bool = False  # shared only when not larger than the re-encode


def plan_variants(encoded: list[Encoded], key_for: Callable[[Encoded], str],
                  original: StoredOriginal | None) -> list[PlannedVariant]:
    """The variant rows of `encoded` (in its order) and the objects to store for them."""
    larger: dict[str, _Object] = {}  # per format: the object of the next larger variant (or the original)
    if original is not None and original.format is not None:
        larger[original.format] = _Object(original.key, (original.width, original.height), original.byte_size,
                                          original=True)
    planned: dict[int, PlannedVariant] = {}
    by_area = sorted(range(len(encoded)), key=lambda i: encoded[i].width * encoded[i].height, reverse=True)
    for index in by_area:
        variant = encoded[index]
        size = (variant.width, variant.height)
        existing = larger.get(variant.format)
        if existing is not None and existing.size == size and not (
                existing.original and existing.byte_size > len(variant.data)):
            key, byte_size, source = existing.key, existing.byte_size, None
        else:
            key, byte_size, source = key_for(variant), len(variant.data), variant.data
        larger[variant.format] = _Object(key, size, byte_size)
        row = VariantRow(variant.name, variant.format, key, variant.width, variant.height, byte_size,
                         variant.content_type)
        planned[index] = PlannedVariant(row, source)
    return [planned[index] for index in range(len(encoded))]


def publish(database: Database, storage: Storage, media_id: int, rows: list[VariantRow],
            keep: Callable[[MediaVariant], bool]) -> bool:
    """Put `rows` in place of the item's variants `keep` rejects (and of those of the same name and
    format), queueing objects no row uses any more for deletion. False: the item is gone.

    The objects must be stored already. The item is locked first, so concurrent jobs of one
    item (WebP and the web MP4) apply one after the other, and a moderation decision (which
    takes the same lock) sees the new objects or none: they are made public here only if the
    item is approved at this moment.
    """
    pairs = {(row.name, row.format) for row in rows}
    with database.session() as session:
        lock_item(session, media_id)
        item = MediaRepository(session).get(media_id)
        if item is None:
            return False
        variants = VariantRepository(session)
        replaced = [v.id for v in variants.for_item(media_id) if not keep(v) or (v.name, v.format) in pairs]
        unused = variants.replace(media_id, replaced, rows)
        session.add_all(PendingDelete(storage_key=key) for key in unused)
        if exposure.is_public(item):
            storage.set_public(list(dict.fromkeys(row.storage_key for row in rows)), True)
    return True
