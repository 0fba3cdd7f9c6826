"""Key layout: where an item's objects live in the store.

The store picks keys, never the client: `{plural}/{folder}/{entity_id}/{YYYY-MM}/
{field}-{YYYYmmddHHMMSS}-{random6}.{ext}` (for a nested kind, `{parent_id}/{entity_id}`
in place of `{entity_id}`), variants beside the original with a `_{variant}` suffix.
Keys are never reused, so stored objects are immutable.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from mediahub.entities import Target
from mediahub.formats import EXTENSIONS
from mediahub.pipeline.original import EncodedOriginal
from mediahub.storage.keys import check_key


def original_key(target: Target, ext: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    token = secrets.token_hex(3)
    entity = target.entity_id if target.parent_id is None else f"{target.parent_id}/{target.entity_id}"
    key = (
        f"{target.kind.plural}/{target.field.folder}/{entity}/{now:%Y-%m}/"
        f"{target.field.name}-{now:%Y%m%d%H%M%S}-{token}.{ext}"
    )
    return check_key(key)


RAW_EXTENSION = "upload"  # an upload kept as sent until its re-encode replaces it (never served)


def stored_original_key(target: Target, original: EncodedOriginal) -> str:
    return original_key(target, RAW_EXTENSION if original.raw else EXTENSIONS[original.format])


def replacement_key(raw: str, ext: str) -> str:
    """Where the re-encode of a raw original goes: beside it, fixed by its key (a re-run finds its own object)."""
    return check_key(f"{raw.rsplit('.', 1)[0]}.{ext}")


def variant_key(original: str, variant: str, ext: str) -> str:
    stem = original.rsplit(".", 1)[0]
    return check_key(f"{stem}_{variant}.{ext}")


INCOMING_PREFIX = "incoming/"  # uploads whose bytes are still arriving (storage/staging.py); never served


def incoming_key(transport: str, upload_id: str) -> str:
    """Where an upload's bytes are staged until its ingest: beside the media, under a prefix of their own."""
    return check_key(f"{INCOMING_PREFIX}{transport}/{upload_id}")
