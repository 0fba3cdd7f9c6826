"""The audit trail's table on SQLite, PostgreSQL and MariaDB: recording, keyset pages, retention."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from mediahub.db.models import AuditEvent, MediaItem, MediaReport
from mediahub.db.repositories import SYSTEM, AuditFilter, AuditRepository, MediaRepository, item_event
from mediahub.db.session import Database
from mediahub.jobs.sweeper import Sweeper, audit_retention
from mediahub.media import audit
from tests.db.test_repositories import make_item
from tests.support.audit_guard import AuditGuard

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _add(database: Database, *events: AuditEvent) -> list[int]:
    with database.session() as session:
        repo = AuditRepository(session)
        return [repo.record(event).id for event in events]


def _event(action: str = "media.approve", *, actor: str = "MOD-1", at: datetime = T0, media: str | None = "pub1",
           entity: tuple[str, str, str] = ("property", "", "123")) -> AuditEvent:
    entity_type, parent_id, entity_id = entity
    return AuditEvent(action=action, actor=actor, actor_role="moderator", occurred_at=at, media_public_id=media,
                      entity_type=entity_type, parent_id=parent_id, entity_id=entity_id)


def _page_ids(database: Database, where: AuditFilter, limit: int) -> list[int]:
    """Every matching event by pages of `limit`, following each page's last event."""
    ids: list[int] = []
    after = None
    while True:
        with database.session() as session:
            page = AuditRepository(session).page(where, after, limit)
        ids += [event.id for event in page]
        if len(page) < limit:
            return ids
        after = (page[-1].occurred_at, page[-1].id)


def test_an_item_event_names_the_item_and_keeps_only_what_changed(db: Database) -> None:
    with db.session() as session:
        item = MediaRepository(session).add(make_item(entity_type="amenity", entity_id="AM-1", parent_id="C1"))
        event = AuditRepository(session).record(item_event(
            item, "storage.move", actor=SYSTEM, actor_role=SYSTEM, reason="x" * 600,
            before={"storage_type": "local", "bucket_name": None, "original_key": "a/b.jpg"},
            after={"storage_type": "s3", "bucket_name": "media", "original_key": "a/b.jpg"}))
        media_id, public_id = item.id, item.public_id
    with db.session() as session:
        stored = session.get(AuditEvent, event.id)
        assert (stored.media_id, stored.media_public_id, stored.entity_type, stored.parent_id, stored.entity_id) == (
            media_id, public_id, "amenity", "C1", "AM-1")
        assert stored.before == {"storage_type": "local", "bucket_name": None}
        assert stored.after == {"storage_type": "s3", "bucket_name": "media"}
        assert len(stored.reason) == 500 and stored.occurred_at.tzinfo is not None
    with pytest.raises(ValueError, match="unknown audit action"), db.session() as session:
        AuditRepository(session).record(_event("media.explode"))


def test_an_event_rolls_back_with_its_change(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        item = MediaRepository(session).add(make_item())
        AuditRepository(session).record(item_event(item, "media.create", actor="USR-1", actor_role="user",
                                                   after={"caption": "x"}))
        raise RuntimeError("the change fails after its event was recorded")
    with db.session() as session:
        assert AuditRepository(session).page(AuditFilter(), None, 10) == []
        assert session.query(MediaItem).count() == 0


def test_pages_are_newest_first_and_follow_each_other_without_gaps(db: Database) -> None:
    # Ties on the time are broken by id: three events of one moment, and events in a second apart.
    ids = _add(db, *[_event(at=T0 + timedelta(seconds=n // 3)) for n in range(10)])
    assert _page_ids(db, AuditFilter(), 3) == sorted(ids, reverse=True)
    assert _page_ids(db, AuditFilter(), 4) == sorted(ids, reverse=True)


def test_filters_combine_and_several_actions_merge_in_time_order(db: Database) -> None:
    made = {
        "a1": _event("media.approve", actor="MOD-1", at=T0),
        "r1": _event("media.reject", actor="MOD-2", at=T0 + timedelta(minutes=1), media="pub2"),
        "f1": _event("report.create", actor="USR-9", at=T0 + timedelta(minutes=2)),
        "a2": _event("media.approve", actor="MOD-2", at=T0 + timedelta(minutes=3),
                     entity=("amenity", "C1", "AM-1")),
        "g1": _event("member.grant", actor="ADM-1", at=T0 + timedelta(minutes=4), media=None),
    }
    ids = dict(zip(made, _add(db, *made.values()), strict=True))

    def found(**conditions: object) -> list[str]:
        names = {value: name for name, value in ids.items()}
        return [names[i] for i in _page_ids(db, AuditFilter(**conditions), 2)]

    assert found() == ["g1", "a2", "f1", "r1", "a1"]
    assert found(actions=("media.approve",)) == ["a2", "a1"]
    assert found(actions=("media.approve", "media.reject", "member.grant")) == ["g1", "a2", "r1", "a1"]
    assert found(actor="MOD-2") == ["a2", "r1"]
    assert found(actor="MOD-2", actions=("media.reject",)) == ["r1"]
    assert found(media_public_id="pub1") == ["a2", "f1", "a1"]
    assert found(entity_type="amenity", entity_id="AM-1", parent_id="C1") == ["a2"]
    assert found(entity_type="property", parent_id="") == ["g1", "f1", "r1", "a1"]
    assert found(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == ["f1", "r1"]
    assert found(actor="mod-2") == [], "actors compare case-sensitively on every database"


def test_retention_deletes_the_oldest_in_bounded_batches(db: Database) -> None:
    old = _add(db, *[_event(at=T0 - timedelta(days=400 + n)) for n in range(5)])
    kept = _add(db, _event(at=T0))
    assert audit.expire(db, T0 - timedelta(days=1), batch=2, batches=2) == 4
    assert audit.expire(db, T0 - timedelta(days=1), batch=2, batches=2) == 1
    assert audit.expire(db, T0 - timedelta(days=1), batch=2, batches=2) == 0
    assert _page_ids(db, AuditFilter(), 10) == kept
    assert old  # five were there to delete


def test_the_sweeper_expires_events_older_than_the_retention(sqlite_db: Database) -> None:
    now = datetime.now(timezone.utc)
    _add(sqlite_db, _event(at=now - timedelta(days=31)), _event(at=now - timedelta(days=40)))
    kept = _add(sqlite_db, _event(at=now - timedelta(days=29)))
    assert audit_retention(0) is None and audit_retention(30) == timedelta(days=30)
    sweeper = Sweeper(sqlite_db, None, 0.01, audit_retention=audit_retention(30)).start()
    try:
        rounds = 0
        while _page_ids(sqlite_db, AuditFilter(), 10) != kept and rounds < 1000:
            rounds += 1
            threading.Event().wait(0.01)
    finally:
        sweeper.stop()
    assert _page_ids(sqlite_db, AuditFilter(), 10) == kept, "the sweeper never removed the events older than 30 days"


def test_the_guard_catches_changes_committed_without_an_event(sqlite_db: Database) -> None:
    """The guard every API test runs under (tests/support/audit_guard.py) can fail: it sees ORM and bulk writes,
    passes system columns and changes that come with an event, and forgets what a savepoint rolled back."""
    guard = AuditGuard()
    guard.install()
    try:
        with sqlite_db.session() as session:
            item = MediaRepository(session).add(make_item())
        with sqlite_db.session() as session:
            recorded = MediaRepository(session).add(make_item())
            AuditRepository(session).record(item_event(recorded, "media.create", actor="t", actor_role=None,
                                                       after={}))
        with sqlite_db.session() as session:
            session.execute(update(MediaItem).where(MediaItem.id == item.id).values(caption="x"))
        with sqlite_db.session() as session:
            session.execute(update(MediaItem).values(processing_status="ready"))
        with sqlite_db.session() as session:
            with pytest.raises(RuntimeError), session.begin_nested():
                session.add(MediaReport(media_id=item.id, reporter="u", open_marker=True))
                session.flush()
                raise RuntimeError("the savepoint rolls back")
    finally:
        guard.remove()
    assert [violation.writes for violation in guard.violations] == [
        ["insert media_items"], ["bulk update media_items ['caption']"]]
    assert guard.checked == 3
