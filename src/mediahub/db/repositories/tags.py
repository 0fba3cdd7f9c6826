"""Machine tags and moderators' rooms (`media_tags`): an item's tags, a tagging job's replacement of its
suggestions, the review, the filter by tag, and the decided rows for the export."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, cast, exists, false, func, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, aliased

from mediahub.db.models import ACCEPTED, MACHINE, MODERATOR, REJECTED, SUGGESTED, MediaItem, MediaTag, utcnow
from mediahub.db.repositories.media import lock_item

ROOM, OBJECT = "room", "object"
UNKNOWN_ROOM = "unknown"  # a room row saying the classifier does not know: never a tag a filter matches
DECIDED = (ACCEPTED, REJECTED)


@dataclass(frozen=True)
class NewTag:
    """A machine tag as a tagging job writes it."""

    kind: str
    label: str
    score: float
    model: str


@dataclass(frozen=True)
class TagFilter:
    """Items carrying every one of `labels`; what carries a label is `carries` (the README's "Filtering by tag")."""

    labels: tuple[str, ...]
    min_score: float  # MACHINE_TAG_MIN_SCORE: a suggested room counts from this score on

    def conditions(self, dialect: str) -> list[ColumnElement[bool]]:
        return [carries(label, self.min_score, dialect) for label in dict.fromkeys(self.labels)]


def _user_tag(label: str, dialect: str) -> ColumnElement[bool]:
    """`label` is one of the item's own tags (the JSON list people typed), exactly as typed."""
    if dialect == "postgresql":
        return cast(MediaItem.tags, JSONB).contains([label])
    if dialect in {"mysql", "mariadb"}:
        return func.json_contains(MediaItem.tags, json.dumps(label)) == 1
    values = func.json_each(MediaItem.tags).table_valued("value")
    return exists(select(values.c.value).where(values.c.value == label))


def carries(label: str, min_score: float, dialect: str) -> ColumnElement[bool]:
    """Whether an item carries `label`: one of its own tags, or a row of `media_tags` that is accepted (a
    moderator's room, a machine tag a moderator accepted), or a suggested machine room at `min_score` or above
    while the item's room is not settled (no accepted room) and no moderator rejected that room for it.
    The machine's `unknown` room is no tag."""
    tag = aliased(MediaTag)
    settled = aliased(MediaTag)
    room_settled = exists(select(settled.id).where(
        settled.media_id == tag.media_id, settled.kind == ROOM,
        or_(settled.state == ACCEPTED, and_(settled.state == REJECTED, settled.label == label))))
    counted = or_(tag.state == ACCEPTED, and_(
        tag.state == SUGGESTED, tag.source == MACHINE, tag.kind == ROOM, tag.score >= min_score, ~room_settled))
    machine = exists(select(tag.id).where(tag.media_id == MediaItem.id, tag.label == label, counted))
    return or_(_user_tag(label, dialect), machine if label != UNKNOWN_ROOM else false())


class TagRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def of_items(self, media_ids: Iterable[int]) -> dict[int, list[MediaTag]]:
        """The tags of these items (one query): each item's rooms first (a moderator's before the machine's), then
        by score, highest first."""
        ids = list(dict.fromkeys(media_ids))
        found: dict[int, list[MediaTag]] = {media_id: [] for media_id in ids}
        if not ids:
            return found
        rows = self.session.scalars(select(MediaTag).where(MediaTag.media_id.in_(ids)).order_by(
            MediaTag.media_id, MediaTag.kind.desc(), MediaTag.source.desc(), MediaTag.score.desc(), MediaTag.id))
        for row in rows:
            found[row.media_id].append(row)
        return found

    def get(self, tag_id: int) -> MediaTag | None:
        return self.session.get(MediaTag, tag_id)

    def lock_of_item(self, media_id: int) -> list[MediaTag]:
        """The item's tags as they are now, its row locked until commit (every writer of its tags locks it)."""
        lock_item(self.session, media_id)
        return list(self.session.scalars(select(MediaTag).where(MediaTag.media_id == media_id)
                                         .order_by(MediaTag.id).execution_options(populate_existing=True)))

    def replace_machine(self, media_id: int, tags: Sequence[NewTag]) -> bool:
        """The item's machine opinion becomes `tags`: its suggested machine rows (of any model: the newest opinion
        replaces undecided older ones) that `tags` no longer has are deleted and the new ones inserted, but a
        decided row stays as it is, and a tag equal to a row (same model, kind and label) is that row (a suggested
        one takes the new score): a re-run that says the same keeps the ids a moderator may be reviewing. False
        (nothing written) when the item is gone. The rows go one by one (as ORM deletes): a few per item, and
        each is seen as the system's change."""
        rows = self.lock_of_item(media_id)
        if self.session.scalar(select(MediaItem.id).where(MediaItem.id == media_id)) is None:
            return False
        fresh = {(tag.model, tag.kind, tag.label): tag for tag in tags}  # one row per model, kind and label
        kept = {(row.model, row.kind, row.label): row for row in rows if row.source == MACHINE}
        for key, row in kept.items():
            if row.state != SUGGESTED:
                continue
            if key in fresh:
                row.score = fresh[key].score
            else:
                self.session.delete(row)
        self.session.flush()
        self.session.add_all(
            MediaTag(media_id=media_id, kind=tag.kind, label=tag.label, score=tag.score, source=MACHINE,
                     model=tag.model, state=SUGGESTED)
            for key, tag in fresh.items() if key not in kept)
        self.session.flush()
        return True

    def add_moderator_room(self, media_id: int, label: str, decided_by: str) -> MediaTag:
        row = MediaTag(media_id=media_id, kind=ROOM, label=label, score=None, source=MODERATOR, model="",
                       state=ACCEPTED, decided_by=decided_by, decided_at=utcnow())
        self.session.add(row)
        self.session.flush()
        return row

    def images_in_fields(self, fields: Sequence[tuple[str, str]], after_id: int, limit: int) -> list[int]:
        """The next `limit` ids after `after_id` (id order: keyset paging) of images in these (entity type, field)."""
        in_fields = or_(*(and_(MediaItem.entity_type == kind, MediaItem.entity_field == field)
                          for kind, field in fields))
        return list(self.session.scalars(select(MediaItem.id).where(
            MediaItem.id > after_id, MediaItem.media_type == "image", in_fields).order_by(MediaItem.id).limit(limit)))

    def tagged_by(self, media_ids: Iterable[int], model: str) -> set[int]:
        """Which of these items have machine tags from `model` (a seek of uq_media_tag each)."""
        ids = list(media_ids)
        if not ids:
            return set()
        return set(self.session.scalars(select(MediaTag.media_id).where(
            MediaTag.media_id.in_(ids), MediaTag.source == MACHINE, MediaTag.model == model).distinct()))

    def decided_page(self, state: str, after_id: int, limit: int) -> list[tuple[MediaTag, str, str]]:
        """The next `limit` rows in `state` after `after_id` (id order, from ix_media_tags_state), each with its
        item's public id and SHA-256."""
        rows = self.session.execute(
            select(MediaTag, MediaItem.public_id, MediaItem.sha256).join(MediaItem, MediaItem.id == MediaTag.media_id)
            .where(MediaTag.state == state, MediaTag.id > after_id).order_by(MediaTag.id).limit(limit))
        return [(tag, public_id, sha256) for tag, public_id, sha256 in rows]

    def moderator_rooms(self, media_ids: Iterable[int]) -> dict[int, MediaTag]:
        ids = list(media_ids)
        if not ids:
            return {}
        return {row.media_id: row for row in self.session.scalars(select(MediaTag).where(
            MediaTag.media_id.in_(ids), MediaTag.source == MODERATOR, MediaTag.kind == ROOM))}

    def rejected_machine_rooms(self, media_ids: Iterable[int]) -> set[int]:
        ids = list(media_ids)
        if not ids:
            return set()
        return set(self.session.scalars(select(MediaTag.media_id).where(
            MediaTag.media_id.in_(ids), MediaTag.source == MACHINE, MediaTag.kind == ROOM,
            MediaTag.state == REJECTED)))

    def delete(self, row: MediaTag) -> None:
        self.session.delete(row)
        self.session.flush()
