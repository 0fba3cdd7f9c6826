"""What each kind of job does, as plain functions over a `TaskContext`.

Every task is idempotent, so a re-run after a crash or an expired lease is
safe: objects are written first (under keys fixed for the job, so a re-run
finds its own objects instead of adding new ones), then the item's variant rows
are replaced in one transaction that also queues the objects no row uses any
more in PendingDelete (`renditions.publish`), and the CDN purges of what it
replaced: a task returns the ids of the jobs its commit queued, which the runner
dispatches. When a run fails, the objects it wrote that the item does not
reference are removed again.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from mediahub.db.models import Job, MediaItem, MediaVariant
from mediahub.db.repositories import MediaRepository, VariantRow
from mediahub.db.session import Database
from mediahub.formats import CONTENT_TYPES, EXTENSIONS
from mediahub.jobs.context import TaskContext
from mediahub.media.cdn import CdnPurge, call_purge_hook
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.exposure import original_is_raw
from mediahub.media.job_kinds import (
    CDN_PURGE,
    MODERATION_CHECK,
    RENDITIONS,
    REPROCESS,
    TAGGING,
    VARIANTS,
    VIDEO_TRANSCODE,
    WEB,
)
from mediahub.media.keys import replacement_key, variant_key
from mediahub.media.originals import process_stored, stored_on_disk
from mediahub.media.renditions import PlannedVariant, ReplacementOriginal, StoredOriginal, plan_variants, publish
from mediahub.media.tagging import queue_tagging_of, record_machine_tags, tagging_source
from mediahub.pipeline import watermark
from mediahub.pipeline.focal import FocalPoint, focus_metadata
from mediahub.pipeline.image import ProcessedImage
from mediahub.pipeline.intake import sha256_of
from mediahub.pipeline.options import encode_options, image_options, video_options
from mediahub.pipeline.transcode import transcode_web
from mediahub.pipeline.variants import Encoded, EncodeOptions
from mediahub.pipeline.video import ProcessedVideo
from mediahub.storage.base import KeyExists, ObjectInfo, Storage

log = logging.getLogger(__name__)

FollowUps = list[int] | None  # what a task returns: the jobs its commit queued (None: none)


def renditions(context: TaskContext, job: Job) -> FollowUps:
    """WebP (and AVIF) of the item's sizes, beside the JPEG/PNG the upload made."""
    return _make_variants(context, job, encode_options(context.settings, base=False))


def variants(context: TaskContext, job: Job) -> FollowUps:
    """Every variant of an image whose upload left them to a job: JPEG/PNG, and WebP/AVIF when enabled; then a
    listing photo's tagging job, which reads one of them (queued with them, when this process has a tagger)."""
    attempts = context.settings.job_max_attempts
    follow_up = None if context.tagger is None else lambda session, item: queue_tagging_of(session, item, attempts)
    return _make_variants(context, job, encode_options(context.settings), follow_up)


def _make_variants(context: TaskContext, job: Job, encode: EncodeOptions,
                   follow_up: Callable[[Session, MediaItem], list[int]] | None = None) -> FollowUps:
    item = _item(context.database, job.media_id)
    if item is None:  # deleted meanwhile: nothing to do
        return None
    processed = _process_original(context, item, encode)
    replacement = None
    if original_is_raw(item):  # the upload as sent: its re-encode takes its place, beside it
        fresh = processed.original
        key = replacement_key(item.original_key, EXTENSIONS[fresh.format])
        digest = sha256_of(fresh.data)
        replacement = (ReplacementOriginal(key, CONTENT_TYPES[fresh.format], len(fresh.data),
                                           processed.metadata["original"], digest), fresh.data)
        compared = StoredOriginal.of(key, fresh.format, processed.width, processed.height, len(fresh.data),
                                     processed.metadata, digest)
    else:
        compared = StoredOriginal.of_item(item)
    made = _image_variants(item, processed.variants, lambda v: v.name, compared)
    pairs = {(v.name, v.format) for v in processed.variants}
    return _publish(context, item, made, keep=lambda v: (v.name, v.format) not in pairs, original=replacement,
                    metadata=_marked_with(processed), found=focus_metadata(processed.metadata), follow_up=follow_up)


def reprocess(context: TaskContext, job: Job) -> FollowUps:
    """Every image variant again from the stored original, under new keys (the old ones may be cached)."""
    item = _item(context.database, job.media_id)
    if item is None:
        return None
    processed = _process_original(context, item, encode_options(context.settings))
    # Fresh keys per job, fixed within it: a re-run of this job overwrites its own objects.
    made = _image_variants(item, processed.variants, lambda v: f"{v.name}-r{job.id}")
    return _publish(context, item, made, keep=lambda v: v.name == WEB, metadata=_marked_with(processed),
                    found=focus_metadata(processed.metadata))


def video_transcode(context: TaskContext, job: Job) -> FollowUps:
    """The web rendition: H.264/AAC MP4, longest side at most 1280, faststart, no metadata."""
    item = _item(context.database, job.media_id)
    if item is None or item.media_type != "video":
        return None
    with _original_on_disk(context, item) as source, _temp_file(context, ".mp4") as target:
        web = transcode_web(source, target)
        row = VariantRow(WEB, "mp4", variant_key(item.original_key, WEB, "mp4"), web.width, web.height, web.size,
                         "video/mp4", content_hash=sha256_of(target))
        return _publish(context, item, [PlannedVariant(row, target)], keep=lambda v: v.name != WEB)


def moderation_check(context: TaskContext, job: Job) -> FollowUps:
    """MODERATION_CHECKS over the stored original, and their decision on the item's status (media/checks.py)."""
    settings = context.settings
    return context.checks.run(context.database, context.storage, CdnPurge(settings, context.storage), job.media_id,
                              max(settings.max_image_size, settings.max_video_size), settings.temp_dir) or None


def tagging(context: TaskContext, job: Job) -> FollowUps:
    """An image's machine tags: the tagger reads a small rendition (`tagging_source`) and its answer replaces the
    item's undecided machine tags (media/tagging.py). A video, or an item deleted meanwhile, is nothing to do."""
    tagger = context.tagger
    if tagger is None:  # queued by a process with a tagger, run by one without: fails (and says so) until one has it
        raise RuntimeError("this process has no tagger: the classifier is off or its model is missing")
    item = _item(context.database, job.media_id)
    if item is None or item.media_type != "image":
        return None
    with stored_on_disk(context.storage, tagging_source(item), _limit(context, item),
                        context.settings.temp_dir) as spooled:
        tags = tagger.tag(spooled.path)
    record_machine_tags(context.database, item.id, tags)
    return None


def cdn_purge(context: TaskContext, job: Job) -> FollowUps:
    """One call of the CDN's purge hook with the body its change queued (media/cdn.py)."""
    call_purge_hook(context.settings, job.payload)
    return None


TASKS: dict[str, Callable[[TaskContext, Job], FollowUps]] = {
    RENDITIONS: renditions,
    VARIANTS: variants,
    REPROCESS: reprocess,
    VIDEO_TRANSCODE: video_transcode,
    CDN_PURGE: cdn_purge,
    MODERATION_CHECK: moderation_check,
    TAGGING: tagging,
}


def _item(database: Database, media_id: int | None) -> MediaItem | None:
    if media_id is None:
        return None
    with database.session() as session:
        return MediaRepository(session).get(media_id)


def _image_variants(item: MediaItem, encoded: list[Encoded], key_name: Callable[[Encoded], str],
                    original: StoredOriginal | None = None) -> list[PlannedVariant]:
    """The rows of the encoded variants; those equal to a larger one (or the original) share its object."""
    return plan_variants(encoded, lambda v: variant_key(item.original_key, key_name(v), EXTENSIONS[v.format]),
                         original or StoredOriginal.of_item(item))


def _limit(context: TaskContext, item: MediaItem) -> int:
    settings = context.settings
    return max(item.byte_size, settings.max_image_size, settings.max_video_size)


def _process_original(context: TaskContext, item: MediaItem,
                      encode: EncodeOptions) -> ProcessedImage | ProcessedVideo:
    """Run the upload pipeline again over the stored original, with today's sizes, its field's watermark and
    the crops around the item's focal point (found again only for an item that has none)."""
    images = replace(image_options(context.settings, encode,
                                   watermark=watermark.for_field(context.settings, item.entity_type,
                                                                 item.entity_field)),
                     focal=FocalPoint.of_metadata(item.meta))
    return process_stored(context.storage, item.original_key, _limit(context, item), context.settings.temp_dir,
                          images, video_options(context.settings, images))


@contextmanager
def _original_on_disk(context: TaskContext, item: MediaItem) -> Iterator[Path]:
    with stored_on_disk(context.storage, item.original_key, _limit(context, item),
                        context.settings.temp_dir) as spooled:
        yield spooled.path


@contextmanager
def _temp_file(context: TaskContext, suffix: str) -> Iterator[Path]:
    folder = context.settings.temp_dir
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="job-", dir=folder) as name:
        yield Path(name) / f"out{suffix}"


def _marked_with(processed: ProcessedImage | ProcessedVideo) -> dict[str, str | None]:
    """The item's metadata of the new variants' watermark, or its removal when they have none."""
    return {watermark.METADATA_KEY: processed.metadata.get(watermark.METADATA_KEY)}


def _publish(context: TaskContext, item: MediaItem, made: list[PlannedVariant],
             keep: Callable[[MediaVariant], bool], original: tuple[ReplacementOriginal, bytes] | None = None,
             metadata: dict[str, str | None] | None = None, found: dict[str, Any] | None = None,
             follow_up: Callable[[Session, MediaItem], list[int]] | None = None) -> FollowUps:
    """Write the objects to the store the item's row records (a storage migration may not have moved it yet),
    then swap the rows (and a raw original) in; on failure remove what the item does not use."""
    media_id, stored_in = item.id, item.store
    store = context.storage.store_of(*stored_in)
    written: list[str] = []
    try:
        sizes: dict[str, int] = {}
        replacement = None
        if original is not None:
            planned, data = original
            info = _put_unless_present(store, planned.key, data, planned.content_type)
            written.append(info.key)
            replacement = replace(planned, byte_size=info.size)  # as stored, like the variants below
        for variant in made:
            if variant.stored:
                info = _put_unless_present(store, variant.row.storage_key, variant.source,
                                           variant.row.content_type)
                written.append(info.key)
                sizes[info.key] = info.size
        # Sizes as stored (an earlier run's object may be the one kept); a shared object keeps its own.
        rows = [replace(v.row, byte_size=sizes.get(v.row.storage_key, v.row.byte_size)) for v in made]
        purges = publish(context.database, context.storage, media_id, rows, keep, replacement, metadata, found,
                         cdn=CdnPurge(context.settings, context.storage), stored_in=stored_in, follow_up=follow_up)
    except BaseException:
        _remove_unreferenced(context, media_id, written)
        raise
    if purges is None:  # the item was deleted while the job ran
        _remove_unreferenced(context, media_id, written)
    purge_pending_deletes(context.database, context.storage)
    return purges


def _put_unless_present(storage: Storage, key: str, source: bytes | Path, content_type: str) -> ObjectInfo:
    """Store the object; an earlier run of this job may have published the key already, and keys are immutable."""
    try:
        return storage.put(key, source, content_type)
    except KeyExists:
        return storage.stat(key)


def _remove_unreferenced(context: TaskContext, media_id: int, written: list[str]) -> None:
    try:
        item = _item(context.database, media_id)
        used = set(item.keys()) if item is not None else set()
        stray = [key for key in written if key not in used]
        if stray and context.storage.delete_many(stray):
            log.warning("could not remove objects of a failed job for #%s", media_id)
    except Exception:  # a failing store or database: verify --repair finds these later
        log.warning("could not clean up after a failed job for #%s: %s", media_id, written, exc_info=True)
