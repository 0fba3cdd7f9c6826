"""Setting an item's focal point by hand, and what depends on it.

Crops (the square thumbnail and avatar presets, `fit=cover` transforms) are centred
on the focal point, so changing it re-renders the crop presets (the reprocess job,
which keeps it) and drops the item's stored transform results, whose objects are
queued for deletion in the same transaction; the next request renders them again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mediahub.db.models import TRANSFORM, MediaItem, PendingDelete
from mediahub.db.repositories import VariantRepository
from mediahub.db.repositories.job_queue import enqueue, settle_item
from mediahub.media.job_kinds import REPROCESS
from mediahub.pipeline.focal import FOCAL_POINT, MANUAL_SOURCE, FocalPoint


def set_focal_point(session: Session, item: MediaItem, x: float, y: float, *, max_attempts: int) -> list[int]:
    """Record (x, y) (fractions of the upright picture) as the item's manual focal point, in the caller's
    transaction, which holds the item's lock and has checked that the caller may edit it.

    Returns the ids of the jobs to dispatch once the transaction has committed. An unchanged
    point changes nothing.
    """
    point = FocalPoint(x, y, MANUAL_SOURCE)
    if FocalPoint.of_metadata(item.meta) == point:
        return []
    item.meta = {**(item.meta or {}), FOCAL_POINT: point.as_dict()}
    unused = VariantRepository(session).remove_kind(item.id, TRANSFORM)
    session.add_all(PendingDelete(storage_key=key) for key in unused)
    job = enqueue(session, REPROCESS, media_id=item.id, max_attempts=max_attempts)
    settle_item(session, item.id)  # `pending` and the processing status show the re-render
    return [job.id]
