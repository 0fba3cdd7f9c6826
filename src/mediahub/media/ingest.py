"""Ingest one upload: spool (1) -> sniff (2) -> check -> pixels (3-8) -> duplicates -> store bytes + commit row (9).

Write order is bytes first, then the row in one transaction; when anything
fails after the first write, every object this upload wrote is deleted again
(what a crash leaves behind, `mediahub verify --repair` finds).

The upload path makes only the JPEG/PNG variants (and a video's poster); WebP,
AVIF and the video's web MP4 are jobs, inserted in the row's transaction (the
outbox) and handed to `dispatch` only once it has committed; so are a listing
photo's machine tags (media/tagging.py), which the item never waits for.
"""

from __future__ import annotations

import concurrent.futures
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.orm import Session

from mediahub.config import Settings
from mediahub.db.models import NO_PARENT, MediaItem
from mediahub.db.repositories import MediaRepository, MemberRepository
from mediahub.db.repositories.job_queue import PENDING, enqueue
from mediahub.db.session import Database
from mediahub.dedup import policy as dedup
from mediahub.dedup.index import DedupIndex
from mediahub.entities import Target
from mediahub.errors import DatabaseUnavailable, NotFound, StorageUnavailable, TooLarge, UnsupportedType
from mediahub.formats import CONTENT_TYPES, EXTENSIONS
from mediahub.media import access, audit, exposure, tagging
from mediahub.media.access import Principal
from mediahub.media.activity import UploadActivity
from mediahub.media.audit import Actor
from mediahub.media.cdn import CdnPurge
from mediahub.media.checks import awaiting_checks
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.job_kinds import VARIANTS, Dispatch, dispatch_committed, upload_jobs
from mediahub.media.keys import original_key, stored_original_key, variant_key
from mediahub.media.moderation import CHECKS, replace_in_slot
from mediahub.media.pixels import PixelWorkers
from mediahub.media.renditions import PlannedVariant, StoredOriginal, plan_variants
from mediahub.pipeline.image import ImageOptions, ProcessedImage, image_outputs, process_image
from mediahub.pipeline.intake import Spooled, safe_filename, sha256_of, spool
from mediahub.pipeline.options import encode_options, image_options, video_options
from mediahub.pipeline.original import EncodedOriginal
from mediahub.pipeline.sniff import Sniffed, sniff
from mediahub.pipeline.transcode import strip_metadata
from mediahub.pipeline.video import ProcessedVideo, process_video
from mediahub.pipeline.watermark import for_field
from mediahub.storage.base import KeyExists, Storage

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 3
PARALLEL_PUTS = 4  # objects of one upload written at once


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
    # Skip the duplicate check (honoured unless DEDUP_ALLOW_OVERRIDE is false).
    allow_duplicate: bool = False
    # The caller: duplicate answers name only items they may see, and admins' and moderators'
    # uploads start approved. None: the operator (the CLI), who sees everything.
    principal: Principal | None = None
    # Run in the transaction that inserts the item (a resumable upload records its outcome there, so an
    # upload makes its item exactly once); raising refuses the item, as a failed insert would.
    on_commit: Callable[[Session, MediaItem], None] | None = None


@dataclass(frozen=True)
class _Object:
    key: str
    source: bytes | Path
    content_type: str
    sha256: str | None = None  # the original's, recorded with its row


class _EarlyOriginal:
    """The original's put when it starts before the pixels are done (see `image_outputs`)."""

    def __init__(self, writers: concurrent.futures.Executor, storage: Storage, target: Target) -> None:
        self._writers = writers
        self._storage = storage
        self._target = target
        self.key: str | None = None
        self._put: concurrent.futures.Future | None = None

    def start(self, original: EncodedOriginal) -> None:
        """Called once, with the original as it will be stored."""
        self.key = stored_original_key(self._target, original)
        self._put = self._writers.submit(self._storage.put, self.key, original.data, CONTENT_TYPES[original.format])

    def settle(self, written: list[str], *, raise_error: bool) -> None:
        """Wait for the put; its key joins `written` if it landed, its error is raised if asked."""
        if self._put is None:
            return
        error = self._put.exception()
        if error is None:
            written.append(self.key)
        elif raise_error:
            raise error


class _LostOriginals:
    """Duplicate candidates whose original the store has lost (one stat each, asked once): never matched, and
    marked afterwards as `mediahub verify --repair` marks rows whose objects are missing.

    Only a store this process reads can say an object is lost: an item its row records elsewhere (moved by a
    storage migration after this process started) is taken as present, as it was before it could be checked."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._stored: dict[int, bool] = {}
        self.lost: dict[int, str] = {}  # media id -> its original's key

    def present(self, item: MediaItem) -> bool:
        store = self._storage.store_of(item.storage_type, item.bucket_name)
        if (store.kind, store.bucket) != (item.storage_type, item.bucket_name):
            return True
        if item.id not in self._stored:
            try:
                self._storage.stat(item.original_key)
                self._stored[item.id] = True
            except NotFound:
                log.warning("#%s matches an upload, but its original %s is missing: the upload is stored anew",
                            item.id, item.original_key)
                self._stored[item.id] = False
                self.lost[item.id] = item.original_key
        return self._stored[item.id]

    def mark(self, database: Database) -> None:
        """After the upload's transactions: marking in theirs would wait for the lock they hold, or be undone."""
        for media_id, key in self.lost.items():
            try:
                with database.session() as session:
                    MediaRepository(session).mark_missing(media_id, [key])
            except DatabaseUnavailable:
                log.warning("could not mark #%s as missing %s: `mediahub verify --repair` does", media_id, key)
        self.lost.clear()


class IngestService:
    def __init__(self, settings: Settings, database: Database, storage: Storage,
                 dispatch: Dispatch | None = None, dedup_index: DedupIndex | None = None,
                 tags_images: bool = False, activity: UploadActivity | None = None) -> None:
        self.settings = settings
        self.activity = activity or UploadActivity(settings.job_lull_seconds)  # what in-process jobs wait on
        self.tags_images = tags_images  # the process has a tagger: listing photos get a tagging job
        self.database = database
        self.storage = storage
        self.dispatch = dispatch  # None: jobs wait in the table for a worker's sweeper
        self.dedup_index = dedup_index  # the process's perceptual index; None: scan the rows in scope
        self.cdn = CdnPurge(settings, storage)  # its purge jobs are dispatched with the upload's own
        self._writers = concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_PUTS, thread_name_prefix="put")
        self.pixels = PixelWorkers(settings.pixel_workers, settings.pixel_deadline_seconds)
        self.image_options = image_options(settings, encode_options(settings, extra=False), upload=True)

    def _cap(self, media_kind: str) -> int:
        return self.settings.max_image_size if media_kind == "image" else self.settings.max_video_size

    def size_cap(self, target: Target) -> int:
        """The byte cap while streaming: the largest cap of the kinds the field accepts."""
        return max(self._cap(kind) for kind in target.field.media_kinds)

    def ingest(self, chunks: Iterable[bytes], request: UploadRequest) -> MediaItem:
        spooled = spool(chunks, self.size_cap(request.target), self.settings.temp_dir)
        try:
            return self.ingest_spooled(spooled, request)
        finally:
            spooled.discard()

    def ingest_spooled(self, spooled: Spooled, request: UploadRequest) -> MediaItem:
        with self.activity.ingesting():
            return self._ingest_spooled(spooled, request)

    def _ingest_spooled(self, spooled: Spooled, request: UploadRequest) -> MediaItem:
        sniffed = sniff(spooled.head())
        self._check_allowed(sniffed, spooled.size, request.target)
        early = _EarlyOriginal(self._writers, self.storage, request.target)
        target = request.target
        images = replace(self.image_options, watermark=for_field(self.settings, target.kind.name, target.field.name))
        lost = _LostOriginals(self.storage)
        try:
            return self._process_and_store(spooled, sniffed, request, early, images, lost)
        finally:
            lost.mark(self.database)

    def _process_and_store(self, spooled: Spooled, sniffed: Sniffed, request: UploadRequest, early: _EarlyOriginal,
                           images: ImageOptions, lost: _LostOriginals) -> MediaItem:
        try:
            if sniffed.media_kind == "image":
                processed: ProcessedImage | ProcessedVideo = self._process_image(spooled.path, sniffed, early, images)
            else:
                processed = self.pixels.run(process_video, spooled.path, sniffed, video_options(self.settings, images))
                spooled.digests.result()  # the digests are of the bytes as uploaded: hashed before the rewrite
                strip_metadata(spooled.path, sniffed.format)  # the stored original is served
            if self._checks_duplicates(request):  # before the variants are stored
                with self.database.session() as session:
                    self._check_duplicate(session, dedup.Probe.of_upload(spooled.sha256, processed), processed,
                                          request, lost)
        except BaseException:
            written: list[str] = []
            early.settle(written, raise_error=False)
            self._remove(written)
            raise
        return self._store(spooled, sniffed, processed, request, early, lost)

    def _process_image(self, path: Path, sniffed: Sniffed, early: _EarlyOriginal,
                       images: ImageOptions) -> ProcessedImage:
        """The image's outputs; in this process, a kept original's put starts while the pixels are processed
        (its write and fsync then cost no time of their own). Worker processes return everything at the end."""
        if not self.pixels.in_process:
            return self.pixels.run(process_image, path, sniffed, images)
        for output in image_outputs(path, sniffed, images):
            if isinstance(output, EncodedOriginal):
                early.start(output)
            else:
                return output
        raise AssertionError("image_outputs ends with the processed image")

    def _checks_duplicates(self, request: UploadRequest) -> bool:
        settings = self.settings
        return settings.dedup_policy != "allow" and not (request.allow_duplicate and settings.dedup_allow_override)

    def _check_duplicate(self, session: Session, probe: dedup.Probe, processed: ProcessedImage | ProcessedVideo,
                         request: UploadRequest, lost: _LostOriginals, scope: dedup.Scope | None = None) -> None:
        """Apply DEDUP_POLICY in `scope` (default: DEDUP_SCOPE): raise Conflict(code="duplicate"),
        or flag the row's metadata. A match whose original is `lost` is no duplicate."""
        settings, target = self.settings, request.target
        entity = self._entity_scope(target)
        scope = scope or dedup.Scope.of(settings.dedup_scope, entity_type=target.kind.name,
                                        entity_id=target.entity_id, uploaded_by=request.uploaded_by,
                                        parent_id=target.parent_id)
        members, principal = MemberRepository(session), request.principal

        def visible(item: MediaItem) -> bool:
            return principal is None or access.can_view(principal, item, members)

        match = dedup.check_duplicate(session, probe, scope, settings.dedup_threshold, entity=entity,
                                      index=self.dedup_index, visible=visible, present=lost.present)
        decision = dedup.decide(match, policy=settings.dedup_policy, entity=entity,
                                visible=match is not None and visible(match.item))
        processed.metadata.update(decision.metadata)

    @staticmethod
    def _entity_scope(target: Target) -> dedup.Scope:
        return dedup.Scope.entity(target.kind.name, target.entity_id, target.parent_id)

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
        cap = self._cap(sniffed.media_kind)
        if size > cap:
            raise TooLarge(f"{sniffed.media_kind} is {size} bytes; at most {cap}", limit=cap)

    def _objects(self, spooled: Spooled, sniffed: Sniffed, processed: ProcessedImage | ProcessedVideo,
                 target: Target, stored_key: str | None) -> tuple[list[_Object], list[PlannedVariant]]:
        """The objects to store, the original first; and the variant rows (`renditions.plan_variants`).
        `stored_key`: the original's, when already stored."""
        if isinstance(processed, ProcessedImage):
            fmt = processed.original.format
            key = stored_key or stored_original_key(target, processed.original)
            first = _Object(key, processed.original.data, CONTENT_TYPES[fmt], sha256_of(processed.original.data))
            original = StoredOriginal.of(key, fmt, processed.width, processed.height, len(processed.original.data),
                                         processed.metadata, first.sha256)
        else:
            key = original_key(target, EXTENSIONS[sniffed.format])
            first = _Object(key, spooled.path, sniffed.mime, sha256_of(spooled.path))  # stripped of its metadata
            original = None
        variants = plan_variants(processed.variants, lambda v: variant_key(key, v.name, EXTENSIONS[v.format]),
                                 original)
        rest = [_Object(v.row.storage_key, v.source, v.row.content_type) for v in variants if v.stored]
        return [first, *rest], variants

    def _store(self, spooled: Spooled, sniffed: Sniffed, processed: ProcessedImage | ProcessedVideo,
               request: UploadRequest, early: _EarlyOriginal | None = None,
               lost: _LostOriginals | None = None) -> MediaItem:
        """Store the objects (all, or all but an `early` original), then commit the row and its jobs; `lost`
        collects the duplicate candidates found without their original (the caller marks them)."""
        early = early or _EarlyOriginal(self._writers, self.storage, request.target)
        lost = lost or _LostOriginals(self.storage)
        objects, variants = self._objects(spooled, sniffed, processed, request.target, early.key)
        job_kinds = upload_jobs(self.settings, sniffed.media_kind, getattr(processed, "variants_deferred", False))
        written: list[str] = []
        try:
            try:
                self._put_all(objects[1:] if early.key else objects, written)
            finally:
                early.settle(written, raise_error=True)
            item, job_ids = self._commit(
                lambda: self._row(spooled, sniffed, processed, request, objects[0], variants, job_kinds),
                request.target, job_kinds, Actor.of(request.principal),
                self._recheck(spooled, processed, request, lost),
                request.on_commit,
            )
        except KeyExists as exc:  # a generated key that is taken: nothing was replaced, the upload may be sent again
            self._remove(written)
            raise StorageUnavailable(f"storage key {exc.key} is taken", code="key_collision") from exc
        except BaseException:
            self._remove(written)
            raise
        exposure.publish_new(self.storage, item)
        dispatch_committed(self.dispatch, job_ids)
        if request.target.field.slot == "single":  # the item this one replaced left objects to remove
            purge_pending_deletes(self.database, self.storage)
        return item

    def _put_all(self, objects: list[_Object], written: list[str]) -> None:
        """Write every object at once: each put waits on its own fsync or network round trip.

        `written` gets every key that was stored, even when another put failed, so the
        caller can remove exactly what this upload wrote.
        """
        futures = {self._writers.submit(self.storage.put, o.key, o.source, o.content_type): o.key for o in objects}
        first_error: BaseException | None = None
        for future in concurrent.futures.as_completed(futures):
            error = future.exception()
            if error is None:
                written.append(futures[future])
            elif first_error is None:
                first_error = error
        if first_error is not None:
            raise first_error

    def _recheck(self, spooled: Spooled, processed: ProcessedImage | ProcessedVideo, request: UploadRequest,
                 lost: _LostOriginals) -> Callable[[Session], None] | None:
        """The duplicate check again, inside the commit and under the entity's lock, where it can refuse.

        The first check (before storing) is a read that two identical uploads racing each
        other both pass; the second one of them to commit finds the first here and gets the 409.
        """
        if self.settings.dedup_policy != "reject" or not self._checks_duplicates(request):
            return None
        probe = dedup.Probe.of_upload(spooled.sha256, processed)
        entity = self._entity_scope(request.target)
        return lambda session: self._check_duplicate(session, probe, processed, request, lost, entity)

    def _commit(self, make_row: Callable[[], MediaItem], target: Target, job_kinds: list[str],
                actor: Actor, recheck: Callable[[Session], None] | None = None,
                on_commit: Callable[[Session, MediaItem], None] | None = None) -> tuple[MediaItem, list[int]]:
        """Insert the row (replacing what it replaces in a single slot) and its jobs in one transaction, recorded
        in the audit trail as `actor`'s.

        With a `recheck`, and for a gallery (whose `max_items` a concurrent insert must not
        overshoot: locking the rows it holds misses the rows being added), the transaction
        holds the entity's lock; a `recheck` runs first.
        Lock waits and deadlocks between concurrent uploads to one field surface as
        `DatabaseUnavailable`; a fresh attempt usually succeeds, a dead server does not.
        """
        gallery = target.field.slot == "gallery"
        lock = f"entity:{access.EntityRef.of_target(target).label}"
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                with (self.database.locked_session(lock) if recheck or gallery
                      else self.database.session()) as session:
                    if recheck is not None:
                        recheck(session)
                    item = make_row()
                    repo = MediaRepository(session)
                    with audit.recording_primaries(session, actor, repo, item):
                        repo.add(item, target.field.max_items if gallery else None)
                    audit.record_created(session, actor, item)
                    purges = replace_in_slot(repo, item, self.cdn, actor) if target.field.slot == "single" else []
                    if on_commit is not None:
                        on_commit(session, item)
                    job_ids = [enqueue(session, kind, media_id=item.id,
                                       max_attempts=self.settings.job_max_attempts).id for kind in job_kinds]
                    # An upload whose variants a job makes is tagged once they exist (tasks.variants queues it
                    # then): the tagger reads a small rendition, never a HEIC or PNG decoded in full.
                    if (self.tags_images and VARIANTS not in job_kinds
                            and tagging.wants_tags(target.field, item.media_type)):
                        job_ids.append(tagging.queue_tagging(session, item.id, self.settings.job_max_attempts))
                    job_ids += purges
                return item, job_ids
            except DatabaseUnavailable:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

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
             request: UploadRequest, original: _Object, variants: list[PlannedVariant],
             job_kinds: list[str]) -> MediaItem:
        target = request.target
        # A video's spool has been rewritten without its metadata since it was hashed.
        size = len(original.source) if isinstance(original.source, bytes) else original.source.stat().st_size
        meta = {**processed.metadata, PENDING: job_kinds}
        if filename := safe_filename(request.filename):
            meta["filename"] = filename
        approved = access.starts_approved(request.principal, request.verified,
                                          auto_approve_verified=self.settings.auto_approve_verified)
        if self.settings.moderation_checks:  # the checks' job decides whether it is approved (media/checks.py)
            meta[CHECKS] = awaiting_checks(approve_on_pass=approved)
            approved = False
        return MediaItem(
            public_id=secrets.token_urlsafe(16),
            entity_type=target.kind.name,
            entity_id=target.entity_id,
            parent_id=target.parent_id or NO_PARENT,
            entity_field=target.field.name,
            is_primary=request.is_primary or target.field.slot == "single",
            media_type=sniffed.media_kind,
            storage_type=self.storage.kind,
            bucket_name=self.storage.bucket,
            original_key=original.key,
            variants=[v.row.model() for v in variants],
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
            processing_status="queued" if job_kinds else "ready",
            image_hash=processed.phash,
            sha256=spooled.sha256,
            md5=spooled.md5,
            stored_sha256=original.sha256,
            uploaded_by=request.uploaded_by,
            **dedup.row_columns(getattr(processed, "fingerprint", None), getattr(processed, "pixel_sha256", None)),
        )

