"""The kinds of background job, which of them an upload needs, and handing committed ones to the runner."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mediahub.config import Settings

log = logging.getLogger(__name__)
Dispatch = Callable[[list[int]], None]  # hands committed job ids to whatever runs them

RENDITIONS = "renditions"  # WebP (and AVIF) variants of an item's sizes
VARIANTS = "variants"  # every variant of an image whose upload left them to a job (WebP and AVIF too)
VIDEO_TRANSCODE = "video_transcode"  # the H.264/AAC "web" MP4
REPROCESS = "reprocess"  # every variant again from the stored original (IMAGE_SIZES or the focal point changed)
CDN_PURGE = "cdn_purge"  # one call of the CDN's purge hook for a URL (or prefix) a change made stale (media/cdn.py)
MODERATION_CHECK = "moderation_check"  # MODERATION_CHECKS over the stored original, then their decision (media/checks.py)
TAGGING = "tagging"  # an image's machine tags from the process's classifier (media/tagging.py); not part of its making

WEB = "web"  # the variant name of a video's transcoded MP4


def upload_jobs(settings: Settings, media_kind: str, variants_deferred: bool = False) -> list[str]:
    """The jobs that finish an upload after its row is committed (none: the item is ready at once). The
    moderation checks first: the item waits for their decision, not for its renditions."""
    kinds = [MODERATION_CHECK] if settings.moderation_checks else []
    if variants_deferred:
        return [*kinds, VARIANTS]
    kinds += [RENDITIONS] if settings.make_webp or settings.make_avif else []
    if media_kind == "video" and settings.video_transcode:
        kinds.append(VIDEO_TRANSCODE)
    return kinds


def dispatch_committed(dispatch: Dispatch | None, job_ids: list[int]) -> None:
    """Hand committed jobs to the runner; when that fails (or there is none), the sweeper sends them later."""
    if not job_ids or dispatch is None:
        return
    try:
        dispatch(job_ids)
    except Exception:  # the change is committed; the sweeper re-sends what never arrived
        log.warning("could not dispatch jobs %s; the sweeper will", job_ids, exc_info=True)
