"""Render claims: which process is making a rendition on request, so that others wait for it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from mediahub.db.models import RenderClaim, utcnow


class RenderClaimRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, media_id: int, name: str, fmt: str, owner: str) -> bool:
        """Take the claim on (media_id, name, fmt) for `owner`: True when it is ours now.

        One insert that does nothing when the row exists (no savepoint: InnoDB may pick a claimant
        racing another's insert and delete as a deadlock victim and roll its whole transaction back).
        """
        values = {"media_id": media_id, "name": name, "format": fmt, "owner": owner, "claimed_at": utcnow()}
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            # psycopg reports no row count for an ORM session's insert (-1): the inserted row says it.
            statement = (postgresql.insert(RenderClaim).values(values).on_conflict_do_nothing()
                         .returning(RenderClaim.owner))
            return self.session.execute(statement).first() is not None
        statement = insert(RenderClaim).values(values).prefix_with("OR IGNORE" if dialect == "sqlite" else "IGNORE")
        return self.session.execute(statement).rowcount == 1

    def drop_stale(self, media_id: int, name: str, fmt: str, stale_after: timedelta) -> None:
        """Remove the claim when it is older than `stale_after`: its process died."""
        self.session.execute(delete(RenderClaim).where(
            RenderClaim.media_id == media_id, RenderClaim.name == name, RenderClaim.format == fmt,
            RenderClaim.claimed_at < utcnow() - stale_after))

    def held_since(self, media_id: int, name: str, fmt: str) -> datetime | None:
        return self.session.scalar(select(RenderClaim.claimed_at).where(
            RenderClaim.media_id == media_id, RenderClaim.name == name, RenderClaim.format == fmt))

    def release(self, media_id: int, name: str, fmt: str, owner: str) -> None:
        self.session.execute(delete(RenderClaim).where(
            RenderClaim.media_id == media_id, RenderClaim.name == name, RenderClaim.format == fmt,
            RenderClaim.owner == owner))
