"""The index file: exact lookups with either key layout, shared by indexes (processes) on one database,
written again when damaged or another database's, reopened after a restart without reading every row,
and swapped under lookups that never see a wrong answer."""

from __future__ import annotations

import random
import shutil
import threading
import time
from contextlib import closing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediahub.db import migrate
from mediahub.dedup import index as dedup_index
from mediahub.dedup import indexfile
from mediahub.dedup.index import DedupIndex
from mediahub.dedup.indexfile import IndexFile, Rows, UnusableFile
from tests.dedup.test_index import _add, _assert_exact, _flip, _row
from tests.support.concurrency import run_together

ROWS = 3000


def _file(path, hashes: np.ndarray, wide: bool, monkeypatch) -> IndexFile:
    monkeypatch.setattr(indexfile, "WIDE_FROM", 0 if wide else 1 << 22)
    ids = np.arange(1, hashes.shape[1] + 1, dtype=np.int64) * 3

    def fill(out_ids, out_hashes):
        out_ids[:] = ids
        out_hashes[:] = hashes

    indexfile.write(path, "test", len(ids), fill, Rows(int(ids[-1]), "2026-01-01T00:00:00+00:00",
                                                          np.array([7, 8]), 0.0, 0.0), 1)
    return IndexFile(path, "test")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One table of clustered hashes (so runs are uneven) in a file with four 16-bit keys and one with three wide ones."""
    rng = np.random.default_rng(4)
    centres = rng.integers(0, 2**64, (2, 40), dtype=np.uint64)
    flips = np.packbits(rng.random((2 * ROWS, 64)) < 0.1, axis=1).view(">u8").ravel().astype(np.uint64)
    hashes = centres[:, rng.integers(0, 40, ROWS)] ^ flips.reshape(2, ROWS)
    folder = tmp_path_factory.mktemp("files")
    with pytest.MonkeyPatch.context() as monkeypatch:
        made = {wide: _file(folder / f"wide{wide}.idx", hashes, wide, monkeypatch) for wide in (False, True)}
    assert made[True].keys == indexfile.WIDE_KEYS and made[False].keys == indexfile.BAND_KEYS
    return hashes, made


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, ROWS - 1), flips=st.integers(0, 30), seed=st.integers(0, 2**32), kind=st.integers(0, 1),
       thresholds=st.lists(st.integers(-1, 64), min_size=1, max_size=8))
def test_file_lookups_equal_a_linear_scan_with_either_key_layout(files, pick, flips, seed, kind, thresholds):
    hashes, made = files
    rng = random.Random(seed)
    query = _flip(int(hashes[kind, pick]), flips, rng)
    distances = np.bitwise_count(hashes[kind] ^ np.uint64(query))
    centre = _flip(int(hashes[1, pick]), flips, rng)
    windows = np.array([_flip(centre, rng.randint(0, 12), rng) for _ in range(30)], dtype=np.uint64)
    for file in made.values():
        assert file.rows.watermark == 3 * ROWS and file.rows.gaps.tolist() == [7, 8]
        for threshold in thresholds:
            assert file.within(kind, query, threshold).tolist() == np.flatnonzero(distances <= threshold).tolist()
            # Crop windows are matched against stored centres: every (centre, window) pair compared.
            near = np.bitwise_count(hashes[1, :, None] ^ windows[None, :]) <= threshold
            same_band = np.zeros_like(near)
            for shift in (0, 16, 32, 48):
                band = lambda h: (h >> np.uint64(shift)) & np.uint64(0xFFFF)  # noqa: E731
                same_band |= band(hashes[1, :, None]) == band(windows[None, :])
            expected = np.flatnonzero((near & same_band).any(axis=1))
            assert file.crop_matches(1, windows, threshold).tolist() == expected.tolist()


# ---------------------------------------------------------------------------- indexes over one database


class CountingPages:
    """Counts the full reads of the table (`HashFeed.pages`) of one index."""

    def __init__(self, index: DedupIndex) -> None:
        self.calls, self.inner = 0, index.feed.pages
        index.feed.pages = self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.fixture
def indexes(tmp_path):
    """indexes(database, n) -> n DedupIndexes (as n processes have) sharing one directory; closed after the test."""
    made = []

    def build(database, count=1, **options):
        made.extend(DedupIndex(database, tmp_path / "shared", **options) for _ in range(count))
        return made[-count:]

    yield build
    for index in made:
        index.close()


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_restart_opens_the_file_without_reading_every_row(db, indexes, monkeypatch):
    rng = random.Random(1)
    query = rng.getrandbits(64)
    _add(db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(80)])
    (first,) = indexes(db)
    first.sync()  # reads every row, writes the file
    first.close()
    _add(db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(20)])  # after the file was written

    (restarted,) = indexes(db)
    reads = CountingPages(restarted)
    _assert_exact(db, restarted, query)
    assert reads.calls == 0, "opened the file: no full read"
    monkeypatch.setattr(dedup_index, "MAX_CHANGES", 4)  # its changes go into a new file, still without a full read
    _add(db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(10)])
    generation = restarted.generation
    _wait_for(lambda: (restarted.sync(), restarted.generation)[1] > generation, "no new file written and adopted")
    assert IndexFile(restarted.path, restarted.identity).count == len(restarted) == 110
    _assert_exact(db, restarted, query)
    assert reads.calls == 0


def test_indexes_sharing_one_file_see_each_others_commits(db, indexes):
    rng = random.Random(2)
    query = rng.getrandbits(64)
    _add(db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(50)])
    api, worker = indexes(db, 2)
    _assert_exact(db, api, query)
    reads = CountingPages(worker)
    _assert_exact(db, worker, query)
    assert reads.calls == 0 and worker.path == api.path, "the second one opened the first one's file"
    ids = _add(db, [_row(_flip(query, 3, rng))])  # committed by "another process"
    assert ids[0] in api.lookup("w", query, 14) and ids[0] in worker.lookup("w", query, 14)

    api.rebuild()  # a new file: the worker moves over to it after its next lookup
    assert api.generation == worker.generation + 1
    ids += _add(db, [_row(_flip(query, 2, rng))])
    _wait_for(lambda: (worker.sync(), worker.generation)[1] == api.generation, "the worker never moved to the new file")
    _assert_exact(db, worker, query)
    assert set(ids) <= set(worker.lookup("w", query, 14)) and reads.calls == 0


def _damage(path, how: str, other_database) -> None:
    if how == "flipped byte":
        with open(path, "r+b") as fh:
            fh.seek(path.stat().st_size - 100)
            byte = fh.read(1)
            fh.seek(-1, 1)
            fh.write(bytes([byte[0] ^ 0x10]))
    elif how == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    elif how == "another database's":
        with closing(DedupIndex(other_database, path.parent)) as other:
            other.sync()
            shutil.copyfile(other.path, path)
    elif how == "not an index file":
        path.write_bytes(b"hello")
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["flipped byte", "truncated", "another database's", "not an index file", "missing"])
def test_a_damaged_missing_or_foreign_file_is_written_again(sqlite_db, indexes, tmp_path, how):
    rng = random.Random(3)
    query = rng.getrandbits(64)
    _add(sqlite_db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(60)])
    (first,) = indexes(sqlite_db)
    first.sync()
    first.close()
    with migrate.migrated(f"sqlite:///{tmp_path / 'other.db'}") as other:
        _add(other, [_row(query) for _ in range(5)])
        _damage(first.path, how, other)
    if how != "missing":
        with pytest.raises(UnusableFile):
            IndexFile(first.path, first.identity)

    (restarted,) = indexes(sqlite_db)
    reads = CountingPages(restarted)
    _assert_exact(sqlite_db, restarted, query)
    assert reads.calls == 1, "every row read again"
    assert IndexFile(first.path, first.identity).count == 60


def test_a_file_damaged_under_a_running_index_is_written_again(sqlite_db, indexes):
    rng = random.Random(4)
    query = rng.getrandbits(64)
    _add(sqlite_db, [_row(_flip(query, rng.randint(0, 30), rng)) for _ in range(40)])
    (running,) = indexes(sqlite_db)
    running.sync()
    _damage(running.path, "flipped byte", None)  # in place (truncating a mapped file would kill its readers)
    reads = CountingPages(running)
    _wait_for(lambda: (_assert_exact(sqlite_db, running, query), reads.calls)[1] == 1, "never written again")
    _wait_for(lambda: IndexFile(running.path, running.identity).count == 40, "no good file in place")


def test_lookups_racing_with_rewrites_never_see_a_wrong_answer(sqlite_db, indexes, monkeypatch):
    """One index rewrites the file again and again (full reads and merges of its changes) while rows
    are added and others look up: every answer holds every row committed before it and no row
    that was never there, at the right distance."""
    monkeypatch.setattr(dedup_index, "MAX_CHANGES", 8)
    rng = random.Random(5)
    query = rng.getrandbits(64)
    values = [_flip(query, rng.randint(0, 20), rng) for _ in range(100)]
    committed = dict(zip(_add(sqlite_db, [_row(v) for v in values]), values, strict=True))
    possible = dict(committed)  # rows that may be seen: registered before their insert commits
    writer, reader_a, reader_b = indexes(sqlite_db, 3)
    writer.sync()
    done = threading.Event()
    wrong: list[str] = []
    lock = threading.Lock()

    def write_rows_and_files():
        try:
            for round_ in range(6):
                new = {max(possible) + 1 + n: _flip(query, rng.randint(0, 20), rng) for n in range(5)}
                with lock:
                    possible.update(new)
                _add(sqlite_db, [_row(v, media_id=i) for i, v in new.items()])
                with lock:
                    committed.update(new)
                writer.rebuild() if round_ % 2 else writer.sync()
        finally:
            done.set()

    def look_up(index):
        while not done.is_set():
            with lock:
                before = dict(committed)
            found = index.lookup("w", query, 14)
            with lock:
                after = dict(possible)
            missing = {i for i, v in before.items() if (v ^ query).bit_count() <= 14 and found.get(i) is None}
            wrong.extend(f"missed {i}" for i in missing)
            wrong.extend(f"{i} at {d}" for i, d in found.items() if i not in after or (after[i] ^ query).bit_count() != d)

    run_together([write_rows_and_files, lambda: look_up(reader_a), lambda: look_up(reader_b)])
    assert wrong == []
    _assert_exact(sqlite_db, reader_a, query)
    assert IndexFile(writer.path, writer.identity).generation >= 4
