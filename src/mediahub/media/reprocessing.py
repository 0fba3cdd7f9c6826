"""Finding items whose variants no longer match the settings (or that have no focal point), and queueing their
reprocess jobs.

Resumable by construction: an item is queued only when its variants differ
from IMAGE_SIZES (and the WebP/AVIF settings) and it has no unfinished job,
so a second run after an interruption skips what is done or already queued
and picks up the jobs an interrupted run left queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mediahub.config import Settings
from mediahub.db.models import MediaItem, MediaVariant
from mediahub.db.repositories import MediaRepository
from mediahub.db.repositories.job_queue import busy_media_ids, enqueue, queued_ids
from mediahub.db.session import Database
from mediahub.media.job_kinds import REPROCESS, WEB
from mediahub.pipeline import watermark
from mediahub.pipeline.focal import FOCAL_POINT
from mediahub.pipeline.variants import output_size

BASE_FORMATS = frozenset({"jpeg", "png"})
PAGE = 200
Scope = tuple[str, str] | None  # (entity type, entity id), or None for every item


def is_stale(item: MediaItem, settings: Settings) -> bool:
    """Whether the item's variants differ from what the settings make now (sizes, formats, watermark), or it
    has no focal point yet (the job finds and records one, and crops around it).

    Sizes compare within a pixel: a reduced (draft) decode may round one pixel
    differently from the full size the row records. A row larger than its size names
    the object of a larger variant or the original (a re-encode was not smaller,
    `renditions.plan_variants`), which a reprocess would decide again: not a change.
    """
    if not item.width or not item.height:
        return False
    if FOCAL_POINT not in (item.meta or {}):  # stored before focal points: its crops are centred, not focused
        return True
    images = [v for v in item.presets if v.name != WEB]
    want = {s.name: output_size(item.width, item.height, s) for s in settings.image_sizes}
    if {v.name for v in images} != set(want):
        return True
    names_of_key: dict[str, set[str]] = {}
    for v in images:
        names_of_key.setdefault(v.storage_key, set()).add(v.name)

    def matches(v: MediaVariant) -> bool:
        want_w, want_h = want[v.name]
        if abs(v.width - want_w) <= 1 and abs(v.height - want_h) <= 1:
            return True
        shared = v.storage_key == item.original_key or len(names_of_key[v.storage_key]) > 1
        return shared and v.width >= want_w and v.height >= want_h

    if not all(matches(v) for v in images):
        return True
    mark = watermark.for_field(settings, item.entity_type, item.entity_field)
    if (item.meta or {}).get(watermark.METADATA_KEY) != watermark.fingerprint(mark):
        return True  # made with another mark, or none
    extra = {fmt for fmt, wanted in (("webp", settings.make_webp), ("avif", settings.make_avif)) if wanted}
    return {v.format for v in images} - BASE_FORMATS != extra


def count_items(database: Database, scope: Scope) -> int:
    with database.session() as session:
        return MediaRepository(session).count(scope)


def queue_stale(database: Database, settings: Settings, scope: Scope,
                progress: Callable[[int], None] | None = None) -> list[int]:
    """Queue a reprocess job per stale item; the ids of every reprocess job in scope still to run."""
    for page in _pages(database, scope):
        with database.session() as session:
            busy = busy_media_ids(session, [i.id for i in page], making=True)
            for item in page:
                if item.id not in busy and is_stale(item, settings):
                    enqueue(session, REPROCESS, media_id=item.id, max_attempts=settings.job_max_attempts)
        if progress:
            progress(len(page))
    with database.session() as session:
        return queued_ids(session, REPROCESS, scope)


def _pages(database: Database, scope: Scope) -> Iterator[list[MediaItem]]:
    """Items in id order, a page per transaction (keyset paging: flat memory, safe while rows change)."""
    last_id = 0
    while True:
        with database.session() as session:
            page = MediaRepository(session).page(last_id, PAGE, scope)
        if not page:
            return
        yield page
        last_id = page[-1].id
