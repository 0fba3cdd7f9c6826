"""Shared steps of the ingest tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from mediahub.db.models import MediaItem
from mediahub.entities import Target
from mediahub.media.ingest import UploadRequest
from mediahub.pipeline.intake import iter_file


def upload(runtime, path: Path, target: str = "property:P-1:gallery", **kwargs):
    """Ingest a file and, as the CLI does, wait for its jobs: the item as finished (WebP included)."""
    entity_type, entity_id, field = target.split(":")
    request = UploadRequest(Target.parse(entity_type, entity_id, field), filename=path.name, **kwargs)
    with path.open("rb") as fh:
        item = runtime.ingest.ingest(iter_file(fh, 64 * 1024), request)
    assert runtime.wait_for_jobs([item.id], timeout=120), "the item's jobs did not finish"
    return reload(runtime, item)


def reload(runtime, item: MediaItem) -> MediaItem:
    """The row as committed now (None when it is gone)."""
    with runtime.database.session() as session:
        return session.get(MediaItem, item.id)


def row_count(runtime) -> int:
    with runtime.database.session() as session:
        return session.scalar(select(func.count(MediaItem.id)))


def stored_keys(runtime) -> set[str]:
    return {info.key for info in runtime.storage.list()}
