"""Shared steps of the job tests."""

from __future__ import annotations

from sqlalchemy import select

from mediahub.db.models import Job, MediaItem
from mediahub.entities import Target
from mediahub.media.ingest import UploadRequest
from mediahub.pipeline.intake import iter_file
from tests.support.corpus import CORPUS_DIR

PHOTO = CORPUS_DIR / "images/good/jpeg_hopper.jpg"


def ingest_only(runtime, path=PHOTO, target=("property", "P-1", "gallery")) -> MediaItem:
    """Ingest without waiting for the jobs: the item as the upload committed it."""
    with path.open("rb") as fh:
        return runtime.ingest.ingest(iter_file(fh), UploadRequest(Target.parse(*target)))


def jobs_of(runtime, media_id: int) -> list[Job]:
    with runtime.database.session() as session:
        return list(session.scalars(select(Job).where(Job.media_id == media_id).order_by(Job.id)))
