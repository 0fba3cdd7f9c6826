"""Duplicate review: groups of duplicates for moderators to judge, and what they decide about them.

Groups, each named by a `GroupKey` (`kind:key`):

* exact - `pixels:<digest>`, items with the same upright display pixels (the same file, or the
  same picture in another file); `file:<digest>`, the same file among items without a pixel digest
  (videos; images not fingerprinted yet, until `mediahub backfill` gives them one and they join
  their pixel group). Listed by SQL in key order, a page of groups at a time
  (db/repositories/duplicates.py).
* near - `near:<id>`: item `id` and the newer items that look like it (perceptual, within
  DEDUP_THRESHOLD: dedup/policy.py `find_similar` with the process's dedup index), so each pair of
  near duplicates is shown once, in the group of its older member; an item with an older exact
  copy is left to that copy. Found by looking items up in id order, at most NEAR_SCAN per page:
  a page's work is bounded whatever the library's size, and a page may hold fewer groups than
  asked for (the next one continues the scan).

Decisions, for moderators and admins, each item deleted through `MediaService.delete_many` (its
permission checks: a moderator who may not delete an item is told so for that item):

* resolve - keep one member and delete the others named (only members of the group as it is now);
* keep all - the group is recorded as reviewed with the newest member the moderator saw, and is
  not listed again until a newer member joins it;
* resolve all exact - in every exact group not kept whole, keep its primaries (a primary is never
  deleted this way), else its oldest approved item, else its oldest, and delete the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from mediahub.db.models import AuditEvent, MediaItem
from mediahub.db.repositories import MediaRepository, MemberRepository
from mediahub.db.repositories.duplicates import EXACT_KINDS, DuplicateRepository, ExactKind
from mediahub.db.session import Database
from mediahub.dedup import policy as dedup
from mediahub.dedup.index import DedupIndex
from mediahub.errors import Conflict, InvalidInput, MediaHubError
from mediahub.media import access, audit
from mediahub.media.access import Principal
from mediahub.media.audit import Actor
from mediahub.media.manage import MediaService, MediaView

GroupKind = Literal["pixels", "file", "near"]
ListKind = Literal["exact", "near"]
GROUP_KINDS: tuple[GroupKind, ...] = ("pixels", "file", "near")
NEAR_SCAN = 200  # items looked up for near duplicates per page at most
# Members listed per group at most: a picture uploaded to a thousand listings is one group of a thousand. The
# others of those shown fit one resolve request (BATCH_IDS_MAX); the rest are listed once those are resolved.
MEMBERS_SHOWN = 50
MAX_ID = 2**63 - 1

_DIGEST = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class GroupKey:
    """What names a group: its kind and its digest (exact kinds) or the id it was found from (near)."""

    kind: GroupKind
    key: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"

    @classmethod
    def parse(cls, text: str, kinds: tuple[GroupKind, ...] = GROUP_KINDS) -> GroupKey:
        kind, _, key = text.partition(":")
        if kind in kinds and (_ID if kind == "near" else _DIGEST).fullmatch(key) and (
                kind != "near" or int(key) <= MAX_ID):
            return cls(kind, key)
        raise InvalidInput(f"not a duplicate group: expected {' or '.join(f'{k}:...' for k in kinds)}",
                           code="invalid_group")


@dataclass(frozen=True)
class Member:
    view: MediaView
    distance: int  # to the group's first member (0: an exact copy)
    can_delete: bool  # whether the caller may delete it (MediaService.delete's rule)


@dataclass(frozen=True)
class Group:
    key: GroupKey
    members: list[Member]  # at most MEMBERS_SHOWN of them (`shown`)
    keep: int  # the member resolving the whole group would keep first (`keepers`)
    size: int  # members in the group now


@dataclass(frozen=True)
class GroupPage:
    groups: list[Group]
    next: str | None  # `after` for the next page; None: the last page


@dataclass(frozen=True)
class Outcome:
    id: int
    error: MediaHubError | None  # None: deleted


@dataclass(frozen=True)
class Resolved:
    key: GroupKey
    kept: list[int]
    outcomes: list[Outcome]


def keepers(items: list[MediaItem]) -> list[MediaItem]:
    """What resolving a group without a choice keeps: its primaries; without one, its oldest approved
    item, else its oldest."""
    primaries = [item for item in items if item.is_primary]
    if primaries:
        return primaries
    oldest = sorted(items, key=lambda item: (item.created_at, item.id))
    return [next((item for item in oldest if item.moderation_status == "approved"), oldest[0])]


Pairs = list[tuple[MediaItem, int]]  # members and their distance to the first


def shown(pairs: Pairs, keep: int) -> Pairs:
    """At most MEMBERS_SHOWN members, in the group's order: always its first (the distances are to it), `keep`, and
    its newest (keep all marks the group reviewed up to the newest member seen); then the others in order."""
    if len(pairs) <= MEMBERS_SHOWN:
        return pairs
    wanted = {pairs[0][0].id, keep, max(item.id for item, _ in pairs)}
    others = MEMBERS_SHOWN - len(wanted)
    chosen = []
    for item, distance in pairs:
        if item.id not in wanted:
            if others == 0:
                continue
            others -= 1
        chosen.append((item, distance))
    return chosen
Found = tuple[list[tuple[GroupKey, Pairs]], str | None]  # groups' keys and members, and the next page's cursor


class DuplicateReview:
    def __init__(self, database: Database, media: MediaService, dedup_index: DedupIndex | None, *,
                 threshold: int) -> None:
        self.database = database
        self.media = media  # deletes go through its permission checks
        self.dedup_index = dedup_index  # None: near duplicates are found by scanning every row (slow)
        self.threshold = threshold  # DEDUP_THRESHOLD: the largest perceptual distance of a near duplicate

    # -------------------------------------------------------------- reading

    def groups(self, principal: Principal, kind: ListKind, after: str | None, limit: int) -> GroupPage:
        """One page of groups of `kind` (exact or near) after the cursor `after` (None: the first page)."""
        access.require_moderator(principal)
        with self.database.session() as session:
            found, cursor = (self._exact_page(session, after, limit) if kind == "exact"
                             else self._near_page(session, after, limit))
            members = MemberRepository(session)
            groups = [self._group(principal, key, pairs, members) for key, pairs in found]
        return GroupPage(groups, cursor)

    def summary(self, principal: Principal) -> tuple[int, int]:
        """(groups it would change, items it would delete) of resolving every exact group listed now."""
        access.require_moderator(principal)
        with self.database.session() as session:
            return DuplicateRepository(session).exact_summary()

    def _exact_page(self, session: Session, after: str | None, limit: int) -> Found:
        repo = DuplicateRepository(session)
        start = GroupKey.parse(after, EXACT_KINDS) if after is not None else None
        rows = []
        for position, kind in enumerate(EXACT_KINDS):  # every pixel group, then every file group
            if start is not None and position < EXACT_KINDS.index(start.kind):
                continue
            rows += repo.exact_groups(kind, start.key if start is not None and start.kind == kind else None,
                                      limit + 1 - len(rows))
            if len(rows) > limit:
                break
        cursor = str(GroupKey(rows[limit - 1].kind, rows[limit - 1].key)) if len(rows) > limit else None
        rows = rows[:limit]
        members: dict[ExactKind, dict[str, list[MediaItem]]] = {
            kind: repo.exact_members(kind, [row.key for row in rows if row.kind == kind]) for kind in EXACT_KINDS}
        found = [(GroupKey(row.kind, row.key), [(item, 0) for item in members[row.kind].get(row.key, [])])
                 for row in rows]
        return [(key, pairs) for key, pairs in found if len(pairs) > 1], cursor  # a member may be gone since

    def _near_page(self, session: Session, after: str | None, limit: int) -> Found:
        last = int(GroupKey.parse(after, ("near",)).key) if after is not None else 0
        items = MediaRepository(session).page(last, NEAR_SCAN + 1)  # one more: is there a next page?
        reviews = DuplicateRepository(session)
        # Copies of an older item are left to it: passed over before a look-up, which each copy of a picture
        # uploaded N times would have N matches for (N x N work for a page).
        copies = reviews.with_older_copy(items[:NEAR_SCAN])
        found: list[tuple[GroupKey, Pairs]] = []
        scanned = 0
        for item in items[:NEAR_SCAN]:
            scanned += 1
            pairs = None if item.id in copies else self._near_members(session, item)
            if pairs is None:
                continue
            key = GroupKey("near", str(item.id))
            if max(member.id for member, _ in pairs) > reviews.reviewed(key.kind, [key.key]).get(key.key, 0):
                found.append((key, pairs))
                if len(found) == limit:
                    break
        more = scanned < len(items)
        return found, str(GroupKey("near", str(items[scanned - 1].id))) if more else None

    def _near_members(self, session: Session, item: MediaItem) -> Pairs | None:
        """Near group `near:<item.id>`: the item and the newer items that look like it, each pair of
        exact copies shown by its older one; None when there are none, or when an older exact copy of the
        item stands for it."""
        if item.dedup_thumb is None:
            return None
        matches = dedup.find_similar(session, item, dedup.Scope.everywhere(), self.threshold, limit=None,
                                     index=self.dedup_index)
        if any(match.reason != "perceptual" and match.item.id < item.id for match in matches):
            return None
        near = [(match.item, match.distance) for match in matches
                if match.reason == "perceptual" and match.item.id > item.id]
        if near:  # a member's older exact copy stands for it (in this group, or in its own with this item)
            copies = DuplicateRepository(session).with_older_copy([member for member, _ in near])
            near = [(member, distance) for member, distance in near if member.id not in copies]
        return [(item, 0), *near] if near else None

    def _members_now(self, session: Session, key: GroupKey) -> list[MediaItem]:
        if key.kind == "near":
            anchor = MediaRepository(session).get(int(key.key))
            pairs = self._near_members(session, anchor) if anchor is not None else None
            return [item for item, _ in pairs or []]
        return DuplicateRepository(session).exact_members(key.kind, [key.key]).get(key.key, [])

    @staticmethod
    def _group(principal: Principal, key: GroupKey, pairs: Pairs, members: MemberRepository) -> Group:
        keep = keepers([item for item, _ in pairs])[0].id
        return Group(key, [Member(MediaView.for_caller(principal, item, members), distance,
                                  access.can_edit(principal, item, members)) for item, distance in shown(pairs, keep)],
                     keep, len(pairs))

    # -------------------------------------------------------------- deciding

    def resolve(self, principal: Principal, group: str, keep: int, delete: list[int]) -> Resolved:
        """Keep `keep` and delete the items of `delete` that are in the group now (the others fail with
        `not_in_group`). 409 `keep_not_in_group` when `keep` is not (any more): nothing is deleted."""
        access.require_moderator(principal)
        key = GroupKey.parse(group)
        delete = list(dict.fromkeys(delete))
        if keep in delete:
            raise InvalidInput("the item to keep is also among those to delete", code="keep_in_delete")
        with self.database.session() as session:
            members = {item.id for item in self._members_now(session, key)}
        if keep not in members:
            raise Conflict("the item to keep is not in this group (any more): reload the group",
                           code="keep_not_in_group")
        in_group = [media_id for media_id in delete if media_id in members]
        why = f"duplicate review: a duplicate of item {keep} (group {key})"
        errors = dict(zip(in_group, self.media.delete_many(in_group, principal, dict.fromkeys(in_group, why)),
                          strict=True))
        return Resolved(key, [keep], [Outcome(media_id, errors[media_id] if media_id in members else Conflict(
            "not in this group (any more)", code="not_in_group")) for media_id in delete])

    def keep_all(self, principal: Principal, group: str, seen: list[int]) -> int:
        """Mark the group reviewed up to the newest of the members `seen` that are in it now; that id."""
        access.require_moderator(principal)
        key = GroupKey.parse(group)
        with self.database.session() as session:
            members = {item.id for item in self._members_now(session, key)}
            up_to = max((media_id for media_id in seen if media_id in members), default=None)
            if up_to is None:
                raise Conflict("none of these items is in this group (any more): reload the group",
                               code="not_in_group")
            reviews = DuplicateRepository(session)
            before = reviews.reviewed(key.kind, [key.key]).get(key.key)
            review = reviews.keep_whole(key.kind, key.key, up_to, principal.sub)
            group = str(key)
            audit.record_event(session, Actor.of(principal), AuditEvent(
                action="duplicates.keep_all", after={"group": group, "up_to_id": review.up_to_id},
                before=None if before is None else {"group": group, "up_to_id": before}))
        return up_to

    def resolve_all_exact(self, principal: Principal, after: str | None,
                          limit: int) -> tuple[list[Resolved], str | None]:
        """Resolve the next `limit` exact groups after `after` by the `keepers` rule; the cursor of the rest."""
        access.require_moderator(principal)
        with self.database.session() as session:
            found, cursor = self._exact_page(session, after, limit)
        plan = []
        for key, pairs in found:
            items = [item for item, _ in pairs]
            kept = {item.id for item in keepers(items)}
            plan.append((key, sorted(kept), [item.id for item in items if item.id not in kept]))
        doomed = [media_id for _, _, ids in plan for media_id in ids]
        reasons = {media_id: f"duplicate review: resolved with every exact group, kept {kept} (group {key})"
                   for key, kept, ids in plan for media_id in ids}
        errors = dict(zip(doomed, self.media.delete_many(doomed, principal, reasons), strict=True))
        return [Resolved(key, kept, [Outcome(media_id, errors[media_id]) for media_id in ids])
                for key, kept, ids in plan], cursor
