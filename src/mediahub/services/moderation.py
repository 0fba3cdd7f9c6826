"""The moderation workflow: the queue, status decisions, and flags raised by users."""

from __future__ import annotations

from mediahub.db.models import MediaItem
from mediahub.db.repositories import MediaRepository, MemberRepository
from mediahub.db.session import Database
from mediahub.jobs.item_status import lock_item
from mediahub.services import access, exposure
from mediahub.services.access import Principal
from mediahub.storage.base import Storage

STATUSES = ("pending", "approved", "rejected", "flagged")
REASON_MAX = 500  # MediaItem.moderation_reason is String(500)


def apply_status(item: MediaItem, status: str, reason: str | None) -> None:
    """Record a decision; the reason always belongs to the latest decision, so None clears it."""
    if status not in STATUSES:
        raise ValueError(f"unknown moderation status {status!r}")  # the API validates before this
    item.moderation_status = status
    item.moderation_reason = reason[:REASON_MAX] if reason else None


class ModerationService:
    def __init__(self, database: Database, storage: Storage) -> None:
        self.database = database
        self.storage = storage

    def queue(self, principal: Principal, offset: int, limit: int) -> list[MediaItem]:
        """Pending and flagged items, oldest first (moderators never see GPS: not theirs)."""
        access.require_moderator(principal)
        with self.database.session() as session:
            return MediaRepository(session).moderation_queue(offset, limit)

    def decide(self, media_id: int, principal: Principal, status: str, reason: str | None) -> MediaItem:
        with exposure.following_status(self.storage) as sync, self.database.session() as session:
            lock_item(session, media_id)
            members = MemberRepository(session)
            item = access.require_view(principal, MediaRepository(session).get(media_id), members)
            access.require_moderator(principal)
            apply_status(item, status, reason)
            sync(item)
            return item

    def flag(self, media_id: int, principal: Principal, reason: str | None) -> MediaItem:
        """Any signed-in caller who can see an item may flag it for a moderator."""
        with exposure.following_status(self.storage) as sync, self.database.session() as session:
            lock_item(session, media_id)
            members = MemberRepository(session)
            item = access.require_view(principal, MediaRepository(session).get(media_id), members)
            apply_status(item, "flagged", reason)
            sync(item)
            return item
