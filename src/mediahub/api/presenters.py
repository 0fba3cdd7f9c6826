"""Media rows as API answers: URLs for the caller, private details only for those the view allows."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from mediahub.api.errors import public_detail
from mediahub.api.schemas import (
    AuditEventOut,
    BatchDeleteResult,
    BatchFileError,
    ChecksOut,
    DuplicateGroupOut,
    DuplicateMemberOut,
    DuplicateResolveOut,
    ItemReportOut,
    MachineTagOut,
    MediaDetailOut,
    MediaOut,
    ModerationQueueItem,
    PlaceholdersOut,
    ReportHistoryOut,
    ReportOut,
    VariantOut,
)
from mediahub.db.models import REJECTED, AuditEvent, MediaItem, MediaTag
from mediahub.db.repositories.job_queue import PENDING
from mediahub.media.duplicates import Group, Resolved
from mediahub.media.exposure import original_is_raw
from mediahub.media.manage import ItemDetail, MediaView
from mediahub.media.moderation import CHECKS, QueueEntry, ReportHistory
from mediahub.media.responsive import responsive
from mediahub.media.urls import MediaUrls
from mediahub.pipeline.focal import FOCAL_POINT
from mediahub.pipeline.placeholders import PLACEHOLDERS

# What anyone who may see an item sees of its metadata: how it was stored, never who, where or when.
# A key not named here (filename, exif camera and time, face boxes, anything added later) is private by default.
PUBLIC_METADATA = frozenset({
    "source_format", "source_mode", "frames", "animated", "stored_width", "stored_height", "orientation",
    "original", "gps_stripped", "container", "video_codec", "audio_codecs", "frame_rate", "rotation",
    "location_stripped",
})
LOCATION_METADATA = frozenset({"gps"})  # the uploader's and the owners' only


def _metadata(view: MediaView) -> dict[str, Any]:
    meta = dict(view.item.meta or {})
    return {name: value for name, value in meta.items()
            # Shown as fields of their own; the checks' scores only to moderators, in their queue.
            if name not in (PENDING, PLACEHOLDERS, FOCAL_POINT, CHECKS)
            and (name in PUBLIC_METADATA or (view.location if name in LOCATION_METADATA else view.private))}


def _variants(item: MediaItem, url_of: Callable[[str], str]) -> dict[str, dict[str, VariantOut]]:
    variants: dict[str, dict[str, VariantOut]] = {}
    for variant in item.presets:
        variants.setdefault(variant.name, {})[variant.format] = VariantOut(
            url=url_of(variant.storage_key),
            width=variant.width,
            height=variant.height,
            size=variant.byte_size,
            content_type=variant.content_type,
        )
    return variants


def media_out(view: MediaView, urls: MediaUrls) -> MediaOut:
    item = view.item
    url_of = functools.cache(functools.partial(urls.url, item))  # an object's URL once: a signed one expires
    placeholders = (item.meta or {}).get(PLACEHOLDERS)
    images = responsive(item, urls, url_of)
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
        url=None if original_is_raw(item) else url_of(item.original_key),
        variants=_variants(item, url_of),
        image_hash=item.image_hash,
        placeholders=PlaceholdersOut(**placeholders) if placeholders else None,
        srcset=images.srcset if images else None,
        widths=images.widths if images else None,
        storage_type=item.storage_type,
        bucket_name=item.bucket_name,
        is_primary=item.is_primary,
        position=item.position,
        tags=list(item.tags or []),
        metadata=_metadata(view),
        caption=item.caption,
        alt_text=item.alt_text,
        moderation_status=item.moderation_status,
        moderation_reason=item.moderation_reason,
        processing_status=item.processing_status,
        pending=list((item.meta or {}).get(PENDING, [])),
        uploaded_by=item.uploaded_by if view.private else None,
        created_at=item.created_at,
        updated_at=item.updated_at,
        parent_id=item.parent_id or None,
        focal_point=(item.meta or {}).get(FOCAL_POINT),
        machine_tags=machine_tags_out(view.machine_tags, view.private),
    )


def machine_tags_out(tags: Iterable[MediaTag], private: bool) -> list[MachineTagOut]:
    """An item's tags. Those who may see its private details see every row and who decided it; others see what
    stands (suggested and accepted), not what a moderator rejected as wrong."""
    return [MachineTagOut(id=tag.id, label=tag.label, kind=tag.kind, score=tag.score, source=tag.source,
                          model=tag.model or None, state=tag.state, decided_by=tag.decided_by if private else None,
                          decided_at=tag.decided_at) for tag in tags if private or tag.state != REJECTED]


def duplicate_group_out(group: Group, urls: MediaUrls) -> DuplicateGroupOut:
    return DuplicateGroupOut(key=str(group.key), kind=group.key.kind, keep=group.keep, size=group.size, items=[
        DuplicateMemberOut(distance=member.distance, can_delete=member.can_delete, item=media_out(member.view, urls))
        for member in group.members])


def resolved_out(resolved: Resolved) -> DuplicateResolveOut:
    return DuplicateResolveOut(group=str(resolved.key), kept=resolved.kept, results=[
        BatchDeleteResult(id=outcome.id, ok=outcome.error is None, error=None if outcome.error is None else
                          BatchFileError(code=outcome.error.code, message=public_detail(outcome.error)))
        for outcome in resolved.outcomes])


def queue_item_out(entry: QueueEntry, urls: MediaUrls) -> ModerationQueueItem:
    """A moderation queue entry: the item as moderators see it (never its GPS), and its open reports."""
    return ModerationQueueItem(
        **media_out(MediaView(entry.item, private=True), urls).model_dump(),
        open_reports=entry.open_reports,
        reports=[ReportOut(reporter=r.reporter, reason=r.reason, created_at=r.created_at) for r in entry.reports],
        checks=ChecksOut.model_validate(checks) if (checks := (entry.item.meta or {}).get(CHECKS)) else None,
    )


def report_history_out(history: ReportHistory) -> ReportHistoryOut:
    return ReportHistoryOut(total=history.total, items=[
        ItemReportOut(reporter=r.reporter, reason=r.reason, created_at=r.created_at, resolution=r.resolution,
                      closed_at=r.closed_at)
        for r in history.reports
    ])


def audit_event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(id=event.id, occurred_at=event.occurred_at, actor=event.actor, actor_role=event.actor_role,
                         action=event.action, media_id=event.media_id, media_public_id=event.media_public_id,
                         entity_type=event.entity_type, entity_id=event.entity_id, parent_id=event.parent_id or None,
                         reason=event.reason, before=event.before, after=event.after, request_id=event.request_id)


def media_detail_out(detail: ItemDetail, urls: MediaUrls) -> MediaDetailOut:
    history = None if detail.history is None else [audit_event_out(event) for event in detail.history]
    return MediaDetailOut(**media_out(detail.view, urls).model_dump(), history=history)
