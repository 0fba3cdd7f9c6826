"""An item's `processing_status`, derived from its jobs: queued -> processing -> ready | failed."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mediahub.db.models import Job, MediaItem


def derive_status(jobs: list[tuple[str, str]]) -> str:
    """From (kind, status) pairs oldest first.

    Unfinished work wins; otherwise the newest job of each kind decides, so a
    later successful reprocess clears an earlier failure of the same kind.
    """
    statuses = {status for _, status in jobs}
    if "processing" in statuses:
        return "processing"
    if "queued" in statuses:
        return "queued"
    newest = {kind: status for kind, status in jobs}
    return "failed" if "failed" in newest.values() else "ready"


def lock_item(session: Session, media_id: int) -> None:
    """Hold the item's row until commit, on every database.

    A no-op UPDATE: PostgreSQL and MariaDB lock the row, SQLite takes its write
    lock (SELECT ... FOR UPDATE does nothing there). Reads that follow see every
    committed change, and no one else changes the row before this commit.
    """
    session.execute(update(MediaItem).where(MediaItem.id == media_id).values(id=MediaItem.id))


def settle_item(session: Session, media_id: int | None) -> None:
    """Write the status the item's jobs give it, in the caller's transaction.

    The row is locked first: two jobs of one item finishing at once must not
    each read the other as unfinished.
    """
    if media_id is None:
        return
    lock_item(session, media_id)
    jobs = session.execute(select(Job.kind, Job.status).where(Job.media_id == media_id).order_by(Job.id)).all()
    session.execute(
        update(MediaItem)
        .where(MediaItem.id == media_id)
        .values(processing_status=derive_status([(kind, status) for kind, status in jobs]))
    )
