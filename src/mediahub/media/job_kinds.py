"""The kinds of background job, and which of them an upload needs."""

from __future__ import annotations

from mediahub.config import Settings

RENDITIONS = "renditions"  # WebP (and AVIF) variants of an item's sizes
VARIANTS = "variants"  # every variant of an image whose upload left them to a job (WebP and AVIF too)
VIDEO_TRANSCODE = "video_transcode"  # the H.264/AAC "web" MP4
REPROCESS = "reprocess"  # every variant again from the stored original (after IMAGE_SIZES changed)

WEB = "web"  # the variant name of a video's transcoded MP4


def upload_jobs(settings: Settings, media_kind: str, variants_deferred: bool = False) -> list[str]:
    """The jobs that finish an upload after its row is committed (none: the item is ready at once)."""
    if variants_deferred:
        return [VARIANTS]
    kinds = [RENDITIONS] if settings.make_webp or settings.make_avif else []
    if media_kind == "video" and settings.video_transcode:
        kinds.append(VIDEO_TRANSCODE)
    return kinds
