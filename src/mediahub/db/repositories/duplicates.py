"""Duplicate review: the exact duplicate groups, their members, and the groups kept whole.

An exact group is the rows sharing a digest, in one of two kinds that split the rows between them:

* `pixels` - rows with a pixel digest (`pixel_sha256`: the same upright display pixels, whatever the file);
* `file` - rows without one (videos; images not fingerprinted yet) sharing their file digest (`sha256`).

Both are read from `ix_media_pixel_sha256` (pixel_sha256, sha256, id) in key order, a page of groups
at a time (keyset), with their newest id: a group kept whole (`duplicate_reviews`) is left out until a
member newer than the reviewer saw joins it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mediahub.db.models import KeptDuplicateGroup, MediaItem, utcnow

ExactKind = Literal["pixels", "file"]
EXACT_KINDS: tuple[ExactKind, ...] = ("pixels", "file")
IN_LIST = 500  # keys of one IN list


@dataclass(frozen=True)
class ExactGroupRow:
    kind: ExactKind
    key: str  # the digest the members share
    count: int
    newest_id: int


def _exact(kind: ExactKind) -> tuple[Any, list[ColumnElement[bool]]]:
    """The digest column a kind groups by, and the rows it takes."""
    if kind == "pixels":
        return MediaItem.pixel_sha256, [MediaItem.pixel_sha256.is_not(None)]
    return MediaItem.sha256, [MediaItem.pixel_sha256.is_(None)]


def _shown(kind: ExactKind, column: Any) -> list[ColumnElement[bool]]:
    """HAVING conditions of a group worth showing: two members or more, and one newer than a review saw."""
    reviewed_up_to = (select(KeptDuplicateGroup.up_to_id)
                      .where(KeptDuplicateGroup.kind == kind, KeptDuplicateGroup.group_key == column)
                      .scalar_subquery())
    return [func.count() > 1, func.max(MediaItem.id) > func.coalesce(reviewed_up_to, 0)]


class DuplicateRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def exact_groups(self, kind: ExactKind, after: str | None, limit: int) -> list[ExactGroupRow]:
        """The next `limit` groups of `kind` with a key above `after` (None: from the first), in key order,
        without those kept whole."""
        column, conditions = _exact(kind)
        if after is not None:
            conditions.append(column > after)
        query = (select(column, func.count(), func.max(MediaItem.id)).where(*conditions).group_by(column)
                 .having(*_shown(kind, column)).order_by(column).limit(limit))
        return [ExactGroupRow(kind, key, count, newest) for key, count, newest in self.session.execute(query)]

    def exact_members(self, kind: ExactKind, keys: Sequence[str]) -> dict[str, list[MediaItem]]:
        """The rows of each group (by key), oldest first; keys without rows are left out."""
        column, conditions = _exact(kind)
        found: dict[str, list[MediaItem]] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), IN_LIST):
            query = (select(MediaItem).where(column.in_(unique[start:start + IN_LIST]), *conditions)
                     .order_by(MediaItem.created_at, MediaItem.id))
            for item in self.session.scalars(query):
                found.setdefault(item.pixel_sha256 if kind == "pixels" else item.sha256, []).append(item)
        return found

    def with_older_copy(self, items: Sequence[MediaItem]) -> set[int]:
        """The ids of those of `items` that have an exact copy (a member of their exact group) with a lower id."""
        found: set[int] = set()
        for kind in EXACT_KINDS:
            column, conditions = _exact(kind)
            mine = [item for item in items if (item.pixel_sha256 is not None) == (kind == "pixels")]
            oldest: dict[str, int] = {}
            keys = sorted({item.pixel_sha256 if kind == "pixels" else item.sha256 for item in mine})
            for start in range(0, len(keys), IN_LIST):
                query = (select(column, func.min(MediaItem.id))
                         .where(column.in_(keys[start:start + IN_LIST]), *conditions).group_by(column))
                oldest.update({key: first for key, first in self.session.execute(query)})
            found.update(item.id for item in mine
                         if oldest.get(item.pixel_sha256 if kind == "pixels" else item.sha256, item.id) < item.id)
        return found

    def exact_summary(self) -> tuple[int, int]:
        """(groups, rows) that resolving every exact group shown would change and remove: each group keeps
        its primaries, or one member when it has none (a group of primaries only is left as it is).

        The groups come from the index alone; only their members' rows are read for their primaries."""
        groups = removed = 0
        for kind in EXACT_KINDS:
            column, conditions = _exact(kind)
            listed = (select(column.label("key"), func.count().label("members")).where(*conditions)
                      .group_by(column).having(*_shown(kind, column)).subquery())
            primaries = (select(func.count()).select_from(MediaItem)
                         .where(column == listed.c.key, MediaItem.is_primary == true(), *conditions)
                         .scalar_subquery())
            counted = select(listed.c.members, primaries.label("primaries")).subquery()
            removed_here = counted.c.members - case((counted.c.primaries > 1, counted.c.primaries), else_=1)
            count, rows = self.session.execute(select(func.sum(case((removed_here > 0, 1), else_=0)),
                                                      func.sum(removed_here))).one()
            groups += int(count or 0)
            removed += int(rows or 0)
        return groups, removed

    def reviewed(self, kind: str, keys: Sequence[str]) -> dict[str, int]:
        """Of these groups of `kind`, those kept whole: key -> the newest member the reviewer saw."""
        unique = sorted(set(keys))
        found: dict[str, int] = {}
        for start in range(0, len(unique), IN_LIST):
            query = select(KeptDuplicateGroup.group_key, KeptDuplicateGroup.up_to_id).where(
                KeptDuplicateGroup.kind == kind, KeptDuplicateGroup.group_key.in_(unique[start:start + IN_LIST]))
            found.update({key: up_to for key, up_to in self.session.execute(query)})
        return found

    def keep_whole(self, kind: str, key: str, up_to_id: int, reviewed_by: str) -> KeptDuplicateGroup:
        """Record that `reviewed_by` kept the group whole, having seen its members up to `up_to_id`
        (a later review that saw less lowers nothing)."""
        review = self.session.get(KeptDuplicateGroup, (kind, key), with_for_update=True)
        if review is None:
            review = KeptDuplicateGroup(kind=kind, group_key=key, up_to_id=up_to_id, reviewed_by=reviewed_by)
            try:
                with self.session.begin_nested():
                    self.session.add(review)
                return review
            except IntegrityError:  # another moderator's review of the group committed meanwhile
                review = self.session.get(KeptDuplicateGroup, (kind, key), with_for_update=True, populate_existing=True)
                if review is None:
                    raise
        review.up_to_id = max(review.up_to_id, up_to_id)
        review.reviewed_by = reviewed_by
        review.reviewed_at = utcnow()
        self.session.flush()
        return review
