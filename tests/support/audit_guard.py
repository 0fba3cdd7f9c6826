"""A guard that no audited change commits without an audit event, for the tests that install it.

It listens on every SQLAlchemy `Session` of the process (SQLAlchemy's event API: `before_flush` for ORM
changes, `do_orm_execute` for bulk UPDATE and DELETE statements, `before_commit` and
`after_transaction_end` for the transaction's fate) and keeps, per transaction, the audited writes it
made and whether it recorded an event. A transaction that commits audited writes without one is a
violation; the fixture fails the test with each violation's writes and the application frames that
committed them. A savepoint that rolls back takes its writes and events with it, as the database does.

What is audited is data (below): the columns of media_items a person changes (AUDITED_COLUMNS; the
system columns jobs and processing write are SYSTEM_COLUMNS), an item's manual focal point inside its
metadata, inserts and deletes of items, and every write to entity_members, media_reports and
duplicate_reviews. In media_tags, a moderator's writes are audited (a review changes a row; a moderator's room is
inserted, changed, deleted) and a tagging job's are the system's (it inserts the machine's suggestions, rescores
those it makes again and deletes the other undecided ones): `_audited_tag_write` tells them apart.

Test code that sets up rows directly (not through the application) says so with `unaudited(session)`.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from mediahub.db.models import (
    MODERATOR,
    SUGGESTED,
    AuditEvent,
    EntityMember,
    KeptDuplicateGroup,
    MediaItem,
    MediaReport,
    MediaTag,
)
from mediahub.pipeline.focal import FOCAL_POINT, MANUAL_SOURCE

# The columns of media_items a person's change writes (the audited ones), and those jobs, processing and
# verification write (not a person's change). Together they are every column (test_audit_trail checks), so a
# new column must be put in one of them.
AUDITED_COLUMNS = frozenset({
    "moderation_status", "moderation_reason", "tags", "caption", "alt_text", "position", "is_primary",
    "primary_marker", "claims_primary", "entity_type", "entity_id", "parent_id", "entity_field", "public_id",
    "uploaded_by", "media_type", "storage_type", "bucket_name",
})
SYSTEM_COLUMNS = frozenset({
    "processing_status", "meta", "created_at", "updated_at", "image_hash", "pixel_sha256", "dedup_thumb",
    "hash_w0", "hash_w1", "hash_w2", "hash_w3", "hash_c0", "hash_c1", "hash_c2", "hash_c3", "width", "height",
    "duration", "byte_size", "content_type", "original_key", "sha256", "md5", "stored_sha256",
    "id",  # `lock_item` sets id = id: a row lock, no change
})
SYSTEM_RELATIONSHIPS = frozenset({"variants"})  # an item's renditions, which jobs make
WHOLLY_AUDITED = (EntityMember, KeptDuplicateGroup, MediaReport)  # every write to these tables
WATCHED = (MediaItem, MediaTag, *WHOLLY_AUDITED)
AUDITED_TABLES = {model.__tablename__ for model in WATCHED}
EXEMPT_KEY = "tests.audit_guard.exempt"
STATE_KEY = "tests.audit_guard.state"


def unaudited(session: Session, why: str = "test set-up") -> None:
    """This session's writes are a test's own set-up, not the application's: the guard passes them."""
    session.info[EXEMPT_KEY] = why


@dataclass
class _Record:
    writes: list[str] = field(default_factory=list)
    events: int = 0

    def add(self, other: _Record) -> None:
        self.writes += other.writes
        self.events += other.events


@dataclass
class Violation:
    writes: list[str]
    where: list[str]  # the application frames that committed them

    def __str__(self) -> str:
        return f"committed without an audit event: {self.writes[:10]}\n  at " + "\n  at ".join(self.where)


class AuditGuard:
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.checked = 0  # transactions with audited writes that committed (with or without an event)

    def install(self) -> None:
        for name, listener in self._listeners().items():
            event.listen(Session, name, listener)

    def remove(self) -> None:
        for name, listener in self._listeners().items():
            event.remove(Session, name, listener)

    def _listeners(self) -> dict[str, Any]:
        return {"before_flush": self._before_flush, "do_orm_execute": self._do_orm_execute,
                "before_commit": self._before_commit, "after_transaction_end": self._after_transaction_end}

    # ------------------------------------------------------------ watching

    @staticmethod
    def _record(session: Session) -> _Record:
        transaction = session.get_nested_transaction() or session.get_transaction()
        records: dict[SessionTransaction, _Record] = session.info.setdefault(STATE_KEY, {})
        return records.setdefault(transaction, _Record())

    def _before_flush(self, session: Session, _context: UOWTransaction, _instances: Any) -> None:
        record = self._record(session)
        for obj in session.new:
            if isinstance(obj, AuditEvent):
                record.events += 1
            elif isinstance(obj, WATCHED) and _audited_tag_write(obj, "insert"):
                record.writes.append(f"insert {type(obj).__tablename__}")
        for obj in session.deleted:
            if isinstance(obj, WATCHED) and _audited_tag_write(obj, "delete"):
                record.writes.append(f"delete {type(obj).__tablename__}")
        for obj in session.dirty:
            if isinstance(obj, WATCHED):
                record.writes += [f"update {type(obj).__tablename__}.{name}" for name in _changed_columns(obj)]

    def _do_orm_execute(self, orm_execute: ORMExecuteState) -> Any:
        if not (orm_execute.is_update or orm_execute.is_delete or orm_execute.is_insert):
            return None
        table = getattr(getattr(orm_execute.statement, "table", None), "name", None)
        if table == AuditEvent.__tablename__ and orm_execute.is_insert:
            self._record(orm_execute.session).events += 1
            return None
        if table not in AUDITED_TABLES:
            return None
        kind = "update" if orm_execute.is_update else "delete" if orm_execute.is_delete else "insert"
        columns = _statement_columns(orm_execute) if orm_execute.is_update else None
        if table == MediaItem.__tablename__ and columns is not None and not columns - SYSTEM_COLUMNS:
            return None
        result = orm_execute.invoke_statement()
        if getattr(result, "rowcount", 1):  # a statement that matched no row changed nothing (a lock taken so)
            self._record(orm_execute.session).writes.append(f"bulk {kind} {table} {sorted(columns or [])}")
        return result

    def _before_commit(self, session: Session) -> None:
        session.flush()
        records: dict[SessionTransaction, _Record] = session.info.get(STATE_KEY, {})
        nested = session.get_nested_transaction()
        if nested is not None:  # a savepoint released: its record joins the transaction around it
            released = records.pop(nested, None)
            if released is not None and nested.parent is not None:
                records.setdefault(nested.parent, _Record()).add(released)
            return
        root = session.get_transaction()
        record = records.pop(root, None) if root is not None else None
        if record is None or not record.writes or session.info.get(EXEMPT_KEY):
            return
        self.checked += 1
        if not record.events:
            self.violations.append(Violation(record.writes, _application_frames()))

    @staticmethod
    def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
        """Whatever a transaction still holds when it ends was rolled back."""
        session.info.get(STATE_KEY, {}).pop(transaction, None)
        if transaction.parent is None:
            session.info.pop(EXEMPT_KEY, None)


def _audited_tag_write(obj: Any, kind: str) -> bool:
    """Whether inserting or deleting `obj` is a person's change: anything but a MediaTag, a moderator's row, or
    (deleted) a decided one. A tagging job inserts the machine's suggestions and deletes the undecided ones."""
    if not isinstance(obj, MediaTag):
        return True
    return obj.source == MODERATOR or (kind == "delete" and obj.state != SUGGESTED)


def _changed_columns(obj: Any) -> list[str]:
    state = inspect(obj)
    changed = [attr.key for attr in state.attrs if attr.history.has_changes()]
    if isinstance(obj, MediaTag) and obj.state == SUGGESTED and obj.source != MODERATOR and changed == ["score"]:
        return []  # a tagging job's new score for a suggestion it makes again: the system's
    if not isinstance(obj, MediaItem):
        return changed
    audited = [name for name in changed if name not in SYSTEM_COLUMNS | SYSTEM_RELATIONSHIPS]
    if "meta" in changed and _manual_focal_point_changed(state.attrs.meta.history):
        audited.append("meta.focal_point")
    return audited


def _manual_focal_point_changed(history: Any) -> bool:
    old = (history.deleted[0] if history.deleted else None) or {}
    new = (history.added[0] if history.added else None) or {}
    point = new.get(FOCAL_POINT)
    return point != old.get(FOCAL_POINT) and isinstance(point, dict) and point.get("source") == MANUAL_SOURCE


def _statement_columns(orm_execute: ORMExecuteState) -> set[str] | None:
    """The columns an UPDATE sets (SQLAlchemy keeps the SET clause in `_values`/`_ordered_values`); None:
    unknown, so audited."""
    statement = orm_execute.statement
    values = getattr(statement, "_values", None) or {}
    ordered = getattr(statement, "_ordered_values", None) or ()
    names = {getattr(column, "key", column) for column in values}
    names.update(getattr(column, "key", column) for column, _ in ordered)
    parameters = orm_execute.parameters
    for row in parameters if isinstance(parameters, list) else [parameters or {}]:
        names.update(row)
    return names or None


def _application_frames() -> list[str]:
    return [f"{frame.filename.rsplit('/src/', 1)[-1]}:{frame.lineno} {frame.name}"
            for frame in traceback.extract_stack()
            if ("/src/mediahub/" in frame.filename or "/tests/" in frame.filename) and frame.filename != __file__][-6:]


@pytest.fixture
def audit_guard() -> Iterator[AuditGuard]:
    """Fails the test if a transaction committed audited writes without an audit event."""
    guard = AuditGuard()
    guard.install()
    try:
        yield guard
    finally:
        guard.remove()
    if guard.violations:
        pytest.fail("audited changes escaped the trail:\n" + "\n".join(str(v) for v in guard.violations),
                    pytrace=False)
