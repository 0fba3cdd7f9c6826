"""Media rows as API answers: URLs for the caller, private metadata only for its owners."""

from __future__ import annotations

from typing import Any

from mediahub.api.schemas import MediaOut, VariantOut
from mediahub.db.models import MediaItem
from mediahub.services.media import MediaView
from mediahub.services.urls import MediaUrls

PRIVATE_METADATA = ("gps",)


def _metadata(item: MediaItem, private: bool) -> dict[str, Any]:
    meta = dict(item.meta or {})
    if not private:
        for name in PRIVATE_METADATA:
            meta.pop(name, None)
    return meta


def _variants(item: MediaItem, urls: MediaUrls) -> dict[str, dict[str, VariantOut]]:
    variants: dict[str, dict[str, VariantOut]] = {}
    for variant in item.variants or []:
        variants.setdefault(variant["name"], {})[variant["format"]] = VariantOut(
            url=urls.url(item, variant["key"]),
            width=variant["width"],
            height=variant["height"],
            size=variant["size"],
            content_type=variant["content_type"],
        )
    return variants


def media_out(view: MediaView, urls: MediaUrls) -> MediaOut:
    item = view.item
    return MediaOut(
        id=item.id,
        public_id=item.public_id,
        entity_type=item.entity_type,
        entity_id=item.entity_id,
        entity_field=item.entity_field,
        media_type=item.media_type,
        content_type=item.content_type,
        byte_size=item.byte_size,
        width=item.width,
        height=item.height,
        duration=item.duration,
        url=urls.url(item, item.original_key),
        variants=_variants(item, urls),
        image_hash=item.image_hash,
        storage_type=item.storage_type,
        bucket_name=item.bucket_name,
        is_primary=item.is_primary,
        position=item.position,
        tags=list(item.tags or []),
        metadata=_metadata(item, view.private),
        caption=item.caption,
        alt_text=item.alt_text,
        moderation_status=item.moderation_status,
        moderation_reason=item.moderation_reason,
        processing_status=item.processing_status,
        uploaded_by=item.uploaded_by,
        created_at=item.created_at,
        updated_at=item.updated_at,
        parent_id=item.parent_id or None,
    )
