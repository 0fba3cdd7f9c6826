"""Which variant objects to store, and swapping a job's variants into an item.

A small picture gives several sizes the same pixels (a 480x360 photo has no distinct
`medium` and `large`), and a re-encode of a small, well-compressed original may be no
smaller than it: such a variant is not stored, its row names the object of the next
larger variant of its format, or the original itself when that is stored in the same
format (`plan_variants` has the rule). Objects are therefore shared between rows of one
item; one is deleted only with the last row (or original) that names it
(`VariantRepository.replace`, `MediaRepository.delete`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem, MediaVariant, PendingDelete
from mediahub.db.repositories import MediaRepository, VariantRepository, VariantRow
from mediahub.db.repositories.media import lock_item
from mediahub.db.session import Database
from mediahub.errors import Busy
from mediahub.formats import FORMAT_OF_CONTENT_TYPE
from mediahub.media import exposure
from mediahub.media.cdn import REPLACE, CdnPurge
from mediahub.pipeline.image import ORIENTED, RAW
from mediahub.pipeline.variants import Encoded
from mediahub.storage.base import Storage


@dataclass(frozen=True)
class StoredOriginal:
    """What variants compare with: the original's key, image format (None: not an image), size and bytes;
    and its digest, which a variant naming it records (None: not known)."""

    key: str
    format: str | None
    width: int | None
    height: int | None
    byte_size: int
    sha256: str | None = None

    @classmethod
    def of_item(cls, item: MediaItem) -> StoredOriginal:
        fmt = FORMAT_OF_CONTENT_TYPE.get(item.content_type) if item.media_type == "image" else None
        return cls.of(item.original_key, fmt, item.width, item.height, item.byte_size, item.meta or {},
                      item.stored_sha256)

    @classmethod
    def of(cls, key: str, fmt: str | None, width: int | None, height: int | None, byte_size: int,
           metadata: dict, sha256: str | None) -> StoredOriginal:
        # An original kept with its orientation tag stores its pixels turned, a raw one is never served:
    # no variant may name either.
        comparable = None if metadata.get("original") in (ORIENTED, RAW) else fmt
        return cls(key, comparable, width, height, byte_size, sha256)


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
    width: int
    height: int
    byte_size: int
    original: bool = False
    content_hash: str | None = None  # of the object (the original's: as recorded, when it is)


def plan_variants(encoded: list[Encoded], key_for: Callable[[Encoded], str],
                  original: StoredOriginal | None) -> list[PlannedVariant]:
    """The variant rows of `encoded` (in its order) and the objects to store for them.

    Largest first, each variant is compared with the object of the next larger one of its
    format and watermark (at first the original, when stored in that format: unmarked variants
    only). A whole-picture variant names that object instead of being stored when it is not
    smaller in bytes, or when it has the same size and the object is a re-encode (the original
    at the same size only when not larger). A crop shows other pixels than a larger whole
    picture: it names an object only of its own size, and never becomes the object a smaller
    variant is compared with. A row carries the size and bytes of the object it names.
    """
    # Per format and watermark: the whole-picture object of the next larger variant. A watermarked variant
    # shows other pixels than an unmarked one (and the original, which is never marked) of any size.
    larger: dict[tuple[str, bool], _Object] = {}
    if original is not None and original.format is not None and original.width and original.height:
        larger[original.format, False] = _Object(original.key, original.width, original.height,
                                                 original.byte_size, original=True, content_hash=original.sha256)
    planned: dict[int, PlannedVariant] = {}
    by_area = sorted(range(len(encoded)), key=lambda i: encoded[i].width * encoded[i].height, reverse=True)
    for index in by_area:
        variant = encoded[index]
        existing = larger.get((variant.format, variant.watermarked))
        if existing is not None and _shares(variant, existing):
            target, source = existing, None
        else:
            target = _Object(key_for(variant), variant.width, variant.height, len(variant.data),
                             content_hash=hashlib.sha256(variant.data).hexdigest())
            source = variant.data
        if not variant.crop:  # a variant's object now, even the original's: equal sizes share it
            larger[variant.format, variant.watermarked] = replace(target, original=False)
        row = VariantRow(variant.name, variant.format, target.key, target.width, target.height, target.byte_size,
                         variant.content_type, content_hash=target.content_hash)
        planned[index] = PlannedVariant(row, source)
    return [planned[index] for index in range(len(encoded))]


def _shares(variant: Encoded, existing: _Object) -> bool:
    """Whether `variant` names `existing` (the next larger whole-picture object of its format)."""
    same_size = (existing.width, existing.height) == (variant.width, variant.height)
    if variant.crop and not same_size:
        return False
    not_smaller = existing.byte_size <= len(variant.data)
    return not_smaller or (same_size and not existing.original)


@dataclass(frozen=True)
class ReplacementOriginal:
    """The re-encode of a raw original, stored already, to take its place."""

    key: str
    content_type: str
    byte_size: int
    mode: str  # the metadata's "original"
    sha256: str  # of its bytes


def publish(database: Database, storage: Storage, media_id: int, rows: list[VariantRow],
            keep: Callable[[MediaVariant], bool], original: ReplacementOriginal | None = None,
            metadata: dict[str, Any] | None = None, found: dict[str, Any] | None = None, *,
            cdn: CdnPurge, stored_in: tuple[str, str | None],
            follow_up: Callable[[Session, MediaItem], list[int]] | None = None) -> list[int] | None:
    """Put `rows` in place of the item's variants `keep` rejects (and of those of the same name and
    format), queueing objects no row uses any more for deletion, and the CDN purges of an approved
    item whose variants or original this replaces. The purge jobs' ids, to dispatch after this
    commit; None: the item is gone.

    The objects must be stored already. The item is locked first, so concurrent jobs of one
    item (WebP and the web MP4) apply one after the other, and a moderation decision (which
    takes the same lock) sees the new objects or none: they are made public here only if the
    item is approved at this moment. `original` takes the place of a raw original in the same
    transaction (the raw object is queued for deletion), so the item never names a missing one.
    `metadata` is set in the item's (a None value removes its key) in the same transaction; `found`:
    metadata the job found (the focal point of an item that had none), recorded where the item has no
    value of its own by now. `follow_up` queues the jobs that need these variants, in the same transaction.
    """
    pairs = {(row.name, row.format) for row in rows}
    with database.session() as session:
        lock_item(session, media_id)
        item = MediaRepository(session).get(media_id)
        if item is None:
            return None
        if item.store != stored_in:
            raise Busy(f"item #{media_id} moved to another store while its renditions were made", code="item_moved")
        variants = VariantRepository(session)
        replaced = [v.id for v in variants.for_item(media_id) if not keep(v) or (v.name, v.format) in pairs]
        new_original = original if exposure.original_is_raw(item) else None
        purges = cdn.queue(session, item, REPLACE) if replaced or new_original else []
        unused = variants.replace(media_id, replaced, rows)
        session.add_all(PendingDelete(storage_key=key) for key in unused)
        readable = [row.storage_key for row in rows]
        if new_original is not None:
            session.add(PendingDelete(storage_key=item.original_key))
            item.original_key, item.content_type, item.byte_size = (new_original.key, new_original.content_type,
                                                                     new_original.byte_size)
            item.stored_sha256 = new_original.sha256
            item.meta = {**(item.meta or {}), "original": new_original.mode}
            readable.append(new_original.key)
        if metadata:
            merged = {**(item.meta or {}), **metadata}
            item.meta = {key: value for key, value in merged.items() if value is not None or key not in metadata}
        if found and found.keys() - (item.meta or {}).keys():
            item.meta = {**found, **(item.meta or {})}
        if exposure.is_public(item):
            storage.set_public(list(dict.fromkeys(readable)), True)
        if follow_up is not None:
            purges += follow_up(session, item)
    return purges
