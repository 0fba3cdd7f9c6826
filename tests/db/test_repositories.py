"""Repositories against real SQLite, PostgreSQL and MariaDB databases."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem, MediaVariant, PendingDelete, utcnow
from mediahub.db.repositories import (
    MediaRepository,
    MemberRepository,
    PendingDeleteRepository,
    ReportRepository,
    VariantRepository,
    VariantRow,
)
from mediahub.db.session import Database
from mediahub.errors import Conflict, DatabaseUnavailable, InvalidInput
from tests.support.concurrency import run_together
from tests.support.databases import BACKENDS

ENTITY = ("listing", "L1")
CONCURRENT_WRITERS = 8


def _variant(name: str, key: str, fmt: str = "jpeg") -> MediaVariant:
    return MediaVariant(name=name, format=fmt, storage_key=key, width=10, height=10, byte_size=100,
                        content_type=f"image/{fmt}")


def make_item(
    entity_field: str = "gallery", entity_type: str = ENTITY[0], entity_id: str = ENTITY[1], **overrides: Any
) -> MediaItem:
    """A valid item with a unique public id, an original and one variant key."""
    public_id = overrides.pop("public_id", secrets.token_urlsafe(16))
    values: dict[str, Any] = {
        "public_id": public_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "entity_field": entity_field,
        "media_type": "image",
        "storage_type": "local",
        "original_key": f"media/{public_id}/original.jpg",
        "variants": [_variant("thumbnail", f"media/{public_id}/thumbnail.jpg")],
        "content_type": "image/jpeg",
        "byte_size": 1000,
        "sha256": "a" * 64,
        "md5": "b" * 32,
        **overrides,
    }
    return MediaItem(**values)


def add_items(db: Database, *items: MediaItem) -> list[MediaItem]:
    with db.session() as session:
        repo = MediaRepository(session)
        return [repo.add(item) for item in items]


def primaries(db: Database, field: str = "gallery") -> list[int]:
    with db.session() as session:
        items, _ = MediaRepository(session).list_for_entity(*ENTITY, field=field, is_primary=True)
        return [item.id for item in items]


def run_transaction(db: Database, work: Callable[[Session], None], attempts: int = 20) -> None:
    """Run `work` in its own transaction, retrying when SQLite reports its single writer lock busy."""
    for attempt in range(attempts):
        try:
            with db.session() as session:
                work(session)
            return
        except DatabaseUnavailable as exc:
            busy = db.url.get_backend_name() == "sqlite" and "locked" in str(exc.__cause__)
            if not busy or attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def set_primary_by_id(session: Session, media_id: int) -> None:
    repo = MediaRepository(session)
    item = repo.get(media_id)
    assert item is not None
    repo.set_primary(item)


def test_add_and_get(db: Database) -> None:
    [item] = add_items(db, make_item(tags=["front"], meta={"exif": {"iso": 100}}, caption="Sea view 🌊"))

    with db.session() as session:
        repo = MediaRepository(session)
        by_id = repo.get(item.id)
        by_public_id = repo.get_by_public_id(item.public_id)
        assert repo.get(item.id + 1000) is None
        assert repo.get_by_public_id("missing") is None

    assert by_id is not None and by_public_id is not None
    assert by_id.id == by_public_id.id == item.id
    assert by_id.tags == ["front"] and by_id.meta == {"exif": {"iso": 100}}
    assert by_id.caption == "Sea view 🌊"  # four-byte UTF-8: MariaDB needs utf8mb4
    assert by_id.keys() == item.keys()


def test_timestamps_read_back_aware_utc_with_microseconds(db: Database) -> None:
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    [item] = add_items(db, make_item(created_at=created))

    with db.session() as session:
        stored = MediaRepository(session).get(item.id)

    assert stored is not None
    assert stored.created_at == created
    assert stored.created_at.utcoffset() == timedelta(0)


def test_public_ids_are_case_sensitive(db: Database) -> None:
    """MariaDB's default collation would make these collide; the schema uses a binary one."""
    upper, lower = add_items(db, make_item(public_id="CaseToken"), make_item(public_id="casetoken"))

    with db.session() as session:
        found = MediaRepository(session).get_by_public_id("casetoken")

    assert found is not None and found.id == lower.id != upper.id


def test_add_appends_to_each_field(db: Database) -> None:
    items = add_items(db, make_item(), make_item(), make_item("floorplan"), make_item())

    assert [(item.entity_field, item.position) for item in items] == [
        ("gallery", 0),
        ("gallery", 1),
        ("floorplan", 0),
        ("gallery", 2),
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # gal1 is the gallery's primary: always first.
        ({}, ["floor0", "gal1", "gal0", "gal2"]),
        ({"field": "gallery"}, ["gal1", "gal0", "gal2"]),
        ({"moderation_status": "approved"}, ["floor0", "gal0"]),
        ({"statuses_visible": {"approved", "flagged"}}, ["floor0", "gal0", "gal2"]),
        # Strangers see the approved items and their own uploads, whatever their status (alice's one counted once).
        ({"statuses_visible": {"approved"}, "visible_to_uploader": "alice"}, ["floor0", "gal1", "gal0"]),
        ({"statuses_visible": {"approved"}, "visible_to_uploader": "bob"}, ["floor0", "gal0"]),
        ({"is_primary": True}, ["gal1"]),
        ({"is_primary": False, "field": "gallery"}, ["gal0", "gal2"]),
        ({"offset": 1, "limit": 2}, ["gal1", "gal0"]),
    ],
    ids=["all", "field", "status", "visible", "own-uploads", "stranger", "primary", "not-primary", "page"],
)
def test_list_for_entity(db: Database, filters: dict[str, Any], expected: list[str]) -> None:
    add_items(
        db,
        make_item(public_id="gal0", moderation_status="approved", uploaded_by="alice"),
        make_item(public_id="gal1", is_primary=True, uploaded_by="alice"),
        make_item(public_id="floor0", entity_field="floorplan", moderation_status="approved"),
        make_item(public_id="gal2", moderation_status="flagged"),
        make_item(public_id="other", entity_id="L2", moderation_status="approved"),
    )
    unpaged = {key: value for key, value in filters.items() if key not in {"offset", "limit"}}

    with db.session() as session:
        repo = MediaRepository(session)
        items, total = repo.list_for_entity(*ENTITY, **filters)
        everything, _ = repo.list_for_entity(*ENTITY, **unpaged, limit=100)

    assert [item.public_id for item in items] == expected
    assert total == len(everything)


@pytest.mark.parametrize("filters", [{}, {"field": "gallery"}, {"statuses_visible": {"approved"}},
                                     {"statuses_visible": {"approved"}, "visible_to_uploader": "alice"}],
                         ids=["all", "field", "visible", "own-uploads"])
def test_keyset_pages_follow_the_display_order(db: Database, filters: dict[str, Any]) -> None:
    statuses = ["approved", "pending", "approved", "rejected", "approved"]
    add_items(db, *(make_item(field, moderation_status=status, uploaded_by="alice" if n % 2 else "bob")
                    for field in ("gallery", "floorplan") for n, status in enumerate(statuses)))
    add_items(db, make_item(entity_id="L2", moderation_status="approved"))

    with db.session() as session:
        repo = MediaRepository(session)
        everything, total = repo.list_for_entity(*ENTITY, **filters, limit=100)
        pages, after = [], None
        while True:
            page, page_total = repo.list_for_entity(*ENTITY, **filters, limit=2, after=after)
            assert page_total == total
            if not page:
                break
            pages.append([item.id for item in page])
            after = (page[-1].entity_field, page[-1].position, page[-1].id)

    assert [media_id for page in pages for media_id in page] == [item.id for item in everything]
    assert all(len(page) == 2 for page in pages[:-1])


def test_keyset_pages_break_position_ties_by_id(db: Database) -> None:
    items = add_items(db, *(make_item(position=7) for _ in range(3)))

    with db.session() as session:
        repo = MediaRepository(session)
        first, _ = repo.list_for_entity(*ENTITY, limit=1)
        rest, _ = repo.list_for_entity(*ENTITY, after=("gallery", 7, first[0].id))

    assert [item.id for item in first + rest] == [item.id for item in items]


# MariaDB picks its plan by the table's size: its plan was read at 10^5 rows, not asserted on a small table.
@pytest.mark.parametrize("migrated_database_url", [b for b in BACKENDS if b.values[0] != "mariadb"], indirect=True)
@pytest.mark.parametrize("field", [None, "gallery"], ids=["entity", "field"])
def test_a_keyset_page_is_an_index_range_without_a_sort(db: Database, field: str | None) -> None:
    """The page after a key is read from ix_media_entity in order from that key: no sort, and no reading of
    the rows before it (which an offset, or a condition the index cannot take as a range, would cost)."""
    backend = db.url.get_backend_name()
    items = add_items(db, *(make_item() for _ in range(30)))
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM media_items" in statement and "LIMIT" in statement:
            statements.append((statement, parameters))

    key = ("gallery", items[9].position, items[9].id)
    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.session() as session:
            page, _ = MediaRepository(session).list_for_entity(*ENTITY, field=field, limit=5, after=key)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert [item.id for item in page] == [item.id for item in items[10:15]]
    [(statement, parameters)] = statements
    with db.engine.connect() as connection:
        if backend == "sqlite":
            plan = " ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                           parameters))
            assert "INDEX ix_media_entity" in plan and "TEMP B-TREE" not in plan, plan
            assert "position>?" in plan or "(entity_field,position)>(?,?)" in plan, plan
        else:
            connection.exec_driver_sql("SET enable_seqscan = off")  # a table this small would be scanned
            plan = " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            assert "ix_media_entity" in plan and "Sort" not in plan and "ROW(" in plan, plan


def test_the_primary_comes_first(db: Database) -> None:
    a, b, c = add_items(db, make_item(), make_item(), make_item())
    with db.session() as session:
        set_primary_by_id(session, c.id)
    assert gallery(db) == [(c.id, 0), (a.id, 1), (b.id, 2)]

    [d] = add_items(db, make_item(is_primary=True))  # a new primary goes first too
    assert gallery(db) == [(d.id, 0), (c.id, 1), (a.id, 2), (b.id, 3)]

    with db.session() as session:  # an order that puts it elsewhere keeps it first
        reordered = MediaRepository(session).reorder(*ENTITY, "gallery", [a.id, b.id, d.id, c.id])
    assert [item.id for item in reordered] == [d.id, a.id, b.id, c.id]
    assert gallery(db) == [(d.id, 0), (a.id, 1), (b.id, 2), (c.id, 3)]


def test_an_unapproved_claim_does_not_move_ahead_of_an_approved_primary(db: Database) -> None:
    holder, other = add_items(db, make_item(moderation_status="approved", is_primary=True), make_item())
    [claim] = add_items(db, make_item(is_primary=True))
    assert (claim.is_primary, claim.claims_primary) == (False, True)
    assert gallery(db) == [(holder.id, 0), (other.id, 1), (claim.id, 2)]


def test_a_partial_reorder_moves_the_named_items_among_their_places(db: Database) -> None:
    a, b, c, d, e = add_items(db, *(make_item() for _ in range(5)))

    with db.session() as session:  # the first three, as a page showing them would send
        reordered = MediaRepository(session).reorder(*ENTITY, "gallery", [c.id, a.id, b.id], partial=True)
    assert [item.id for item in reordered] == [c.id, a.id, b.id]
    assert gallery(db) == [(c.id, 0), (a.id, 1), (b.id, 2), (d.id, 3), (e.id, 4)]

    with db.session() as session:  # places need not be next to each other
        MediaRepository(session).reorder(*ENTITY, "gallery", [e.id, c.id], partial=True)
    assert gallery(db) == [(e.id, 0), (a.id, 1), (b.id, 2), (d.id, 3), (c.id, 4)]


@pytest.mark.parametrize("order", [lambda a, b: [a, a], lambda a, b: [a, b + 1000]], ids=["repeated", "foreign"])
def test_a_partial_reorder_refuses_repeats_and_strangers(db: Database, order: Callable[[int, int], list[int]]) -> None:
    a, b = add_items(db, make_item(), make_item())

    with pytest.raises(Conflict) as caught, db.session() as session:
        MediaRepository(session).reorder(*ENTITY, "gallery", order(a.id, b.id), partial=True)

    assert caught.value.code == "order_mismatch"


def gallery(db: Database) -> list[tuple[int, int]]:
    with db.session() as session:
        items, _ = MediaRepository(session).list_for_entity(*ENTITY, field="gallery", limit=100)
        return [(item.id, item.position) for item in items]


def test_set_primary_moves_the_primary(db: Database) -> None:
    first, second = add_items(db, make_item(is_primary=True), make_item())
    assert primaries(db) == [first.id]

    with db.session() as session:
        set_primary_by_id(session, second.id)
    assert primaries(db) == [second.id]

    [third] = add_items(db, make_item(is_primary=True))
    assert primaries(db) == [third.id]

    with db.session() as session:
        repo = MediaRepository(session)
        repo.clear_primary(repo.get(third.id))
    assert primaries(db) == []


def test_an_unapproved_item_never_demotes_an_approved_primary(db: Database) -> None:
    approved, pending = add_items(db, make_item(is_primary=True, moderation_status="approved"),
                                  make_item(is_primary=True, moderation_status="pending"))
    assert primaries(db) == [approved.id] and pending.claims_primary and not pending.is_primary

    other = make_item(moderation_status="rejected")
    add_items(db, other)
    with db.session() as session:
        set_primary_by_id(session, other.id)  # a claim too: recorded, not taken
        assert MediaRepository(session).get(other.id).claims_primary
    assert primaries(db) == [approved.id]

    with db.session() as session:
        repo = MediaRepository(session)
        item = repo.get(pending.id)
        item.moderation_status = "approved"
        repo.set_primary(item)  # what the approval does with the claim
    assert primaries(db) == [pending.id]


def test_an_unapproved_item_takes_the_primary_from_unapproved_ones(db: Database) -> None:
    first, second = add_items(db, make_item(is_primary=True, moderation_status="pending"),
                              make_item(is_primary=True, moderation_status="rejected"))
    assert primaries(db) == [second.id] and not second.claims_primary


def test_reports_one_open_per_reporter_closed_by_a_decision(db: Database) -> None:
    [item, other] = add_items(db, make_item(moderation_status="approved"), make_item(moderation_status="approved"))
    with db.session() as session:
        reports = ReportRepository(session)
        first = reports.open(item.id, "alice", "spam")
        assert reports.open(item.id, "alice", "again").id == first.id  # the open one, not a second
        reports.open(item.id, "bob", None)
        reports.open(other.id, "alice", None)
        assert reports.made_since("alice", utcnow() - timedelta(hours=1))[0] == 2
        shown = reports.open_by_item([item.id, other.id], per_item=1)
        assert {media_id: (count, [r.reporter for r in rows]) for media_id, (count, rows) in shown.items()} == {
            item.id: (2, ["alice"]), other.id: (1, ["alice"])}
        assert reports.fresh_count(item.id) == 2
        assert reports.close_all(item.id, "approved") == 2
        assert reports.open_by_item([item.id], 10) == {} and reports.find_open(item.id, "alice") is None
        again = reports.open(item.id, "alice", "still spam")  # after a decision: a new report
        reports.open(item.id, "carol", None)
        assert again.id != first.id and reports.open_by_item([item.id], 10)[item.id][0] == 2
        assert reports.fresh_count(item.id) == 1  # alice's earlier report was ruled on: carol's counts
    with db.session() as session:
        MediaRepository(session).delete(MediaRepository(session).get(item.id))
    with db.session() as session:
        assert list(ReportRepository(session).open_by_item([item.id, other.id], 10)) == [other.id]  # reports go


def test_concurrent_reports_by_one_reporter_leave_one_open(db: Database) -> None:
    [item] = add_items(db, make_item(moderation_status="approved"))
    barrier = threading.Barrier(CONCURRENT_WRITERS, timeout=30)

    def report(_: int) -> None:
        barrier.wait()
        run_transaction(db, lambda session: ReportRepository(session).open(item.id, "alice", "spam"))

    with ThreadPoolExecutor(CONCURRENT_WRITERS) as pool:
        list(pool.map(report, range(CONCURRENT_WRITERS)))
    with db.session() as session:
        assert ReportRepository(session).fresh_count(item.id) == 1


def test_unique_constraint_refuses_two_primaries(db: Database) -> None:
    with pytest.raises(IntegrityError), db.session() as session:
        session.add_all([make_item(is_primary=True, primary_marker=True) for _ in range(2)])

    with db.session() as session:
        assert session.scalar(select(func.count(MediaItem.id))) == 0  # rolled back


def test_concurrent_set_primary_leaves_exactly_one(db: Database) -> None:
    items = add_items(db, *(make_item() for _ in range(CONCURRENT_WRITERS)))
    barrier = threading.Barrier(CONCURRENT_WRITERS, timeout=30)

    def claim_primary(media_id: int) -> None:
        barrier.wait()  # every writer starts its transaction at the same moment
        run_transaction(db, lambda session: set_primary_by_id(session, media_id))

    with ThreadPoolExecutor(CONCURRENT_WRITERS) as pool:
        list(pool.map(claim_primary, [item.id for item in items]))

    assert len(primaries(db)) == 1
    with db.session() as session:
        markers = session.scalar(select(func.count(MediaItem.id)).where(MediaItem.primary_marker.is_not(None)))
    assert markers == 1


def test_reorder(db: Database) -> None:
    a, b, c = add_items(db, make_item(), make_item(), make_item())

    with db.session() as session:
        reordered = MediaRepository(session).reorder(*ENTITY, "gallery", [c.id, a.id, b.id])
    assert [(item.id, item.position) for item in reordered] == [(c.id, 0), (a.id, 1), (b.id, 2)]

    with db.session() as session:
        items, _ = MediaRepository(session).list_for_entity(*ENTITY, field="gallery")
    assert [item.id for item in items] == [c.id, a.id, b.id]


@pytest.mark.parametrize(
    "order",
    [lambda a, b: [a], lambda a, b: [a, b, b], lambda a, b: [a, b, b + 1000], lambda a, b: [a, a]],
    ids=["missing", "duplicate", "foreign", "swapped-for-duplicate"],
)
def test_reorder_refuses_a_mismatched_list(db: Database, order: Callable[[int, int], list[int]]) -> None:
    a, b = add_items(db, make_item(), make_item())

    with pytest.raises(Conflict) as caught, db.session() as session:
        MediaRepository(session).reorder(*ENTITY, "gallery", order(a.id, b.id))

    assert caught.value.code == "order_mismatch"


def test_delete_queues_every_key_once(db: Database) -> None:
    # medium shares large's object and huge the original's (a small picture's sizes are one rendition).
    variants = [_variant(name, f"media/x/{stored}.jpg")
                for name, stored in (("small", "small"), ("large", "large"), ("medium", "large"), ("huge", "original"))]
    [item] = add_items(db, make_item(original_key="media/x/original.jpg", variants=variants))

    with db.session() as session:
        repo = MediaRepository(session)
        keys = repo.delete(repo.get(item.id))

    assert keys == ["media/x/original.jpg", "media/x/small.jpg", "media/x/large.jpg"]
    with db.session() as session:
        assert MediaRepository(session).get(item.id) is None
        assert VariantRepository(session).for_item(item.id) == [], "the rows go with their item"
        queued = PendingDeleteRepository(session).due(limit=10)
        assert [pending.storage_key for pending in queued] == keys


def test_pending_deletes_retry_then_finish(db: Database) -> None:
    with db.session() as session:
        session.add_all(PendingDelete(storage_key=key) for key in ("k1", "k2", "k3"))

    with db.session() as session:
        queue = PendingDeleteRepository(session)
        first, second, third = queue.due(limit=10)
        queue.failed(first.id, "timeout " * 100)
        queue.done([second.id])

    with db.session() as session:
        due = PendingDeleteRepository(session).due(limit=10)

    # Never-tried keys come before the one that failed.
    assert [(p.storage_key, p.attempts) for p in due] == [("k3", 0), ("k1", 1)]
    assert len(due[1].last_error or "") == 500


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({}, ["mine-L1", "mine-L2", "theirs-L1"]),
        ({"entity_type": "listing", "entity_id": "L1"}, ["mine-L1", "theirs-L1"]),
        ({"uploaded_by": "me"}, ["mine-L1", "mine-L2"]),
        ({"entity_id": "L2", "uploaded_by": "me"}, ["mine-L2"]),
        ({"uploaded_by": "nobody"}, []),
    ],
    ids=["any", "entity", "uploader", "both", "none"],
)
def test_find_by_sha256(db: Database, scope: dict[str, str], expected: list[str]) -> None:
    add_items(
        db,
        make_item(public_id="mine-L1", uploaded_by="me"),
        make_item(public_id="mine-L2", entity_id="L2", uploaded_by="me"),
        make_item(public_id="theirs-L1", uploaded_by="them"),
        make_item(public_id="other-hash", uploaded_by="me", sha256="c" * 64),
    )

    with db.session() as session:
        found = MediaRepository(session).find_by_sha256("a" * 64, **scope)

    assert [item.public_id for item in found] == expected


def test_all_keys_streams_every_key(db: Database) -> None:
    items = add_items(db, *(make_item() for _ in range(5)))

    with db.session() as session:
        keys = list(MediaRepository(session).all_keys(page_size=2))

    assert keys == [(item.id, key) for item in items for key in item.keys()]




def test_moderation_queue_is_oldest_first(db: Database) -> None:
    now = utcnow()
    add_items(
        db,
        make_item(public_id="newer", created_at=now - timedelta(minutes=1)),
        make_item(public_id="approved", moderation_status="approved", created_at=now - timedelta(hours=2)),
        make_item(public_id="oldest", moderation_status="flagged", created_at=now - timedelta(hours=1)),
        make_item(public_id="newest", created_at=now),
    )

    with db.session() as session:
        repo = MediaRepository(session)
        items, total = repo.moderation_queue(0, 10)
        page, page_total = repo.moderation_queue(1, 1)

    assert [item.public_id for item in items] == ["oldest", "newer", "newest"]
    assert [item.public_id for item in page] == ["newer"] and total == page_total == 3


def test_moderation_queue_merges_statuses_and_reports_in_age_order_page_by_page(db: Database) -> None:
    now = utcnow()
    ages = {"pending-old": ("pending", 9), "reported-approved": ("approved", 8), "flagged": ("flagged", 7),
            "reported-pending": ("pending", 6), "closed-report": ("approved", 5), "rejected": ("rejected", 4),
            "twice-reported": ("approved", 3), "pending-new": ("pending", 2)}
    items = dict(zip(ages, add_items(db, *(make_item(public_id=name, moderation_status=status,
                                                     created_at=now - timedelta(hours=hours))
                                           for name, (status, hours) in ages.items())), strict=True))
    with db.session() as session:
        reports = ReportRepository(session)
        for name, reporter in (("reported-approved", "alice"), ("reported-pending", "alice"),
                               ("closed-report", "alice"), ("twice-reported", "alice"), ("twice-reported", "bob")):
            reports.open(items[name].id, reporter, None)
        reports.close_all(items["closed-report"].id, "approved")
    expected = ["pending-old", "reported-approved", "flagged", "reported-pending", "twice-reported", "pending-new"]

    with db.session() as session:
        repo = MediaRepository(session)
        pages = [repo.moderation_queue(offset, 2) for offset in range(0, 8, 2)]
        whole, total = repo.moderation_queue(0, 50)

    assert [item.public_id for item in whole] == expected and total == len(expected)
    assert [item.public_id for page, _ in pages for item in page] == expected
    assert {page_total for _, page_total in pages} == {len(expected)}


def test_members(db: Database) -> None:
    with db.session() as session:
        members = MemberRepository(session)
        members.grant(*ENTITY, "alice")
        members.grant(*ENTITY, "alice")  # idempotent
        members.grant(*ENTITY, "bob", role="editor")
        members.grant(*ENTITY, "bob", role="owner")  # a second grant changes the role
        with pytest.raises(InvalidInput):
            members.grant(*ENTITY, "carol", role="admin")

    with db.session() as session:
        members = MemberRepository(session)
        assert [(m.subject, m.role) for m in members.list(*ENTITY)] == [("alice", "owner"), ("bob", "owner")]
        assert members.is_member(*ENTITY, "alice")
        assert not members.is_member("listing", "L2", "alice")
        assert members.revoke(*ENTITY, "alice") is True
        assert members.revoke(*ENTITY, "alice") is False
        assert not members.is_member(*ENTITY, "alice")


SQLITE_PRAGMA_VALUES = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000, "synchronous": 1}


def test_sqlite_creates_its_folder_and_sets_pragmas(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'media.db'}")
    try:
        with database.session() as session:
            pragmas = {name: session.execute(text(f"PRAGMA {name}")).scalar() for name in SQLITE_PRAGMA_VALUES}
    finally:
        database.dispose()

    assert (tmp_path / "nested" / "dir" / "media.db").is_file()
    assert pragmas == SQLITE_PRAGMA_VALUES


UNREACHABLE_URLS = [
    "postgresql+psycopg://postgres@127.0.0.1:1/test",
    "mysql+pymysql://root@127.0.0.1:1/test",
]


def _query_in_session(database: Database) -> None:
    with database.session() as session:
        session.execute(select(1))


@pytest.mark.parametrize("url", UNREACHABLE_URLS, ids=["postgresql", "mariadb"])
@pytest.mark.parametrize("use", [Database.ping, _query_in_session], ids=["ping", "session"])
def test_unreachable_database_is_unavailable(url: str, use: Callable[[Database], None]) -> None:
    database = Database(url)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            use(database)
    finally:
        database.dispose()

    assert caught.value.code == "database_unavailable"
    assert "127.0.0.1:1" in caught.value.message


def test_locked_session_serialises_check_then_insert_across_connections(db):
    """Four writers each insert a row only if none exists yet: with the lock, exactly one does."""
    import threading
    import time

    from mediahub.db.models import Job

    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            barrier.wait()
            with db.locked_session("entity:property:race") as session:
                exists = session.scalar(select(func.count(Job.id)).where(Job.kind == "race-probe"))
                time.sleep(0.2)  # widen the window a missing lock would let others through
                if not exists:
                    session.add(Job(kind="race-probe", payload={}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    run_together([writer] * 4)
    assert errors == []
    with db.session() as session:
        assert session.scalar(select(func.count(Job.id)).where(Job.kind == "race-probe")) == 1


def test_locked_session_rolls_back_and_frees_the_lock_on_error(db):
    from mediahub.db.models import Job

    with pytest.raises(RuntimeError), db.locked_session("entity:property:err") as session:
        session.add(Job(kind="rolled-back", payload={}))
        session.flush()
        raise RuntimeError("boom")
    with db.locked_session("entity:property:err") as session:  # not still held
        assert session.scalar(select(func.count(Job.id)).where(Job.kind == "rolled-back")) == 0


def _row(name: str, key: str, fmt: str = "webp") -> VariantRow:
    return VariantRow(name, fmt, key, 10, 10, 100, f"image/{fmt}")


def test_a_variant_is_found_by_its_key_with_its_content_type(db: Database) -> None:
    a, b = add_items(db, make_item(), make_item())
    with db.session() as session:
        VariantRepository(session).replace(b.id, [], [_row("small", "media/b/small_x.webp")])

    with db.session() as session:
        repo = VariantRepository(session)
        item, content_type = repo.find_by_key("media/b/small_x.webp")
        assert (item.id, content_type) == (b.id, "image/webp")
        assert repo.find_by_key(f"media/{a.public_id}/thumbnail.jpg")[0].id == a.id
        assert repo.find_by_key(a.original_key) is None, "originals are the media rows' to find"
        assert repo.find_by_key("media/b/small.webp") is None


def test_replacing_variants_returns_only_keys_no_row_uses_any_more(db: Database) -> None:
    [item] = add_items(db, make_item(original_key="media/x/original.jpg", variants=[]))
    with db.session() as session:
        VariantRepository(session).replace(item.id, [], [
            _row("large", "media/x/large.webp"), _row("medium", "media/x/large.webp"),
            _row("small", "media/x/small.webp"), _row("huge", "media/x/original.jpg", "jpeg"),
        ])

    with db.session() as session:
        repo = VariantRepository(session)
        rows = {v.name: v for v in repo.for_item(item.id)}
        assert list(rows) == ["large", "medium", "small", "huge"]
        # large goes, medium still names its object; huge goes, the original stays; small is replaced by itself.
        unused = repo.replace(item.id, [rows["large"].id, rows["huge"].id, rows["small"].id],
                              [_row("small", "media/x/small.webp")])
        assert unused == []
        assert [(v.name, v.storage_key) for v in repo.for_item(item.id)] == [
            ("medium", "media/x/large.webp"), ("small", "media/x/small.webp")]
        rows = {v.name: v for v in repo.for_item(item.id)}
        assert repo.replace(item.id, [rows["medium"].id], []) == ["media/x/large.webp"]


def test_one_item_has_one_variant_per_name_and_format(db: Database) -> None:
    [item] = add_items(db, make_item(variants=[]))
    with pytest.raises(IntegrityError), db.session() as session:
        VariantRepository(session).replace(item.id, [], [_row("small", "k/1.webp"), _row("small", "k/2.webp")])


def test_all_keys_names_each_object_of_an_item_once(db: Database) -> None:
    [item] = add_items(db, make_item(original_key="media/y/original.jpg", variants=[
        _variant("large", "media/y/original.jpg"), _variant("medium", "media/y/original.jpg"),
        _variant("small", "media/y/small.jpg")]))
    with db.session() as session:
        assert list(MediaRepository(session).all_keys()) == [
            (item.id, "media/y/original.jpg"), (item.id, "media/y/small.jpg")]
