"""Render claims: which process is making a rendition on request, so that others wait for it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mediahub.db.models import RenderClaim, utcnow


class RenderClaimRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, media_id: int, name: str, fmt: str, owner: str, stale_after: timedelta) -> bool:
        """Take the claim on (media_id, name, fmt) for `owner`: True when it is ours now.

        A claim older than `stale_after` was left by a process that died, and is taken over.
        """
        now = utcnow()
        self.session.execute(delete(RenderClaim).where(
            RenderClaim.media_id == media_id, RenderClaim.name == name, RenderClaim.format == fmt,
            RenderClaim.claimed_at < now - stale_after))
        try:
            with self.session.begin_nested():
                self.session.add(RenderClaim(media_id=media_id, name=name, format=fmt, owner=owner, claimed_at=now))
        except IntegrityError:
            return False
        return True

    def held_since(self, media_id: int, name: str, fmt: str) -> datetime | None:
        return self.session.scalar(select(RenderClaim.claimed_at).where(
            RenderClaim.media_id == media_id, RenderClaim.name == name, RenderClaim.format == fmt))

    def release(self, media_id: int, name: str, fmt: str, owner: str) -> None:
        self.session.execute(delete(RenderClaim).where(
            RenderClaim.media_id == media_id, RenderClaim.name == name, RenderClaim.format == fmt,
            RenderClaim.owner == owner))
