"""The index returns exactly what a linear scan of the database returns, at every threshold, as rows are
inserted (in and out of id order), updated, deleted and merged into a new file; processes share the file."""

from __future__ import annotations

import random
import secrets
import time
from contextlib import closing
from datetime import datetime, timedelta
from math import comb

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import delete, select, update

from mediahub.db.models import MediaItem, utcnow
from mediahub.dedup import index as dedup_index
from mediahub.dedup import indexfile
from mediahub.dedup import policy as dedup
from mediahub.dedup.index import DedupIndex
from mediahub.dedup.indexfile import ball
from mediahub.pipeline.fingerprint import Fingerprint, bands

HASH = st.integers(min_value=0, max_value=(1 << 64) - 1)
THRESHOLDS = range(65)


def _bands(whole: int | None, centre: int | None) -> dict[str, int | None]:
    values = {f"hash_w{i}": v for i, v in enumerate(bands(whole) if whole is not None else [None] * 4)}
    return values | {f"hash_c{i}": v for i, v in enumerate(bands(centre) if centre is not None else [None] * 4)}


def _row(whole: int | None, centre: int | None = None, *, media_id: int | None = None, uploaded_by: str = "u1",
         updated_at: datetime | None = None) -> MediaItem:
    if whole is not None and centre is None:
        centre = whole ^ 0xFFFF
    stamp = {"created_at": updated_at, "updated_at": updated_at} if updated_at else {}
    return MediaItem(id=media_id, public_id=secrets.token_urlsafe(12), entity_type="property", entity_id="E1",
                     entity_field="gallery", media_type="image", storage_type="local", original_key="k",
                     variants=[], content_type="image/jpeg", byte_size=1, tags=[], meta={}, sha256="0" * 64,
                     md5="0" * 32, uploaded_by=uploaded_by, **stamp, **_bands(whole, centre))


def _flip(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return value


def _add(database, rows: list[MediaItem]) -> list[int]:
    with database.session() as session:
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _set_hash(database, media_id: int, whole: int | None) -> None:
    with database.session() as session:
        session.execute(update(MediaItem).where(MediaItem.id == media_id)
                        .values(**_bands(whole, None if whole is None else whole ^ 0xFFFF), updated_at=utcnow()))


def _existing(database) -> set[int]:
    with database.session() as session:
        return set(session.scalars(select(MediaItem.id)))


def _assert_exact(database, index: DedupIndex, query: int, lingering: set[int] = frozenset()) -> None:
    """For both kinds and every threshold: the index's answer, less deleted rows, is the linear scan's.

    Rows deleted since the index was loaded may linger in its answer (callers load the ids
    from the database, which drops them), and nothing else may differ.
    """
    existing = _existing(database)
    for kind in ("w", "c"):
        with database.session() as session:
            everything = dedup.linear_scan(session, kind, query, 64)
        for threshold in THRESHOLDS:
            found = index.lookup(kind, query, threshold)
            assert {i: d for i, d in found.items() if i in existing} == \
                {i: d for i, d in everything.items() if d <= threshold}, (kind, threshold)
            assert set(found) - existing <= lingering


@pytest.fixture
def make_index(tmp_path):
    """make_index(database, **options) -> a DedupIndex whose file is in this test's directory (or `directory`),
    closed after the test."""
    made = []

    def build(database, directory=None, **options):
        made.append(DedupIndex(database, directory or tmp_path / "index", **options))
        return made[-1]

    yield build
    for index in made:
        index.close()

@pytest.fixture
def small_merges(monkeypatch):
    """Write a new file after a handful of changed rows, so small tests exercise merges."""
    monkeypatch.setattr(dedup_index, "MAX_CHANGES", 4)


@pytest.fixture
def no_overlap(monkeypatch):
    """One process, one clock: a sync need not read rows updated before the previous one again
    (otherwise every row of a test made seconds ago is read on every lookup)."""
    monkeypatch.setattr(dedup_index, "UPDATE_OVERLAP_SECONDS", 0.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=HASH, flips=st.lists(st.integers(0, 40), min_size=1, max_size=30), noise=st.lists(HASH, max_size=15),
       later=st.lists(st.integers(0, 40), max_size=20), changes=st.lists(st.tuples(st.integers(0, 10**6),
                                                                                   st.integers(0, 40)), max_size=8),
       deletions=st.lists(st.integers(0, 10**6), max_size=6), seed=st.integers(0, 2**32))
def test_index_equals_linear_scan_through_inserts_updates_deletes_and_merges(
        sqlite_db, tmp_path, small_merges, no_overlap, query, flips, noise, later, changes, deletions, seed):
    rng = random.Random(seed)
    with sqlite_db.session() as session:
        session.execute(delete(MediaItem))
    ids = _add(sqlite_db, [_row(_flip(query, f, rng)) for f in flips] + [_row(h) for h in noise] + [_row(None)])
    # A file of its own (rows and ids start again), closed with each example (the pool has few connections).
    with closing(DedupIndex(sqlite_db, tmp_path / secrets.token_hex(4))) as index:
        _assert_exact(sqlite_db, index, query)  # the first lookup reads everything

        ids += _add(sqlite_db, [_row(_flip(query, f, rng)) for f in later])  # through the delta
        for pick, distance in changes:  # hashes changed (or set, on the row without one) by a later update
            _set_hash(sqlite_db, ids[pick % len(ids)], _flip(query, distance, rng))
        gone = {ids[pick % len(ids)] for pick in deletions}
        with sqlite_db.session() as session:
            session.execute(delete(MediaItem).where(MediaItem.id.in_(gone)))
        _assert_exact(sqlite_db, index, query, lingering=gone)

        index.rebuild()  # what the timer does: deleted rows are gone
        _assert_exact(sqlite_db, index, query)
        assert len(index) == len(_existing(sqlite_db) & set(index.lookup("w", query, 64)))


def test_rows_committed_out_of_id_order_are_found_on_every_database(db, make_index, monkeypatch):
    """An id allocated by an INSERT that commits after a later id: the sync asks for it again,
    however old the row's updated_at (written at INSERT, long before the commit, say)."""
    rng = random.Random(5)
    query = rng.getrandbits(64)
    long_ago = utcnow() - timedelta(hours=1)
    _add(db, [_row(_flip(query, 3, rng), media_id=10), _row(rng.getrandbits(64), media_id=30)])
    index = make_index(db)
    assert set(index.lookup("w", query, 8)) == {10}
    _add(db, [_row(_flip(query, 5, rng), media_id=41)])  # 31..40 are missing at this sync
    assert set(index.lookup("w", query, 8)) == {10, 41}
    _add(db, [_row(_flip(query, 4, rng), media_id=35, updated_at=long_ago),
              _row(_flip(query, 2, rng), media_id=20, updated_at=long_ago)])  # 20: near the top at the load
    _assert_exact(db, index, query)
    assert {20, 35} <= set(index.lookup("w", query, 8))

    monkeypatch.setattr(dedup_index, "SETTLE_SECONDS", 0.0)  # a missing id is given up at once
    _add(db, [_row(rng.getrandbits(64), media_id=60)])
    index.sync()
    _add(db, [_row(query, media_id=50, updated_at=long_ago)])
    assert 50 not in index.lookup("w", query, 8), "given up: found by the next full rebuild only"
    index.rebuild()
    assert 50 in index.lookup("w", query, 8)


def test_a_concurrent_insert_that_commits_late_is_found(db, make_index):
    """PostgreSQL and MariaDB hand out the id at INSERT: a later id can commit first."""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    database = db
    rng = random.Random(9)
    query = rng.getrandbits(64)
    index = make_index(database)
    assert index.lookup("w", query, 14) == {}
    with database.session() as slow:
        early = _row(_flip(query, 6, rng))
        slow.add(early)
        slow.flush()  # the id is taken now, the row is not visible yet
        (late,) = _add(database, [_row(_flip(query, 7, rng))])
        assert late > early.id
        assert set(index.lookup("w", query, 14)) == {late}
    assert set(index.lookup("w", query, 14)) == {early.id, late}
    _assert_exact(database, index, query)


def test_every_database_tracks_updates_deletes_and_merges(db, make_index, small_merges):
    rng = random.Random(3)
    query = rng.getrandbits(64)
    ids = _add(db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(60)] + [_row(None) for _ in range(5)])
    index = make_index(db)
    _assert_exact(db, index, query)
    ids += _add(db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(40)])
    for media_id in rng.sample(ids, 10):
        _set_hash(db, media_id, _flip(query, rng.randint(0, 20), rng))
    _set_hash(db, ids[0], None)  # a fingerprint taken away
    gone = set(rng.sample(ids, 8))
    with db.session() as session:
        session.execute(delete(MediaItem).where(MediaItem.id.in_(gone)))
    _assert_exact(db, index, query, lingering=gone)
    index.rebuild()
    _assert_exact(db, index, query)


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    return Image.fromarray(pixels, "L").resize((256, 256), Image.Resampling.BICUBIC)


def test_find_similar_uses_the_index_drops_deleted_rows_and_keeps_to_the_scope(db, make_index):
    fingerprint = Fingerprint.of(_picture(1))
    other = Fingerprint.of(_picture(2))
    columns = dedup.row_columns(fingerprint, None)
    rows = [_row(None, uploaded_by=who) for who in ("alice", "bob", "alice")] + [_row(None)]
    for row in rows[:3]:
        for name, value in columns.items():
            setattr(row, name, value)
    for name, value in dedup.row_columns(other, None).items():
        setattr(rows[3], name, value)
    same_alice, same_bob, gone = _add(db, rows)[:3]
    index = make_index(db)
    index.sync()  # loaded before the delete
    probe = dedup.Probe(fingerprint=fingerprint)
    with db.session() as session:
        session.execute(delete(MediaItem).where(MediaItem.id == gone))
    with db.session() as session:
        for scope, expected in ((dedup.Scope.everywhere(), {same_alice, same_bob}),
                                (dedup.Scope("uploader", uploaded_by="alice"), {same_alice})):
            via_index = dedup.find_similar(session, probe, scope, 14, index=index)
            scanned = dedup.find_similar(session, probe, scope, 14)
            assert [(m.item.id, m.distance) for m in via_index] == [(m.item.id, m.distance) for m in scanned]
            assert {m.item.id for m in via_index} == expected and all(m.distance == 0 for m in via_index)
            scoped = {i for i in index.candidates(fingerprint, 14) if i in _existing(db)}
            if scope.kind == "uploader":
                scoped &= set(session.scalars(select(MediaItem.id).where(MediaItem.uploaded_by == scope.uploaded_by)))
            assert scoped == dedup.scan_candidates(session, fingerprint, 14, scope)
    assert gone in index.candidates(fingerprint, 14), "deleted rows linger in memory until a rebuild"


@pytest.mark.parametrize("wide", [False, True])
def test_crop_windows_find_near_centres_sharing_a_band_like_the_scan(sqlite_db, make_index, monkeypatch, wide):
    """A stored centre sharing a band with a crop window is a candidate when it is within the threshold of
    that window, in the file and in the changes beside it, with either layout of lookup keys."""
    monkeypatch.setattr(indexfile, "WIDE_FROM", 0 if wide else 1 << 22)
    fingerprint = Fingerprint.of(_picture(7))
    rng = random.Random(2)
    window = fingerprint.windows[10].hash
    masks = [0xFFFF << (16 * b) for b in range(4)]
    near = [window ^ (_flip(0, 8, rng) & ~mask) for mask in masks]  # one band kept, 8 bits off elsewhere
    far = [(window & mask) | (rng.getrandbits(64) & ~mask) for mask in masks]  # one band kept, the rest random
    noise = [rng.getrandbits(64) for _ in range(20)]
    near_ids = _add(sqlite_db, [_row(rng.getrandbits(64), centre) for centre in near[:2] + far[:2] + noise])[:2]
    index = make_index(sqlite_db)
    index.sync()  # the file holds those; the rest come through the changes
    near_ids += _add(sqlite_db, [_row(rng.getrandbits(64), centre) for centre in near[2:] + far[2:]])[:2]
    with sqlite_db.session() as session:
        expected = dedup.scan_candidates(session, fingerprint, 10)
    assert index.candidates(fingerprint, 10) == expected
    assert expected == set(near_ids), "the centres sharing a band by chance alone are not candidates"


def test_a_rebuild_on_the_timer_drops_deleted_rows(sqlite_db, make_index):
    ids = _add(sqlite_db, [_row(5), _row(7)])
    index = make_index(sqlite_db, rebuild_seconds=0.05)
    assert set(index.lookup("w", 5, 1)) == set(ids)
    with sqlite_db.session() as session:
        session.execute(delete(MediaItem).where(MediaItem.id == ids[0]))
    deadline = time.monotonic() + 20
    while ids[0] in index.lookup("w", 5, 1):
        assert time.monotonic() < deadline, "the background rebuild never dropped the deleted row"
        time.sleep(0.05)
    assert set(index.lookup("w", 5, 1)) == {ids[1]}


def test_the_index_is_lazy_and_reports_its_size(sqlite_db, make_index):
    _add(sqlite_db, [_row(1), _row(2), _row(None)])
    index = make_index(sqlite_db)
    assert index.nbytes == 0 and len(index) == 0
    index.sync()
    assert len(index) == 2 and index.nbytes > 0 and index.file_bytes == index.path.stat().st_size


def test_the_ball_holds_every_mask_within_the_radius_once():
    for bits, radius in ((16, 0), (16, 3), (21, 4), (22, 2)):
        masks = ball(radius, bits).tolist()
        assert len(masks) == len(set(masks)) == sum(comb(bits, r) for r in range(radius + 1))
        assert all(mask < 1 << bits and mask.bit_count() <= radius for mask in masks)


def test_a_lost_connection_costs_one_lookup_nothing(db, make_index):
    """The syncs' own connection dies (server restart, idle timeout): the lookup goes through
    the pool instead, and the next sync opens a new connection."""
    ids = _add(db, [_row(5)])
    index = make_index(db)
    assert set(index.lookup("w", 5, 0)) == set(ids)
    lost = index.feed._connection
    lost.connection.dbapi_connection.close()  # behind SQLAlchemy's back
    ids += _add(db, [_row(5)])
    assert set(index.lookup("w", 5, 0)) == set(ids)
    assert index.feed._connection is None, "dropped; the lookup went through the pool"
    ids += _add(db, [_row(5)])
    assert set(index.lookup("w", 5, 0)) == set(ids)
    assert index.feed._connection is not None and index.feed._connection is not lost
