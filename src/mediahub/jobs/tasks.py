"""What each kind of job does, as plain functions over a `TaskContext`.

Every task is idempotent, so a re-run after a crash or an expired lease is
safe: objects are written first (under keys fixed for the job, so a re-run
finds its own objects instead of adding new ones), then the row's variant list
is swapped in one transaction that also queues the replaced objects in
PendingDelete. When a run fails, the objects it wrote that the row does not
reference are removed again.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediahub.db.models import Job, MediaItem, PendingDelete
from mediahub.db.repositories.job_queue import lock_item
from mediahub.db.session import Database
from mediahub.jobs.context import TaskContext
from mediahub.media import exposure
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.job_kinds import RENDITIONS, REPROCESS, VIDEO_TRANSCODE, WEB
from mediahub.media.keys import variant_key
from mediahub.pipeline.formats import EXTENSIONS
from mediahub.pipeline.image import ProcessedImage, process_image
from mediahub.pipeline.intake import spool
from mediahub.pipeline.options import encode_options, image_options, video_options
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.transcode import transcode_web
from mediahub.pipeline.variants import Encoded, EncodeOptions
from mediahub.pipeline.video import ProcessedVideo, process_video
from mediahub.storage.base import KeyExists, ObjectInfo, Storage

log = logging.getLogger(__name__)

Variant = dict[str, Any]  # one entry of MediaItem.variants


@dataclass(frozen=True)
class NewVariant:
    entry: Variant
    source: bytes | Path


def renditions(context: TaskContext, job: Job) -> None:
    """WebP (and AVIF) of the item's sizes, beside the JPEG/PNG the upload made."""
    item = _item(context.database, job.media_id)
    if item is None:  # deleted meanwhile: nothing to do
        return
    processed = _process_original(context, item, encode_options(context.settings, base=False))
    made = [_image_variant(item.original_key, v, v.name) for v in processed.variants]
    pairs = {(v.name, v.format) for v in processed.variants}
    _publish(context, item.id, made, keep=lambda v: (v["name"], v["format"]) not in pairs)


def reprocess(context: TaskContext, job: Job) -> None:
    """Every image variant again from the stored original, under new keys (the old ones may be cached)."""
    item = _item(context.database, job.media_id)
    if item is None:
        return
    processed = _process_original(context, item, encode_options(context.settings))
    # Fresh keys per job, fixed within it: a re-run of this job overwrites its own objects.
    made = [_image_variant(item.original_key, v, f"{v.name}-r{job.id}") for v in processed.variants]
    _publish(context, item.id, made, keep=lambda v: v["name"] == WEB)


def video_transcode(context: TaskContext, job: Job) -> None:
    """The web rendition: H.264/AAC MP4, longest side at most 1280, faststart, no metadata."""
    item = _item(context.database, job.media_id)
    if item is None or item.media_type != "video":
        return
    with _original_on_disk(context, item) as source, _temp_file(context, ".mp4") as target:
        web = transcode_web(source, target)
        entry = {"name": WEB, "format": "mp4", "key": variant_key(item.original_key, WEB, "mp4"),
                 "width": web.width, "height": web.height, "size": web.size, "content_type": "video/mp4"}
        _publish(context, item.id, [NewVariant(entry, target)], keep=lambda v: v["name"] != WEB)


TASKS: dict[str, Callable[[TaskContext, Job], None]] = {
    RENDITIONS: renditions,
    REPROCESS: reprocess,
    VIDEO_TRANSCODE: video_transcode,
}


def _item(database: Database, media_id: int | None) -> MediaItem | None:
    if media_id is None:
        return None
    with database.session() as session:
        return session.get(MediaItem, media_id)


def _image_variant(original_key: str, encoded: Encoded, key_name: str) -> NewVariant:
    key = variant_key(original_key, key_name, EXTENSIONS[encoded.format])
    entry = {"name": encoded.name, "format": encoded.format, "key": key, "width": encoded.width,
             "height": encoded.height, "size": len(encoded.data), "content_type": encoded.content_type}
    return NewVariant(entry, encoded.data)


def _process_original(context: TaskContext, item: MediaItem,
                      encode: EncodeOptions) -> ProcessedImage | ProcessedVideo:
    """Run the upload pipeline again over the stored original, with today's sizes."""
    images = image_options(context.settings, encode)
    with _original_on_disk(context, item) as path:
        with path.open("rb") as fh:
            sniffed = sniff(fh.read(4096))
        if item.media_type == "image":
            return process_image(path, sniffed, images)
        return process_video(path, sniffed, video_options(context.settings, images))


@contextmanager
def _original_on_disk(context: TaskContext, item: MediaItem) -> Iterator[Path]:
    """The stored original streamed to a temp file (PyAV and the decoders want a path)."""
    settings = context.settings
    limit = max(item.byte_size, settings.max_image_size, settings.max_video_size)
    spooled = spool(context.storage.open_range(item.original_key), limit, settings.temp_dir)
    try:
        yield spooled.path
    finally:
        spooled.discard()


@contextmanager
def _temp_file(context: TaskContext, suffix: str) -> Iterator[Path]:
    folder = context.settings.temp_dir
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="job-", dir=folder) as name:
        yield Path(name) / f"out{suffix}"


def _publish(context: TaskContext, media_id: int, made: list[NewVariant], keep: Callable[[Variant], bool]) -> None:
    """Write the objects, then swap them into the row; on failure remove what the row does not use."""
    written: list[str] = []
    try:
        entries = []
        for variant in made:
            info = _put_unless_present(context.storage, variant)
            written.append(info.key)
            entries.append({**variant.entry, "size": info.size})
        swapped = _swap_variants(context.database, context.storage, media_id, entries, keep)
    except BaseException:
        _remove_unreferenced(context, media_id, written)
        raise
    if not swapped:  # the item was deleted while the job ran
        _remove_unreferenced(context, media_id, written)
    purge_pending_deletes(context.database, context.storage)


def _put_unless_present(storage: Storage, variant: NewVariant) -> ObjectInfo:
    """Store the object; an earlier run of this job may have published the key already, and keys are immutable."""
    key = variant.entry["key"]
    try:
        return storage.put(key, variant.source, variant.entry["content_type"])
    except KeyExists:
        return storage.stat(key)


def _swap_variants(database: Database, storage: Storage, media_id: int, entries: list[Variant],
                   keep: Callable[[Variant], bool]) -> bool:
    """Replace the variants `keep` rejects by `entries`, queueing objects no longer used for deletion.

    The row is locked first, so concurrent jobs of one item (WebP and the web
    MP4) apply one after the other instead of overwriting each other's list, and a
    moderation decision (which takes the same lock) sees the new objects or none:
    they are made public here only if the item is approved at this moment.
    """
    new_keys = {e["key"] for e in entries}
    with database.session() as session:
        lock_item(session, media_id)
        item = session.get(MediaItem, media_id, populate_existing=True)
        if item is None:
            return False
        kept = [v for v in item.variants or [] if keep(v) and v["key"] not in new_keys]
        kept_keys = {v["key"] for v in kept}
        dropped = [v["key"] for v in item.variants or [] if v["key"] not in kept_keys | new_keys]
        item.variants = kept + entries
        session.add_all(PendingDelete(storage_key=key) for key in dropped)
        if exposure.is_public(item):
            storage.set_public(new_keys, True)
    return True


def _remove_unreferenced(context: TaskContext, media_id: int, written: list[str]) -> None:
    try:
        item = _item(context.database, media_id)
        used = set(item.keys()) if item is not None else set()
        stray = [key for key in written if key not in used]
        if stray and context.storage.delete_many(stray):
            log.warning("could not remove objects of a failed job for #%s", media_id)
    except Exception:  # a failing store or database: verify --repair finds these later
        log.warning("could not clean up after a failed job for #%s: %s", media_id, written, exc_info=True)
