"""Plain-dict views of media rows, for the CLI and logs (the API has its own schemas)."""

from __future__ import annotations

from typing import Any

from mediahub.db.models import MediaItem


def item_record(item: MediaItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "public_id": item.public_id,
        "entity_type": item.entity_type,
        "entity_id": item.entity_id,
        "parent_id": item.parent_id or None,
        "entity_field": item.entity_field,
        "media_type": item.media_type,
        "content_type": item.content_type,
        "byte_size": item.byte_size,
        "width": item.width,
        "height": item.height,
        "duration": item.duration,
        "original_key": item.original_key,
        "variants": {f"{v.name}.{v.format}": v.storage_key for v in item.presets},
        "sha256": item.sha256,
        "md5": item.md5,
        "image_hash": item.image_hash,
        "is_primary": item.is_primary,
        "moderation_status": item.moderation_status,
        "processing_status": item.processing_status,
        "storage_type": item.storage_type,
        "metadata": item.meta,
    }
