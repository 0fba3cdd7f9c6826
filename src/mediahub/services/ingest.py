"""Ingest one upload: spool -> sniff -> check -> process -> store bytes -> commit row.

Write order is bytes first, then the row in one transaction; when anything
fails after the first write, every object this upload wrote is deleted again
(what a crash leaves behind, `mediahub verify --repair` finds).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mediahub.config import Settings
from mediahub.db.models import MediaItem
from mediahub.db.repositories import MediaRepository
from mediahub.db.session import Database
from mediahub.entities import Target
from mediahub.errors import TooLarge, UnsupportedType
from mediahub.pipeline.image import ImageOptions, ProcessedImage, process_image
from mediahub.pipeline.intake import Spooled, spool
from mediahub.pipeline.probe import ImageLimits
from mediahub.pipeline.sniff import Sniffed, sniff
from mediahub.pipeline.variants import CONTENT_TYPES, EXTENSIONS, EncodeOptions
from mediahub.pipeline.video import ProcessedVideo, VideoOptions, process_video
from mediahub.services.cleanup import purge_pending_deletes
from mediahub.storage.base import Storage
from mediahub.storage.keys import original_key, variant_key

log = logging.getLogger(__name__)

_VIDEO_EXTENSIONS = {"mp4": "mp4", "mov": "mov", "webm": "webm"}


@dataclass(frozen=True)
class UploadRequest:
    target: Target
    uploaded_by: str | None = None
    verified: bool = False
    is_primary: bool = False
    alt_text: str | None = None
    caption: str | None = None
    tags: list[str] = field(default_factory=list)
    filename: str | None = None  # a hint, kept for the record; never used for the type


@dataclass(frozen=True)
class _Object:
    key: str
    source: bytes | Path
    content_type: str


def image_options(settings: Settings) -> ImageOptions:
    return ImageOptions(
        limits=ImageLimits(settings.max_image_side, settings.max_image_pixels, settings.max_frames,
                           settings.max_total_pixels),
        sizes=settings.image_sizes,
        encode=EncodeOptions(settings.jpeg_quality, settings.webp_quality, settings.make_webp),
        original_quality=settings.original_quality,
        strip_gps=settings.strip_gps,
    )


class IngestService:
    def __init__(self, settings: Settings, database: Database, storage: Storage) -> None:
        self.settings = settings
        self.database = database
        self.storage = storage
        self.image_options = image_options(settings)
        self.video_options = VideoOptions(self.image_options, settings.max_video_duration)

    def size_cap(self, target: Target) -> int:
        """The byte cap while streaming: the largest cap of the kinds the field accepts."""
        caps = {"image": self.settings.max_image_size, "video": self.settings.max_video_size}
        return max(caps[kind] for kind in target.field.media_kinds)

    def ingest(self, chunks: Iterable[bytes], request: UploadRequest) -> MediaItem:
        spooled = spool(chunks, self.size_cap(request.target), self.settings.temp_dir)
        try:
            return self.ingest_spooled(spooled, request)
        finally:
            spooled.discard()

    def ingest_spooled(self, spooled: Spooled, request: UploadRequest) -> MediaItem:
        sniffed = sniff(spooled.head())
        self._check_allowed(sniffed, spooled.size, request.target)
        if sniffed.media_kind == "image":
            processed: ProcessedImage | ProcessedVideo = process_image(spooled.path, sniffed, self.image_options)
        else:
            processed = process_video(spooled.path, sniffed, self.video_options)
        return self._store(spooled, sniffed, processed, request)

    def _check_allowed(self, sniffed: Sniffed, size: int, target: Target) -> None:
        if sniffed.media_kind not in target.field.media_kinds:
            raise UnsupportedType(
                f"{target.kind.name} {target.field.name} accepts {', '.join(sorted(target.field.media_kinds))}, "
                f"not {sniffed.media_kind}",
                detected=sniffed.format,
            )
        allowed = (self.settings.allowed_image_types if sniffed.media_kind == "image"
                   else self.settings.allowed_video_types)
        if sniffed.format not in allowed:
            raise UnsupportedType(f"{sniffed.format} files are not accepted here", detected=sniffed.format)
        cap = self.settings.max_image_size if sniffed.media_kind == "image" else self.settings.max_video_size
        if size > cap:
            raise TooLarge(f"{sniffed.media_kind} is {size} bytes; at most {cap}", limit=cap)

    def _objects(self, spooled: Spooled, sniffed: Sniffed,
                 processed: ProcessedImage | ProcessedVideo, target: Target) -> list[_Object]:
        if isinstance(processed, ProcessedImage):
            fmt = processed.original.format
            key = original_key(target, EXTENSIONS[fmt])
            first = _Object(key, processed.original.data, CONTENT_TYPES[fmt])
        else:
            key = original_key(target, _VIDEO_EXTENSIONS[sniffed.format])
            first = _Object(key, spooled.path, sniffed.mime)
        rest = [
            _Object(variant_key(key, v.name, EXTENSIONS[v.format]), v.data, v.content_type)
            for v in processed.variants
        ]
        return [first, *rest]

    def _store(self, spooled: Spooled, sniffed: Sniffed, processed: ProcessedImage | ProcessedVideo,
               request: UploadRequest) -> MediaItem:
        target = request.target
        objects = self._objects(spooled, sniffed, processed, target)
        item = self._row(spooled, sniffed, processed, request, objects)
        written: list[str] = []
        try:
            for obj in objects:
                self.storage.put(obj.key, obj.source, obj.content_type)
                written.append(obj.key)
            with self.database.session() as session:
                repo = MediaRepository(session)
                repo.add(item)
                if target.field.slot == "single":
                    for old in repo.others_in_slot(target.kind.name, target.entity_id, target.field.name, item.id):
                        repo.delete(old)
        except BaseException:
            self._remove(written)
            raise
        purge_pending_deletes(self.database, self.storage)
        return item

    def _remove(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            failed = self.storage.delete_many(keys)
        except Exception:  # storage is what failed; verify --repair finds the rest
            failed = keys
        if failed:
            log.warning("could not remove %d objects of a failed upload: %s", len(failed), failed)

    def _row(self, spooled: Spooled, sniffed: Sniffed, processed: ProcessedImage | ProcessedVideo,
             request: UploadRequest, objects: list[_Object]) -> MediaItem:
        target = request.target
        original, variant_objects = objects[0], objects[1:]
        variants = [
            {"name": v.name, "format": v.format, "key": obj.key, "width": v.width, "height": v.height,
             "size": len(v.data), "content_type": v.content_type}
            for v, obj in zip(processed.variants, variant_objects, strict=True)
        ]
        size = len(original.source) if isinstance(original.source, bytes) else spooled.size
        meta = dict(processed.metadata)
        if request.filename:
            meta["filename"] = Path(request.filename.replace("\\", "/")).name[:255]
        approved = request.verified and self.settings.auto_approve_verified
        return MediaItem(
            public_id=secrets.token_urlsafe(16),
            entity_type=target.kind.name,
            entity_id=target.entity_id,
            entity_field=target.field.name,
            is_primary=request.is_primary or target.field.slot == "single",
            media_type=sniffed.media_kind,
            storage_type=self.storage.kind,
            bucket_name=self.storage.bucket,
            original_key=original.key,
            variants=variants,
            content_type=original.content_type,
            byte_size=size,
            width=processed.width,
            height=processed.height,
            duration=getattr(processed, "duration", None),
            tags=list(request.tags),
            meta=meta,
            caption=request.caption,
            alt_text=request.alt_text,
            moderation_status="approved" if approved else "pending",
            processing_status="ready",
            image_hash=processed.phash,
            sha256=spooled.sha256,
            md5=spooled.md5,
            uploaded_by=request.uploaded_by,
        )

