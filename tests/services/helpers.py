"""Shared steps of the ingest tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from mediahub.db.models import MediaItem
from mediahub.entities import Target
from mediahub.pipeline.intake import iter_file
from mediahub.services.ingest import UploadRequest

CORPUS_GOOD = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "images" / "good"


def upload(runtime, path: Path, target: str = "property:P-1:gallery", **kwargs):
    entity_type, entity_id, field = target.split(":")
    request = UploadRequest(Target.parse(entity_type, entity_id, field), filename=path.name, **kwargs)
    with path.open("rb") as fh:
        return runtime.ingest.ingest(iter_file(fh, 64 * 1024), request)


def row_count(runtime) -> int:
    with runtime.database.session() as session:
        return session.scalar(select(func.count(MediaItem.id)))


def stored_keys(runtime) -> set[str]:
    return {info.key for info in runtime.storage.list()}
