"""Bulk actions: one request names many items and one action, and each item is decided on its own by
the method its single-item request calls, with the same permission checks. One item's error never
stops the others; the caller gets a result per item, in the order sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mediahub.errors import MediaHubError
from mediahub.media.access import Principal
from mediahub.media.manage import MediaService, MediaView
from mediahub.media.moderation import ModerationService

Action = Literal["approve", "reject", "delete", "tag", "set_primary"]


@dataclass(frozen=True)
class ItemOutcome:
    media_id: int
    view: MediaView | None = None  # the item as the action left it; None when deleted, or on an error
    error: MediaHubError | None = None


class BatchService:
    def __init__(self, media: MediaService, moderation: ModerationService) -> None:
        self.media = media
        self.moderation = moderation

    def run(self, action: Action, ids: list[int], principal: Principal, *, reason: str | None = None,
            tags: list[str] | None = None) -> list[ItemOutcome]:
        """Apply `action` to each id in turn: approve and reject as a moderator's decision (the moderation
        route's); delete, tag (`tags` added to the item's) and set_primary as an editor's change (PATCH's).
        Several items of one field made primary: the last one named is the primary."""
        if action == "delete":  # one purge of the stored objects after all of them, not one per item
            errors = self.media.delete_many(ids, principal)
            return [ItemOutcome(media_id, error=error) for media_id, error in zip(ids, errors, strict=True)]
        outcomes = []
        for media_id in ids:
            try:
                outcomes.append(ItemOutcome(media_id, view=self._one(action, media_id, principal, reason, tags)))
            except MediaHubError as exc:
                outcomes.append(ItemOutcome(media_id, error=exc))
        return outcomes

    def _one(self, action: Action, media_id: int, principal: Principal, reason: str | None,
             tags: list[str] | None) -> MediaView:
        if action in ("approve", "reject"):
            item = self.moderation.decide(media_id, principal, "approved" if action == "approve" else "rejected",
                                          reason if action == "reject" else None)
            return MediaView(item, private=True)  # a moderator's view, as the moderation route answers
        return self.media.update(media_id, principal, _changes(action, tags))


def _changes(action: Action, tags: list[str] | None) -> dict[str, Any]:
    if action == "tag":
        return {"add_tags": list(tags or [])}
    if action == "set_primary":
        return {"is_primary": True}
    raise ValueError(f"unknown batch action {action!r}")  # the API validates before this
