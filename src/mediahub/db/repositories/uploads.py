"""Uploads in progress (and recently finished): the rows of resumable and direct uploads.

Every change to an upload that a request makes while others may race it is a
compare-and-set on the lease: only the holder of `lease_token` (taken when free or
run out) records bytes or an outcome, so two requests never both advance one upload.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from mediahub.db.models import Upload, utcnow

RECEIVING, DONE, FAILED = "receiving", "done", "failed"


class UploadRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, upload: Upload) -> Upload:
        self.session.add(upload)
        self.session.flush()
        return upload

    def get(self, public_id: str) -> Upload | None:
        return self.session.scalar(select(Upload).where(Upload.public_id == public_id))

    def count_open(self, created_by: str, now: datetime | None = None) -> int:
        """The creator's uploads still receiving bytes and not expired."""
        return self.session.scalar(
            select(func.count()).select_from(Upload)
            .where(Upload.created_by == created_by, Upload.state == RECEIVING, Upload.expires_at > (now or utcnow()))
        ) or 0

    def untargeted_partial_bytes(self, created_by: str, now: datetime | None = None) -> int:
        """The declared bytes of the creator's tus partial uploads that name no target, unjoined and not expired."""
        total = self.session.scalar(
            select(func.coalesce(func.sum(Upload.length), 0))
            .where(Upload.created_by == created_by, Upload.concat == "partial", Upload.entity_type.is_(None),
                   Upload.state == RECEIVING, Upload.expires_at > (now or utcnow()))
        )
        return int(total or 0)  # a SUM is a Decimal on PostgreSQL and MariaDB

    def take_lease(self, public_id: str, token: str, until: datetime, now: datetime | None = None) -> bool:
        """Hold the upload until `until` when nobody does or the holder's lease ran out."""
        now = now or utcnow()
        free = or_(Upload.lease_token.is_(None), Upload.lease_until < now)
        result = self.session.execute(
            update(Upload).where(Upload.public_id == public_id, free).values(lease_token=token, lease_until=until)
        )
        return result.rowcount == 1

    def renew_lease(self, public_id: str, token: str, until: datetime) -> bool:
        """Extend the lease `token` holds, even one that ran out, as long as no other request has taken it."""
        result = self.session.execute(
            update(Upload).where(Upload.public_id == public_id, Upload.lease_token == token).values(lease_until=until)
        )
        return result.rowcount == 1

    def release_lease(self, public_id: str, token: str) -> None:
        self.session.execute(
            update(Upload).where(Upload.public_id == public_id, Upload.lease_token == token)
            .values(lease_token=None, lease_until=None)
        )

    def record(self, public_id: str, token: str, offset: int, staging: dict[str, Any],
               length: int | None = None) -> bool:
        """The persisted bytes (and a deferred length once declared), by the lease holder only."""
        values: dict[str, Any] = {"offset": offset, "staging": staging}
        if length is not None:
            values["length"] = length
        result = self.session.execute(
            update(Upload).where(Upload.public_id == public_id, Upload.lease_token == token,
                                 Upload.state == RECEIVING).values(**values)
        )
        return result.rowcount == 1

    def finish(self, public_id: str, token: str, *, media_id: int | None = None,
               outcome: dict[str, Any] | None = None) -> bool:
        """The outcome, by the lease holder only: done with the item's id, or failed with the problem."""
        result = self.session.execute(
            update(Upload).where(Upload.public_id == public_id, Upload.lease_token == token,
                                 Upload.state == RECEIVING)
            .values(state=DONE if media_id is not None else FAILED, media_id=media_id, outcome=outcome,
                    lease_token=None, lease_until=None)
        )
        return result.rowcount == 1

    def join(self, part_ids: Sequence[str], final_id: str) -> None:
        """Partial uploads joined into a final one: done, naming it (a repeated final request finds it)."""
        self.session.execute(
            update(Upload).where(Upload.public_id.in_(part_ids))
            .values(state=DONE, outcome={"joined_into": final_id}, lease_token=None, lease_until=None)
        )

    def expired(self, now: datetime, limit: int) -> list[Upload]:
        """Uploads past their expiry that nobody holds, oldest first; rows another sweeper holds are skipped."""
        query = (
            select(Upload)
            .where(Upload.expires_at < now, or_(Upload.lease_token.is_(None), Upload.lease_until < now))
            .order_by(Upload.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(query))

    def expired_keys(self, before: datetime) -> list[str]:
        """The staged keys of uploads that expired before `before`, in key order: what sweeping has left."""
        return list(self.session.scalars(
            select(Upload.storage_key).where(Upload.expires_at < before).order_by(Upload.storage_key)))

    def remove(self, ids: Sequence[int]) -> None:
        if ids:
            self.session.execute(delete(Upload).where(Upload.id.in_(ids)))

    def storage_keys(self, prefix: str) -> set[str]:
        """The staged keys under `prefix` of the uploads still receiving bytes (to tell their staged bytes from
        strays: a finished upload's are removed when it finishes)."""
        return set(self.session.scalars(select(Upload.storage_key).where(Upload.storage_key.startswith(prefix),
                                                                         Upload.state == RECEIVING)))
