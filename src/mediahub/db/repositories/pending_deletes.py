"""The queue of stored objects still to delete."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mediahub.db.models import PendingDelete

LAST_ERROR_MAX = 500  # PendingDelete.last_error is String(500); PostgreSQL refuses longer


class PendingDeleteRepository:
    """The queue of stored objects still to delete."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def due(self, limit: int) -> list[PendingDelete]:
        """The next objects to try, fewest attempts first so a stuck key cannot starve the rest.

        Rows another worker holds are skipped (SKIP LOCKED on PostgreSQL and MariaDB).
        """
        query = (
            select(PendingDelete)
            .order_by(PendingDelete.attempts, PendingDelete.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(query))

    def done(self, ids: list[int]) -> None:
        if ids:
            self.session.execute(delete(PendingDelete).where(PendingDelete.id.in_(ids)))

    def failed(self, pending_id: int, error: str) -> None:
        self.session.execute(
            update(PendingDelete)
            .where(PendingDelete.id == pending_id)
            .values(attempts=PendingDelete.attempts + 1, last_error=error[:LAST_ERROR_MAX])
        )
