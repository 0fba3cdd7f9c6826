"""The audit trail: events written in the transaction of the change they record, read newest first.

Recording is one call in the writer's own transaction, so a rollback takes the event with the change:

    AuditRepository(session).record(item_event(item, "storage.move", actor=SYSTEM, actor_role=SYSTEM,
                                               before={"storage_type": "local"}, after={"storage_type": "s3"}))

`item_event` names the item and its entity and keeps only the fields that differ between `before` and
`after`; `AuditEvent(...)` built by hand (an entity's event, say) is recorded the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, or_, select, tuple_, union_all
from sqlalchemy.orm import Session

from mediahub.db.models import NO_PARENT, AuditEvent, MediaItem

# Every action the trail records, with what it means: the one list the writers, the API's filter and the
# README's table follow.
ACTIONS: dict[str, str] = {
    "media.create": "an upload stored an item",
    "media.update": "an item's alt text, caption, tags or focal point changed",
    "media.delete": "an item was deleted: by hand, in a batch, by duplicate review, or replaced in its slot",
    "media.approve": "a moderator approved an item, or the system did once its automated checks passed",
    "media.reject": "a moderator rejected an item",
    "media.flag": "an item was flagged: by a moderator, hidden by its users' reports, or by its automated checks",
    "media.requeue": "an item went back to the moderation queue (pending)",
    "media.primary": "an item became its field's primary, or stopped being it",
    "media.order": "the items of an entity's field were put in a new order",
    "report.create": "a user reported an item",
    "report.dismiss": "a moderator closed an item's open reports as unfounded",
    "report.close": "a moderator's decision closed an item's open reports",
    "member.grant": "someone became an entity's owner or editor, or changed role",
    "member.revoke": "someone stopped being an entity's member",
    "duplicates.keep_all": "a moderator kept a whole group of duplicates",
    "storage.move": "an item's objects moved to another store",
    "tags.accept": "a moderator accepted a machine tag of an item",
    "tags.reject": "a moderator rejected a machine tag of an item",
    "tags.correct": "a moderator named an item's room (the machine's other rooms rejected)",
}
SYSTEM = "system"  # the actor of changes no person asked for (reports hiding an item), and its role
REASON_MAX = 500  # AuditEvent.reason is String(500)
EventKey = tuple[datetime, int]  # (occurred_at, id) of the last event of a page: where the next one starts


def changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields whose values differ, as they were and as they are (a field missing on one side is None)."""
    names = [name for name in dict.fromkeys([*before, *after]) if before.get(name) != after.get(name)]
    return {name: before.get(name) for name in names}, {name: after.get(name) for name in names}


def item_event(item: MediaItem, action: str, *, actor: str, actor_role: str | None,
               before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
               reason: str | None = None, request_id: str | None = None) -> AuditEvent:
    """An event about `item`: its ids and entity, and of `before` and `after` only the fields that changed.
    `before` None: the item is new (`after` is kept whole); `after` None: it is gone (`before` is kept whole)."""
    if before is None or after is None:
        was = {name: value for name, value in (before or {}).items() if value is not None}
        now = {name: value for name, value in (after or {}).items() if value is not None}
    else:
        was, now = changed(before, after)
    return AuditEvent(action=action, actor=actor, actor_role=actor_role, media_id=item.id,
                      media_public_id=item.public_id, entity_type=item.entity_type,
                      parent_id=item.parent_id or NO_PARENT, entity_id=item.entity_id,
                      reason=reason, before=was or None, after=now or None, request_id=request_id)


@dataclass(frozen=True)
class AuditFilter:
    """What a listing keeps: each given condition must hold (`actions`: any of them)."""

    actor: str | None = None
    actions: tuple[str, ...] = ()
    media_public_id: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    parent_id: str | None = None  # NO_PARENT: top-level entities only
    since: datetime | None = None  # occurred at or after
    until: datetime | None = None  # occurred before

    def conditions(self) -> list[ColumnElement[bool]]:
        """Every condition but the actions (a listing of several actions reads each on its own)."""
        wanted: list[tuple[Any, Any]] = [
            (AuditEvent.actor, self.actor), (AuditEvent.media_public_id, self.media_public_id),
            (AuditEvent.entity_type, self.entity_type), (AuditEvent.entity_id, self.entity_id),
            (AuditEvent.parent_id, self.parent_id)]
        conditions = [column == value for column, value in wanted if value is not None]
        if self.since is not None:
            conditions.append(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            conditions.append(AuditEvent.occurred_at < self.until)
        return conditions


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, event: AuditEvent) -> AuditEvent:
        """Add `event` to the caller's transaction (it commits or rolls back with the change)."""
        if event.action not in ACTIONS:
            raise ValueError(f"unknown audit action {event.action!r}")  # a programming error
        if event.reason is not None:
            event.reason = event.reason[:REASON_MAX]
        self.session.add(event)
        self.session.flush()
        return event

    def page(self, where: AuditFilter, after: EventKey | None, limit: int) -> list[AuditEvent]:
        """At most `limit` events that match, newest first, after the event `after` names (None: from the newest).

        Each action of several is read from its own range of ix_audit_action, `limit` at most, and the
        ranges merged: a page costs `limit` rows per action, however many events are older."""
        if len(where.actions) <= 1:
            actions = [AuditEvent.action == where.actions[0]] if where.actions else []
            query = self._newest(select(AuditEvent), [*where.conditions(), *actions], after, limit)
            return list(self.session.scalars(query))
        parts = [self._newest(select(AuditEvent.occurred_at, AuditEvent.id),
                              [*where.conditions(), AuditEvent.action == action], after, limit).subquery()
                 for action in dict.fromkeys(where.actions)]
        merged = union_all(*(select(part.c.occurred_at, part.c.id) for part in parts)).subquery()
        query = (select(AuditEvent).join(merged, merged.c.id == AuditEvent.id)
                 .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(limit))
        return list(self.session.scalars(query))

    def delete_before(self, cutoff: datetime, limit: int) -> int:
        """Delete at most `limit` of the oldest events that occurred before `cutoff`; how many went."""
        doomed = list(self.session.scalars(
            select(AuditEvent.id).where(AuditEvent.occurred_at < cutoff)
            .order_by(AuditEvent.occurred_at, AuditEvent.id).limit(limit)))
        if doomed:
            self.session.execute(delete(AuditEvent).where(AuditEvent.id.in_(doomed)))
        return len(doomed)

    def _newest(self, query: Select[Any], conditions: list[ColumnElement[bool]], after: EventKey | None,
                limit: int) -> Select[Any]:
        """`query` with `conditions`, newest first from after `after`, `limit` rows.

        PostgreSQL and SQLite read a row-value comparison as a range of the index; MariaDB reads the
        nested OR as one (see db/repositories/media.py `_gallery_page`)."""
        if after is not None:
            occurred_at, event_id = after
            if self.session.get_bind().dialect.name in {"mysql", "mariadb"}:
                conditions = [*conditions, or_(AuditEvent.occurred_at < occurred_at, and_(
                    AuditEvent.occurred_at == occurred_at, AuditEvent.id < event_id))]
            else:
                newest = tuple_(AuditEvent.occurred_at, AuditEvent.id)
                conditions = [*conditions, newest < tuple_(occurred_at, event_id)]
        return query.where(*conditions).order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(limit)
