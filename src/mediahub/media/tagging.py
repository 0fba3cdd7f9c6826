"""Machine tags as the product uses them: which uploads get a tagging job, recording a tagger's answer, the
moderators' review (accept, reject, correct the room), the backfill of a library and the export of the decisions.

The classifier itself is the pipeline's (`pipeline/tagging.py`: a `Tagger`); what it says is kept in `media_tags`
apart from the tags people typed (`MediaItem.tags`, never written here). A tagging job replaces the item's
undecided machine rows; a row a moderator decided stays, so the decisions can be exported as labels.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mediahub.db.models import ACCEPTED, MACHINE, MODERATOR, REJECTED, MediaItem, MediaTag, utcnow
from mediahub.db.repositories import AuditRepository, MediaRepository, MemberRepository, item_event
from mediahub.db.repositories.job_queue import busy_media_ids, enqueue
from mediahub.db.repositories.tags import OBJECT, ROOM, NewTag, TagFilter, TagRepository
from mediahub.db.session import Database
from mediahub.entities import KINDS, FieldSpec, get_kind
from mediahub.errors import Conflict, InvalidInput, NotFound
from mediahub.media import access, audit
from mediahub.media.access import Principal
from mediahub.media.audit import Actor
from mediahub.media.job_kinds import TAGGING
from mediahub.media.responsive import whole_presets
from mediahub.pipeline.scene import room_model
from mediahub.pipeline.tagging import MachineTag

LABEL_MAX, MODEL_MAX = 64, 128  # MediaTag.label and .model
TAG_FILTERS_MAX = 10  # tags one listing filters by: each is a subquery of the page's and the count's query
TAGGER_MIN_SIDE = 224  # the input side of the classifiers a tagger runs
BACKFILL_PAGE = 500  # items examined per transaction (and jobs queued per batch at most)
EXPORT_PAGE = 500
EXPORT_FORMATS = ("jsonl", "csv")
EXPORT_FIELDS = ("media_public_id", "sha256", "kind", "label", "decision", "machine_label", "machine_score", "model",
                 "decided_by", "decided_at")
# The room-tagged fields (entities.py `room_tags`), as (entity type, field name).
TAGGED_FIELDS = tuple((kind.name, spec.name) for kind in KINDS for spec in kind.fields if spec.room_tags)


def wants_tags(field: FieldSpec, media_kind: str) -> bool:
    """An upload to `field` gets a tagging job (when the process has a tagger): the images of listing photos."""
    return field.room_tags and media_kind == "image"


def queue_tagging(session: Session, media_id: int, max_attempts: int) -> int:
    """A tagging job for the item in the caller's transaction; not part of making it (its status ignores it)."""
    return enqueue(session, TAGGING, media_id=media_id, max_attempts=max_attempts, settles_item=False).id


def queue_tagging_of(session: Session, item: MediaItem, max_attempts: int) -> list[int]:
    """The tagging job of an item whose variants were just made, when its field wants tags (see `wants_tags`)."""
    field = get_kind(item.entity_type).field(item.entity_field)
    return [queue_tagging(session, item.id, max_attempts)] if wants_tags(field, item.media_type) else []


def tagging_source(item: MediaItem) -> str:
    """The key a tagger reads: the smallest whole-picture rendition whose short side is TAGGER_MIN_SIDE or more
    (a classifier looks at 224 px: a larger decode is wasted), else the original."""
    fit = [v for v in whole_presets(item) if min(v.width, v.height) >= TAGGER_MIN_SIDE]
    smallest = min(fit, key=lambda v: (v.width * v.height, v.byte_size), default=None)
    return smallest.storage_key if smallest is not None else item.original_key


def tag_filter(labels: list[str] | None, min_score: float) -> TagFilter | None:
    """The filter of a listing by these tags, bounded here for every caller (the list API, the library's form
    that splits one field at commas): more tags, or longer ones than any tag, are refused before a query."""
    if not labels:
        return None
    wanted = tuple(dict.fromkeys(labels))
    if len(wanted) > TAG_FILTERS_MAX or not all(0 < len(label) <= LABEL_MAX for label in wanted):
        raise InvalidInput(f"filter by 1 to {TAG_FILTERS_MAX} tags of 1 to {LABEL_MAX} characters",
                           code="bad_tag_filter", limit=TAG_FILTERS_MAX)
    return TagFilter(wanted, min_score)


def _checked(tag: MachineTag) -> NewTag:
    """A tagger's answer as a row; one that could not be stored is the tagger's error (the job fails, says why)."""
    if tag.kind not in (ROOM, OBJECT) or not 0 < len(tag.label) <= LABEL_MAX or not 0 < len(tag.model) <= MODEL_MAX:
        raise ValueError(f"the tagger returned a tag that cannot be stored: {tag!r}")
    if not 0.0 <= tag.score <= 1.0:
        raise ValueError(f"the tagger returned a score outside 0..1: {tag!r}")
    return NewTag(tag.kind, tag.label, float(tag.score), tag.model)


def record_machine_tags(database: Database, media_id: int, tags: list[MachineTag]) -> bool:
    """Replace the item's undecided machine tags with `tags`, in one transaction (see TagRepository.replace_machine):
    the system's change, not a person's. False when the item is gone (nothing written)."""
    rows = [_checked(tag) for tag in tags]
    with database.session() as session:
        return TagRepository(session).replace_machine(media_id, rows)


# ------------------------------------------------------------------ review


def _key(row: MediaTag) -> str:
    return f"{row.kind}:{row.label} ({row.model if row.source == MACHINE else MODERATOR})"


def _states(rows: list[MediaTag]) -> dict[str, Any]:
    """What an event shows of an item's tags: each row's state by kind, label and source."""
    return {_key(row): row.state for row in rows}


def room_labels() -> tuple[str, ...]:
    """The rooms the classifier names (its rooms table, pipeline/data/rooms.json), `unknown` aside: the rooms a
    moderator may name too."""
    return room_model().rooms


def check_room(label: str) -> str:
    if label not in room_labels():
        raise InvalidInput(f"{label[:LABEL_MAX]!r} is not a room label", code="unknown_room_label",
                           allowed=list(room_labels()))
    return label


class TagService:
    """Moderators' review of an item's machine tags; each change one transaction with its audit event."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def export(self, principal: Principal, fmt: str) -> Iterator[str]:
        """The decisions as labels (`export_lines`): moderators and admins."""
        access.require_moderator(principal)
        return export_lines(self.database, fmt)

    def of_item(self, media_id: int, principal: Principal | None) -> list[MediaTag]:
        with self.database.session() as session:
            access.require_view(principal, MediaRepository(session).get(media_id), MemberRepository(session))
            return TagRepository(session).of_items([media_id])[media_id]

    def accept(self, media_id: int, tag_id: int, principal: Principal) -> list[MediaTag]:
        """The machine tag is right: accepted (an accepted room is the item's only one)."""
        return self._review(media_id, principal, "tags.accept",
                            lambda rows, decide: _accept(self._machine_row(rows, tag_id), rows, decide))

    def reject(self, media_id: int, tag_id: int, principal: Principal) -> list[MediaTag]:
        """The machine tag is wrong: rejected (kept, for the export)."""
        return self._review(media_id, principal, "tags.reject",
                            lambda rows, decide: decide(self._machine_row(rows, tag_id), REJECTED))

    def correct_room(self, media_id: int, label: str, principal: Principal) -> list[MediaTag]:
        """The item shows this room: a machine room of that label is accepted; else the moderator's room is set and
        the machine's rooms are rejected (kept beside it, so the export has both)."""
        check_room(label)
        return self._review(media_id, principal, "tags.correct", lambda rows, decide: _correct(rows, label, decide),
                            needs_rooms=True)

    @staticmethod
    def _machine_row(rows: list[MediaTag], tag_id: int) -> MediaTag:
        row = next((row for row in rows if row.id == tag_id), None)
        if row is None:
            raise NotFound("the item has no such tag", code="tag_not_found")
        if row.source != MACHINE:
            raise Conflict("a moderator's room is changed by correcting the room again", code="not_machine_tag")
        return row

    def _review(self, media_id: int, principal: Principal, action: str,
                change: Callable[[list[MediaTag], _Decide], None], needs_rooms: bool = False) -> list[MediaTag]:
        """`needs_rooms`: the change names the item's room, which only the images of room-tagged fields have (an
        avatar named a kitchen would be a wrong label in the export and a wrong hit of a tag filter)."""
        with self.database.session() as session:
            item = access.require_view(principal, MediaRepository(session).get(media_id), MemberRepository(session))
            access.require_moderator(principal)
            if needs_rooms and not wants_tags(get_kind(item.entity_type).field(item.entity_field), item.media_type):
                raise Conflict("only the images of listing photos' fields have a room", code="not_room_tagged")
            repo = TagRepository(session)
            rows = repo.lock_of_item(item.id)
            before = _states(rows)
            decide = _Decide(repo, item.id, principal.sub)
            change(rows, decide)
            session.flush()
            rows = repo.of_items([item.id])[item.id]
            after = _states(rows)
            if after != before:
                actor = Actor.of(principal)
                AuditRepository(session).record(item_event(
                    item, action, actor=actor.name, actor_role=actor.role, before=before, after=after,
                    request_id=audit.request_id.get()))
            return rows


@dataclass
class _Decide:
    """A moderator's decisions on one item's rows, in the review's transaction."""

    repo: TagRepository
    media_id: int
    moderator: str

    def __call__(self, row: MediaTag, state: str) -> None:
        if row.state != state:
            row.state, row.decided_by, row.decided_at = state, self.moderator, utcnow()

    def set_room(self, rows: list[MediaTag], label: str) -> None:
        own = next((row for row in rows if row.source == MODERATOR and row.kind == ROOM), None)
        if own is None:
            self.repo.add_moderator_room(self.media_id, label, self.moderator)
        elif own.label != label:
            own.label, own.decided_by, own.decided_at = label, self.moderator, utcnow()

    def drop_room(self, rows: list[MediaTag]) -> None:
        for row in rows:
            if row.source == MODERATOR and row.kind == ROOM:
                self.repo.delete(row)


def _accept(row: MediaTag, rows: list[MediaTag], decide: _Decide) -> None:
    if row.kind == ROOM:  # one accepted room: it replaces the others and a moderator's room
        for other in rows:
            if other is not row and other.source == MACHINE and other.kind == ROOM and other.state == ACCEPTED:
                decide(other, REJECTED)
        decide.drop_room(rows)
    decide(row, ACCEPTED)


def _correct(rows: list[MediaTag], label: str, decide: _Decide) -> None:
    rooms = [row for row in rows if row.source == MACHINE and row.kind == ROOM]
    same = [row for row in rooms if row.label == label]
    if same:
        _accept(same[-1], rows, decide)
        return
    for row in rooms:
        decide(row, REJECTED)
    decide.set_room(rows, label)


# ------------------------------------------------------------------ backfill and export


@dataclass
class BackfillBatch:
    examined: int  # items looked at in this batch
    job_ids: list[int]  # the tagging jobs it queued (committed)


def backfill(database: Database, model: str, *, entity_type: str | None = None, limit: int | None = None,
             redo: bool = False, max_attempts: int = 5, page: int = BACKFILL_PAGE) -> Iterator[BackfillBatch]:
    """Queue tagging jobs for the images of the room-tagged fields (of `entity_type`, if given) that have no machine
    tags from `model` (`redo`: every one), at most `limit`, a page of items per transaction in id order: memory
    stays flat whatever the library's size. An item with an unfinished tagging job is skipped (it is coming), so a
    second run after an interruption picks up where the first stopped."""
    fields = [(kind, field) for kind, field in TAGGED_FIELDS if entity_type in (None, kind)]
    if not fields:
        raise InvalidInput(f"entity type {entity_type!r} has no room-tagged field", code="no_tagged_field",
                           allowed=sorted({kind for kind, _ in TAGGED_FIELDS}))
    last_id, queued = 0, 0
    while limit is None or queued < limit:
        with database.session() as session:
            ids = TagRepository(session).images_in_fields(fields, last_id, page)
            if not ids:
                return
            skip = busy_media_ids(session, ids, kind=TAGGING)
            if not redo:
                skip |= TagRepository(session).tagged_by(ids, model)
            wanted = [media_id for media_id in ids if media_id not in skip]
            if limit is not None:
                wanted = wanted[:limit - queued]
            job_ids = [queue_tagging(session, media_id, max_attempts) for media_id in wanted]
        queued += len(job_ids)
        last_id = ids[-1]
        yield BackfillBatch(len(ids), job_ids)


def decided_labels(database: Database, page: int = EXPORT_PAGE) -> Iterator[dict[str, Any]]:
    """The moderators' decisions as labels, one line per decided row (EXPORT_FIELDS), read a page at a time.

    `decision`: accepted (the machine was right), rejected (wrong, no room named instead), corrected (a rejected
    machine room, `label` the moderator's room), labelled (a moderator's room on an item the machine never gave a
    room). `label` is the true label where one is known, else null."""
    for state in (ACCEPTED, REJECTED):
        after = 0
        while True:
            with database.session() as session:
                repo = TagRepository(session)
                rows = repo.decided_page(state, after, page)
                ids = {row.media_id for row, _, _ in rows}
                rooms = repo.moderator_rooms(ids)
                corrected = repo.rejected_machine_rooms(ids)
            for row, public_id, sha256 in rows:
                line = _label_line(row, rooms.get(row.media_id), row.media_id in corrected)
                if line is not None:
                    yield {"media_public_id": public_id, "sha256": sha256, **line}
            if len(rows) < page:
                break
            after = rows[-1][0].id


def export_lines(database: Database, fmt: str) -> Iterator[str]:
    """`decided_labels` as text lines: JSON Lines, or CSV with a header (EXPORT_FIELDS, empty for null)."""
    if fmt == "jsonl":
        for line in decided_labels(database):
            yield json.dumps(line, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, EXPORT_FIELDS)  # None is written as an empty field

    def written() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writeheader()
    yield written()
    for line in decided_labels(database):
        writer.writerow(line)
        yield written()


def _label_line(row: MediaTag, room: MediaTag | None, corrected: bool) -> dict[str, Any] | None:
    decided = {"decided_by": row.decided_by, "decided_at": row.decided_at.isoformat() if row.decided_at else None}
    if row.source == MODERATOR:
        if corrected:  # the rejected machine room's line names this room
            return None
        return {"kind": row.kind, "label": row.label, "decision": "labelled", "machine_label": None,
                "machine_score": None, "model": None, **decided}
    machine = {"machine_label": row.label, "machine_score": row.score, "model": row.model}
    if row.state == ACCEPTED:
        return {"kind": row.kind, "label": row.label, "decision": "accepted", **machine, **decided}
    if row.kind == ROOM and room is not None:
        return {"kind": row.kind, "label": room.label, "decision": "corrected", **machine, **decided}
    return {"kind": row.kind, "label": None, "decision": "rejected", **machine, **decided}

