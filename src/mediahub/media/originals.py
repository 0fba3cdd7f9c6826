"""Running the upload pipeline again over a stored object (jobs, fingerprint backfill)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mediahub.errors import UnsupportedType
from mediahub.pipeline.image import ImageOptions, ProcessedImage, process_image
from mediahub.pipeline.intake import Spooled, spool
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.video import ProcessedVideo, VideoOptions, process_video
from mediahub.storage.base import Storage


@contextmanager
def stored_on_disk(storage: Storage, key: str, limit: int, temp_dir: Path | None) -> Iterator[Spooled]:
    """The object streamed to a temp file (the decoders and PyAV want a path), removed afterwards.

    More than `limit` bytes: TooLarge.
    """
    spooled = spool(storage.open_range(key), limit, temp_dir)
    try:
        yield spooled
    finally:
        spooled.discard()


def process_stored(storage: Storage, key: str, limit: int, temp_dir: Path | None, images: ImageOptions,
                   videos: VideoOptions | None = None) -> ProcessedImage | ProcessedVideo:
    """The pipeline's outputs for a stored object; a video without `videos` is UnsupportedType."""
    with stored_on_disk(storage, key, limit, temp_dir) as spooled:
        sniffed = sniff(spooled.head())
        if sniffed.media_kind == "image":
            return process_image(spooled.path, sniffed, images)
        if videos is None:
            raise UnsupportedType(f"{key} holds a {sniffed.media_kind}, not an image")
        return process_video(spooled.path, sniffed, videos)
