"""Managing stored media: read, list, change, delete, reorder, usage.

Each method is one short transaction with the access rules applied inside it.
Deletes queue their objects in the same transaction and purge them after the
commit, so a storage failure never loses track of an object. Blocking: the API
calls these in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mediahub.db.models import AuditEvent, MediaItem, MediaTag
from mediahub.db.repositories import MediaRepository, MemberRepository, UsageRepository
from mediahub.db.repositories.media import GalleryKey
from mediahub.db.repositories.tags import TagRepository
from mediahub.db.session import Database
from mediahub.dedup import policy as dedup
from mediahub.dedup.index import DedupIndex
from mediahub.entities import Target, nested_kinds
from mediahub.errors import Conflict, Forbidden, InvalidInput, MediaHubError
from mediahub.media import access, audit, exposure, moderation
from mediahub.media.access import EntityRef, Principal
from mediahub.media.audit import Actor
from mediahub.media.cdn import DELETE, FOCAL, REJECT, CdnPurge
from mediahub.media.cursors import decode_cursor, encode_cursor
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.focal import set_focal_point
from mediahub.media.job_kinds import Dispatch, dispatch_committed
from mediahub.media.tagging import tag_filter
from mediahub.storage.base import Storage, Usage

EDITABLE_FIELDS = frozenset({"caption", "alt_text", "tags"})
TAGS_MAX = 50  # tags an item may carry
POSITION_LIMIT = 2**31  # MediaItem.position is an INTEGER
ID_LIMIT = 2**63  # MediaItem.id is a BIGINT


@dataclass(frozen=True)
class MediaView:
    """An item as one caller may see it (access.sees_private_details / sees_private_metadata decide):
    `private`: its uploader, original filename, camera and time; `location`: its GPS as well."""

    item: MediaItem
    private: bool
    location: bool = False
    machine_tags: tuple[MediaTag, ...] = ()  # what a classifier (and moderators) tagged it with, where loaded

    @classmethod
    def for_caller(cls, principal: Principal | None, item: MediaItem, members: access.Members,
                   machine_tags: tuple[MediaTag, ...] = ()) -> MediaView:
        location = access.sees_private_metadata(principal, item, members)
        # sees_private_details, without asking the member table a second time for each item.
        return cls(item, location or (principal is not None and principal.is_moderator), location, machine_tags)


@dataclass(frozen=True)
class ItemDetail:
    """An item as one caller sees it, whether they may change its text, focal point and primary, or delete it,
    and its newest audit events (None for those who may not read them: see audit.recent_history)."""

    view: MediaView
    may_edit: bool
    history: list[AuditEvent] | None


@dataclass(frozen=True)
class EntityPage:
    """One page of an entity's media: the items, how many match in all, and the cursor of the next page
    (None on the last one, and for listings with nested entities, which page by offset only)."""

    items: list[MediaView]
    total: int
    next: str | None


@dataclass(frozen=True)
class EntityRights:
    """What a caller may do with an entity's media, for a page to offer only that (the services decide
    each request again): upload, change and delete, reorder (`manage`); approve and reject (`moderate`)."""

    manage: bool
    moderate: bool


def page_cursor(item: MediaItem) -> str:
    """The opaque cursor of the page after `item`: its place in gallery order."""
    return encode_cursor([item.entity_field, item.position, item.id])


def _gallery_key(key: list[Any]) -> GalleryKey | None:
    if (len(key) == 3 and isinstance(key[0], str) and len(key[0]) <= 32
            and all(type(number) is int for number in key[1:])
            and -POSITION_LIMIT <= key[1] < POSITION_LIMIT and 0 <= key[2] < ID_LIMIT):
        return key[0], key[1], key[2]
    return None


def parse_cursor(cursor: str) -> GalleryKey:
    """A cursor `page_cursor` made; anything else is 422 `invalid_cursor`."""
    return decode_cursor(cursor, _gallery_key)


def _with_tags(tags: list[str] | None, added: list[str]) -> list[str]:
    merged = list(dict.fromkeys([*(tags or []), *added]))
    if len(merged) > TAGS_MAX:
        raise InvalidInput(f"an item carries at most {TAGS_MAX} tags", code="too_many_tags", limit=TAGS_MAX)
    return merged


@dataclass(frozen=True)
class StorageAnalytics:
    # column -> value -> {count, bytes of the originals, object_bytes: of the originals and their variants}
    by_group: dict[str, dict[str, dict[str, int]]]
    storage: Usage  # the objects the rows name, originals and variants, and their bytes


@dataclass
class _Tx:
    media: MediaRepository
    members: access.Members

    def view(self, principal: Principal | None, item: MediaItem) -> MediaView:
        return self.views(principal, [item])[0]

    def views(self, principal: Principal | None, items: list[MediaItem]) -> list[MediaView]:
        """The items as the caller sees them, with their machine tags (one query for them all)."""
        tags = TagRepository(self.media.session).of_items(item.id for item in items)
        return [MediaView.for_caller(principal, item, self.members, tuple(tags[item.id])) for item in items]


class MediaService:
    def __init__(self, database: Database, storage: Storage, cdn: CdnPurge, dedup_index: DedupIndex | None = None,
                 *, auto_approve_verified: bool = True, dispatch: Dispatch | None = None,
                 job_max_attempts: int = 5, machine_tag_min_score: float = 0.5) -> None:
        self.database = database
        self.storage = storage
        self.cdn = cdn
        self.dedup_index = dedup_index  # None: similar() scans the rows in scope
        self.auto_approve_verified = auto_approve_verified  # AUTO_APPROVE_VERIFIED: edits are judged like uploads
        self.dispatch = dispatch  # hands committed job ids to the runner; None: the sweeper finds them
        self.job_max_attempts = job_max_attempts
        self.machine_tag_min_score = machine_tag_min_score  # MACHINE_TAG_MIN_SCORE: for `tags` filters

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        with self.database.session() as session:
            yield _Tx(MediaRepository(session), access.RememberedMembers(MemberRepository(session)))

    def authorise_upload(self, principal: Principal, target: Target) -> None:
        """May the caller upload here, and is there room (a full gallery is refused before the body is read)?"""
        with self._tx() as tx:
            access.require_upload(principal, target, tx.members)
            if target.field.slot == "gallery":
                tx.media.require_room(target.kind.name, target.entity_id, target.field.name, target.field.max_items,
                                      target.parent_id)

    def view(self, principal: Principal | None, item: MediaItem) -> MediaView:
        """The caller's view of an item they just made (an upload)."""
        with self._tx() as tx:
            return tx.view(principal, item)

    def get(self, media_id: int, principal: Principal | None) -> MediaView:
        with self._tx() as tx:
            item = access.require_view(principal, tx.media.get(media_id), tx.members)
            return tx.view(principal, item)

    def detail(self, media_id: int, principal: Principal | None) -> ItemDetail:
        """`get`, whether `update` and `delete` would let the caller change the item (its status aside), and
        its history."""
        with self._tx() as tx:
            item = access.require_view(principal, tx.media.get(media_id), tx.members)
            return ItemDetail(tx.view(principal, item), access.can_edit(principal, item, tx.members),
                              audit.recent_history(tx.media.session, item, principal, tx.members))

    def get_public(self, public_id: str) -> MediaView:
        """Anonymous access by public id: approved items only, never their private metadata."""
        with self._tx() as tx:
            item = access.require_view(None, tx.media.get_by_public_id(public_id), tx.members)
            tags = TagRepository(tx.media.session).of_items([item.id])[item.id]
            return MediaView(item, private=False, machine_tags=tuple(tags))

    def list_entity(
        self,
        entity: EntityRef,
        principal: Principal | None,
        *,
        field: str | None,
        moderation_status: str | None,
        is_primary: bool | None,
        offset: int,
        limit: int,
        include_nested: bool = False,
        after: str | None = None,
        tags: list[str] | None = None,
    ) -> EntityPage:
        """`include_nested`: also the media of the entities nested in this one (a community's amenities).
        `after`: a page's `next` cursor, where the page after it starts (instead of an offset).
        `tags`: only items carrying every one of them (README "Auto-tagging": a tag typed, accepted, or
        suggested as the room with MACHINE_TAG_MIN_SCORE or more)."""
        if field is not None:
            field = entity.kind.field(field).name  # a route word names its field; unknown -> InvalidInput
        key = None
        if after is not None:
            key = parse_cursor(after)
            if include_nested:
                raise InvalidInput("a listing with nested entities pages by offset only", code="cursor_unsupported")
            if offset:
                raise InvalidInput("send a cursor or an offset, not both", code="cursor_with_offset")
            if field is not None and key[0] != field:
                raise InvalidInput("the cursor belongs to another field's listing", code="invalid_cursor")
        nested = tuple(kind.name for kind in nested_kinds(entity.kind)) if include_nested else ()
        with self._tx() as tx:
            sees_all = access.sees_all_of_entity(principal, entity, tx.members)
            items, total = tx.media.list_for_entity(
                entity.kind.name,
                entity.entity_id,
                field=field,
                moderation_status=moderation_status,
                is_primary=is_primary,
                statuses_visible=None if sees_all else {"approved"},
                visible_to_uploader=principal.sub if principal and not sees_all else None,
                offset=offset,
                limit=limit + 1,  # one more: whether a next page exists
                parent_id=entity.parent_id,
                nested_types=nested,
                after=key,
                having=tag_filter(tags, self.machine_tag_min_score),
            )
            more = len(items) > limit
            items = items[:limit]
            cursor = page_cursor(items[-1]) if more and not nested else None
            return EntityPage(tx.views(principal, items), total, cursor)

    def rights(self, entity: EntityRef, principal: Principal | None) -> EntityRights:
        """What the caller may do with the entity's media (the rules of `access`, as the services apply them)."""
        with self._tx() as tx:
            return EntityRights(manage=access.manages(principal, entity, tx.members),
                                moderate=access.moderates(principal))

    def similar(self, media_id: int, principal: Principal | None, *, scope: str, threshold: int,
                limit: int) -> list[tuple[MediaView, int]]:
        """Items that look like this one, closest first, among those the caller may see.

        Scope "global" (the default of the route) is where duplicates across entities show
        up: the upload policy only refuses duplicates within the uploader's own scope.
        """
        with self._tx() as tx:
            item = access.require_view(principal, tx.media.get(media_id), tx.members)
            if scope == "uploader" and not access.sees_private_details(principal, item, tx.members):
                # The scope itself would tell a stranger which items share an uploader.
                raise Forbidden("the uploader scope is for those who may see who uploaded the item",
                                code="scope_forbidden")
            where = dedup.Scope.of(scope, entity_type=item.entity_type, entity_id=item.entity_id,
                                   uploaded_by=item.uploaded_by, parent_id=item.parent_id or None)
            # Every match is read and filtered before the page is cut: a short page must not
            # betray that something the caller may not see is closer.
            matches = dedup.similar_items(tx.media.session, item.id, threshold=threshold, limit=None, scope=where,
                                          index=self.dedup_index)
            visible = [(match, distance) for match, distance in matches
                       if access.can_view(principal, match, tx.members)][:limit]
            return list(zip(tx.views(principal, [match for match, _ in visible]),
                            [distance for _, distance in visible], strict=True))

    def update(self, media_id: int, principal: Principal, changes: dict[str, Any]) -> MediaView:
        """Apply the sent fields; moderation status needs a moderator, the rest an editor.
        `add_tags`: tags added to the item's own (which `tags` replaces)."""
        job_ids: list[int] = []
        purges: list[int] = []
        actor = Actor.of(principal)
        with exposure.following_status(self.storage) as sync, self._tx() as tx:
            session = tx.media.session
            item = access.require_view(principal, tx.media.lock(media_id), tx.members)
            if "moderation_status" in changes:
                access.require_moderator(principal)
            if changes.keys() - {"moderation_status"}:
                access.require_edit(principal, item, tx.members)
            if "add_tags" in changes:
                changes = {**changes, "tags": _with_tags(item.tags, changes["add_tags"])}
            with audit.recording(session, actor, "media.update", item):
                edited = [name for name in EDITABLE_FIELDS & changes.keys()
                          if getattr(item, name) != changes[name]]
                for name in edited:
                    setattr(item, name, changes[name])
                if edited and item.moderation_status == "approved" and "moderation_status" not in changes and not (
                        access.starts_approved(principal, principal.verified,
                                               auto_approve_verified=self.auto_approve_verified)):
                    # New public text from someone whose uploads a moderator checks is checked the same way.
                    purges += self.cdn.queue(session, item, REJECT)
                    moderation.apply_status(item, "pending", "edited: awaiting moderation")
                    sync(item)
                if "focal_point" in changes:
                    point = changes["focal_point"]
                    job_ids = set_focal_point(session, item, point["x"], point["y"],
                                              max_attempts=self.job_max_attempts)
                    if job_ids:  # it moved: the same URLs (a focal point names none) now show other crops
                        purges += self.cdn.queue(session, item, FOCAL)
            if "moderation_status" in changes:
                purges += moderation.decide(session, item, changes["moderation_status"],
                                            changes.get("moderation_reason"), self.cdn, actor)
                sync(item)
            if "is_primary" in changes:
                with (audit.recording(session, actor, "media.primary", item),
                      audit.recording_primaries(session, actor, tx.media, item)):
                    self._set_primary(tx.media, item, changes["is_primary"])
            view = tx.view(principal, item)
        # An approval removes what the item replaces; a new focal point, the item's transform results.
        if "moderation_status" in changes or job_ids:
            purge_pending_deletes(self.database, self.storage)
        dispatch_committed(self.dispatch, job_ids)
        self.cdn.send(purges)
        return view

    @staticmethod
    def _set_primary(repo: MediaRepository, item: MediaItem, primary: bool) -> None:
        if primary:
            repo.set_primary(item)
        elif moderation.is_single_slot(item):
            raise Conflict("the item of a single-slot field is always its primary", code="single_slot_primary")
        else:
            repo.clear_primary(item)

    def delete(self, media_id: int, principal: Principal) -> None:
        with self._tx() as tx:
            purges = self._delete(tx, media_id, principal, None)
        purge_pending_deletes(self.database, self.storage)
        self.cdn.send(purges)

    def delete_many(self, ids: list[int], principal: Principal,
                    reasons: Mapping[int, str] | None = None) -> list[MediaHubError | None]:
        """Delete each id in its own transaction; the result per id is None (deleted) or its error.
        `reasons`: why each id is deleted, for the audit trail."""
        results: list[MediaHubError | None] = []
        purges: list[int] = []
        for media_id in ids:
            try:
                with self._tx() as tx:
                    queued = self._delete(tx, media_id, principal, (reasons or {}).get(media_id))
                purges += queued
                results.append(None)
            except MediaHubError as exc:
                results.append(exc)
        purge_pending_deletes(self.database, self.storage)
        self.cdn.send(purges)
        return results

    def _delete(self, tx: _Tx, media_id: int, principal: Principal, reason: str | None) -> list[int]:
        """Delete the item in `tx`, recorded as the caller's; the CDN purges to send after the commit."""
        item = access.require_edit(principal, tx.media.get(media_id), tx.members)
        purges = self.cdn.queue(tx.media.session, item, DELETE)
        audit.record_deleted(tx.media.session, Actor.of(principal), item, reason)
        tx.media.delete(item)
        return purges

    def reorder(self, entity: EntityRef, field: str, ids: list[int], principal: Principal, *,
                partial: bool = False) -> list[MediaView]:
        """The field's items in the order of `ids` (the primary first); `partial`: `ids` names some of
        them, put in this order in the places they hold now (see MediaRepository.reorder)."""
        field = entity.kind.field(field).name
        with self._tx() as tx:
            access.require_entity_edit(principal, entity, tx.members)
            rows = tx.media.lock_field(entity.kind.name, entity.entity_id, field, entity.parent_id)
            places = {row.id: row.position for row in rows}
            items = tx.media.reorder(entity.kind.name, entity.entity_id, field, ids, entity.parent_id,
                                     partial=partial)
            audit.record_order(tx.media.session, Actor.of(principal), entity, field, places,
                               {row.id: row.position for row in rows})
            return tx.views(principal, items)

    def storage_analytics(self, principal: Principal) -> StorageAnalytics:
        """From the totals kept with every change (`media_usage`): a read of a few rows, whatever the
        library's size; what the store itself holds beyond them is `mediahub verify`'s business."""
        access.require_moderator(principal)
        with self._tx() as tx:
            totals = UsageRepository(tx.media.session).totals()
        groups = {column: {value: {"count": amounts.items, "bytes": amounts.bytes, "object_bytes": amounts.object_bytes}
                           for value, amounts in values.items()}
                  for column, values in totals.groups.items()}
        return StorageAnalytics(groups, Usage(objects=totals.objects, bytes=totals.object_bytes))

