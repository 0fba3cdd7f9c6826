"""The audit trail as the services write and read it: who acts, what of an item an event shows, who may read it.

Every service that changes moderation, reports, members, primaries, order, text, uploads or duplicate reviews
records its events here, in the transaction of its change (`record`): a change that rolls back takes its
events with it, and no event names a change that did not commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session

from mediahub.db.models import NO_PARENT, AuditEvent, MediaItem
from mediahub.db.repositories import ACTIONS, SYSTEM, AuditFilter, AuditRepository, MediaRepository, MemberRepository
from mediahub.db.repositories.audit import EventKey, changed, item_event
from mediahub.db.session import Database
from mediahub.entities import check_entity_id, get_kind
from mediahub.errors import Forbidden, InvalidInput, NotFound
from mediahub.media import access
from mediahub.media.access import Principal
from mediahub.media.cursors import decode_cursor, encode_cursor
from mediahub.pipeline.focal import FOCAL_POINT

# The request an event was recorded in (the API sets it per request, api/middleware.py); None elsewhere.
request_id: ContextVar[str | None] = ContextVar("mediahub_request_id", default=None)

# What an item's events show of it, before and after the change (of these, only what changed).
ITEM_FIELDS = ("moderation_status", "moderation_reason", "is_primary", "claims_primary", "position", "alt_text",
               "caption", "tags", "focal_point")
PRIMARY_FIELDS = ("is_primary", "claims_primary", "position")  # what an item losing its field's primary shows
# What its creation and deletion show besides: where it is, what it is, who uploaded it.
RECORD_FIELDS = ("entity_field", "media_type", "content_type", "byte_size", "uploaded_by")
HISTORY_SHOWN = 20  # an item's newest events in its detail
PAGE_MAX = 100  # events per page of a listing
MOMENTS = (1970, 9998)  # the years a time filter may name: MariaDB's DATETIME ends with 9999
EXPIRE_BATCH = 1000  # events deleted per transaction by the retention sweep
EXPIRE_BATCHES = 20  # transactions per sweep at most
REPORT_ACTIONS = frozenset({"report.create"})  # their actor (the reporter) is the moderators' business only


@dataclass(frozen=True)
class Actor:
    """Who an event names: a principal's subject and their highest role, or the system, or the CLI."""

    name: str
    role: str | None

    @classmethod
    def of(cls, principal: Principal | None) -> Actor:
        """The caller; None is the operator at the CLI (the services' convention for a caller-less change)."""
        if principal is None:
            return OPERATOR
        return cls(principal.sub, access.ADMIN if principal.is_admin
                   else access.MODERATOR if principal.is_moderator else "user")


SYSTEM_ACTOR = Actor(SYSTEM, SYSTEM)
OPERATOR = Actor("mediahub-cli", "operator")  # commands run on the host (`mediahub ingest`, `mediahub grant`)


def snapshot(item: MediaItem, fields: tuple[str, ...] = ITEM_FIELDS) -> dict[str, Any]:
    """The item's audited fields as they are now (copies: later changes to the item leave it alone)."""
    values = {name: getattr(item, name) for name in fields if name != "focal_point"}
    if "tags" in values:
        values["tags"] = list(values["tags"] or [])
    if "focal_point" in fields:
        values["focal_point"] = (item.meta or {}).get(FOCAL_POINT)
    return values


def record(session: Session, actor: Actor, action: str, item: MediaItem, before: dict[str, Any] | None, *,
           reason: str | None = None, after: dict[str, Any] | None = None) -> None:
    """Record `action` on `item` in the caller's transaction. `before`: a `snapshot` taken before the change
    (None: the item is new); the item's fields now are compared with it, or `after` when given."""
    if after is None:
        after = snapshot(item, tuple(before) if before else ITEM_FIELDS)
    AuditRepository(session).record(item_event(item, action, actor=actor.name, actor_role=actor.role,
                                               before=before, after=after, reason=reason,
                                               request_id=request_id.get()))


def record_created(session: Session, actor: Actor, item: MediaItem) -> None:
    record(session, actor, "media.create", item, None, after=snapshot(item, ITEM_FIELDS + RECORD_FIELDS))


def record_deleted(session: Session, actor: Actor, item: MediaItem, reason: str | None) -> None:
    """Before the row goes: the event keeps what it was."""
    AuditRepository(session).record(item_event(item, "media.delete", actor=actor.name, actor_role=actor.role,
                                               before=snapshot(item, ITEM_FIELDS + RECORD_FIELDS), after=None,
                                               reason=reason, request_id=request_id.get()))


def record_event(session: Session, actor: Actor, event: AuditEvent) -> None:
    """An event about something other than one item (an entity's members or order, a duplicate group)."""
    event.actor, event.actor_role, event.request_id = actor.name, actor.role, request_id.get()
    AuditRepository(session).record(event)


def record_order(session: Session, actor: Actor, entity: access.EntityRef, field: str, before: dict[int, int],
                 after: dict[int, int]) -> None:
    """A field's new order: the positions of the items that moved, as they were and as they are (none moved:
    nothing is recorded)."""
    was, now = changed({str(k): v for k, v in before.items()}, {str(k): v for k, v in after.items()})
    if now:
        record_event(session, actor, AuditEvent(
            action="media.order", entity_type=entity.kind.name, entity_id=entity.entity_id,
            parent_id=entity.parent_id or NO_PARENT, before={"field": field, "positions": was},
            after={"field": field, "positions": now}))


@contextmanager
def recording(session: Session, actor: Actor, action: str, item: MediaItem, *,
              reason: str | None = None) -> Iterator[None]:
    """Record `action` if the block changed any of the item's audited fields (nothing, if it changed none)."""
    before = snapshot(item)
    yield
    if snapshot(item) != before:
        record(session, actor, action, item, before, reason=reason)


@contextmanager
def recording_primaries(session: Session, actor: Actor, repo: MediaRepository, item: MediaItem) -> Iterator[None]:
    """Record `media.primary` for each other item of `item`'s field whose primary (or claim) the block took: a
    new primary demotes the old one by one UPDATE, which no event of `item` shows."""
    others = [row for row in repo.lock_field(item.entity_type, item.entity_id, item.entity_field, item.parent_id)
              if row is not item]
    before = {row.id: snapshot(row, PRIMARY_FIELDS) for row in others}
    yield
    for row in others:
        was = before[row.id]
        if (row.is_primary, row.claims_primary) != (was["is_primary"], was["claims_primary"]):
            record(session, actor, "media.primary", row, was)


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Trail:
    """A page of events, newest first, and the cursor of the next page (None: the last page)."""

    events: list[AuditEvent]
    next: str | None


def event_cursor(event: AuditEvent) -> str:
    return encode_cursor([event.occurred_at.isoformat(), event.id])


def parse_event_cursor(cursor: str) -> EventKey:
    """A cursor `event_cursor` made; anything else is 422 `invalid_cursor`."""
    def valid(key: list[Any]) -> EventKey | None:
        if len(key) != 2 or not isinstance(key[0], str) or type(key[1]) is not int or not 0 < key[1] < 2**63:
            return None
        try:
            moment = datetime.fromisoformat(key[0])
        except ValueError:
            return None
        utc = _in_utc(moment)
        return (utc, key[1]) if utc is not None else None
    return decode_cursor(cursor, valid)


def hide_reporters(event: AuditEvent, principal: Principal | None) -> AuditEvent:
    """The event as `principal` may read it: who reported an item, and why, is for moderators only (the request
    id too, which the reporter's client may have chosen and reused elsewhere)."""
    if event.action in REPORT_ACTIONS and not access.moderates(principal):
        return AuditEvent(**{**{c.key: getattr(event, c.key) for c in AuditEvent.__table__.columns},
                             "actor": None, "actor_role": None, "reason": None, "request_id": None})
    return event


def audit_filter(*, actor: str | None = None, actions: list[str] | None = None, media: str | None = None,
                 entity_type: str | None = None, entity_id: str | None = None, parent_id: str | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> AuditFilter:
    """A listing's filter from a request's words; a value no event could match is 422 with its own code."""
    unknown = sorted(set(actions or ()) - ACTIONS.keys())
    if unknown:
        raise InvalidInput(f"unknown action {unknown[0][:40]!r}", code="unknown_action", allowed=sorted(ACTIONS))
    kind = None
    if entity_type is not None:
        try:
            kind = get_kind(entity_type)
        except NotFound as exc:
            raise InvalidInput(exc.message, code="unknown_entity_type") from None
    elif entity_id is not None or parent_id is not None:
        raise InvalidInput("an entity id or parent id needs its entity_type", code="entity_type_required")
    if kind is not None and kind.parent is None and parent_id is not None:
        raise InvalidInput(f"entity type {kind.name!r} has no parent entity", code="unexpected_parent")
    return AuditFilter(
        actor=actor, actions=tuple(dict.fromkeys(actions or ())), media_public_id=media,
        entity_type=kind.name if kind else None,
        entity_id=check_entity_id(entity_id) if entity_id is not None else None,
        parent_id=check_entity_id(parent_id) if parent_id is not None else None,
        since=_moment(since, "since"), until=_moment(until, "until"))


def _moment(value: datetime | None, name: str) -> datetime | None:
    """`value` in UTC; 422 `invalid_time` without a UTC offset, or outside the years every database stores."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput(f"`{name}` needs a UTC offset (Z or +hh:mm)", code="invalid_time")
    moment = _in_utc(value)
    if moment is None:
        raise InvalidInput(f"`{name}` must fall in the years {MOMENTS[0]}-{MOMENTS[1]}", code="invalid_time")
    return moment


def _in_utc(value: datetime) -> datetime | None:
    """An aware `value` in UTC; None when it has no offset or falls outside MOMENTS (a database would refuse
    it, MariaDB's driver with an error)."""
    if value.tzinfo is None:
        return None
    try:
        moment = value.astimezone(timezone.utc)
    except OverflowError:
        return None
    return moment if MOMENTS[0] <= moment.year <= MOMENTS[1] else None


class AuditService:
    def __init__(self, database: Database) -> None:
        self.database = database

    def trail(self, principal: Principal, where: AuditFilter, after: str | None, limit: int) -> Trail:
        """The whole trail, filtered: admins only."""
        access.require_admin(principal)
        key = parse_event_cursor(after) if after is not None else None
        if where.since is not None and where.until is not None and where.since >= where.until:
            raise InvalidInput("`since` must be before `until`", code="invalid_time_range")
        with self.database.session() as session:
            return _page(AuditRepository(session).page(where, key, min(limit, PAGE_MAX) + 1), limit)

    def history(self, media_id: int, principal: Principal | None, after: str | None, limit: int) -> Trail:
        """An item's events, newest first: for those who may see its private details (the uploader, the
        entity's owners, moderators); anyone else who may see the item is 403, anyone who may not, 404."""
        key = parse_event_cursor(after) if after is not None else None
        with self.database.session() as session:
            members = MemberRepository(session)
            item = access.require_view(principal, MediaRepository(session).get(media_id), members)
            if not access.sees_private_details(principal, item, members):
                raise Forbidden("an item's history is for its uploader, its entity's owners and moderators",
                                       code="history_forbidden")
            events = AuditRepository(session).page(AuditFilter(media_public_id=item.public_id), key, limit + 1)
            page = _page(events, limit)
        return Trail([hide_reporters(event, principal) for event in page.events], page.next)


def recent_history(session: Session, item: MediaItem, principal: Principal | None,
                   members: access.Members) -> list[AuditEvent] | None:
    """The item's HISTORY_SHOWN newest events, for its detail; None when the caller may not read them."""
    if not access.sees_private_details(principal, item, members):
        return None
    events = AuditRepository(session).page(AuditFilter(media_public_id=item.public_id), None, HISTORY_SHOWN)
    return [hide_reporters(event, principal) for event in events]


def expire(database: Database, before: datetime, *, batch: int = EXPIRE_BATCH,
           batches: int = EXPIRE_BATCHES) -> int:
    """Delete events older than `before`, `batch` per transaction and at most `batches` transactions (the rest
    waits for the next call): no delete holds locks for long, however much the trail has to lose. How many went."""
    removed = 0
    for _ in range(batches):
        with database.session() as session:
            count = AuditRepository(session).delete_before(before, batch)
        removed += count
        if count < batch:
            break
    return removed


def _page(events: list[AuditEvent], limit: int) -> Trail:
    more = len(events) > limit
    events = events[:limit]
    return Trail(events, event_cursor(events[-1]) if more else None)
