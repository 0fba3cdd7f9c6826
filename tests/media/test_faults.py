"""Faults during ingest leave either a complete item or nothing; verify finds the rest."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, make_url, text

from mediahub.db.session import Database
from mediahub.errors import DatabaseUnavailable, StorageUnavailable
from mediahub.media import verify as verify_service
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, row_count, stored_keys, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.faults import FailingPuts, Passthrough
from tests.support.s3_server import free_port, make_s3_storage

PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"


# 1 original + the thumbnail JPEG (480x360: large and medium are the original itself, and small too, its
# re-encode being no smaller); WebP is made by the renditions job, after the commit.
@pytest.mark.parametrize("fail_on", [1, 2])
def test_a_failing_put_leaves_no_row_and_no_object(sqlite_db, any_storage, tmp_path, fail_on):
    runtime = make_runtime(sqlite_db, FailingPuts(any_storage, fail_on), tmp_path)
    with pytest.raises(StorageUnavailable):
        upload(runtime, PHOTO)
    assert row_count(runtime) == 0
    assert stored_keys(runtime) == set()


def test_store_unreachable_gives_storage_unavailable(sqlite_db, tmp_path):
    dead = make_s3_storage(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    runtime = make_runtime(sqlite_db, dead, tmp_path)
    with pytest.raises(StorageUnavailable) as caught:
        upload(runtime, PHOTO)
    assert caught.value.code == "storage_unavailable"
    assert row_count(runtime) == 0


def test_database_down_at_commit_removes_the_objects_just_written(any_storage, tmp_path):
    dead = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    store = FailingPuts(any_storage, fail_on=0)  # fails no put: counts them
    # With duplicates allowed the database is first needed at the commit, after every object is written
    # (any other policy reads it in the duplicate check, before the first put).
    runtime = make_runtime(dead, store, tmp_path, dedup_policy="allow")
    with pytest.raises(DatabaseUnavailable):
        upload(runtime, PHOTO)
    assert store.puts == 2, "the original and the thumbnail (the JPEG it does not hold) were written before the commit"
    assert stored_keys(runtime) == set()


class DatabaseDiesAtSecondPut(Passthrough):
    """A real store; its second put ends every session of the PostgreSQL database and refuses new ones.

    The first put may be an image's original, stored while its pixels are processed (before the
    duplicate check); the variants are only stored after the check.
    """

    def __init__(self, inner, database_url: str) -> None:
        self.inner, self.url, self.puts = inner, make_url(database_url), 0
        self.admin = create_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def _database(self, allow: bool) -> None:
        name = self.url.database
        with self.admin.connect() as connection:
            connection.execute(text(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {str(allow).lower()}"))
            if not allow:
                connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                        "WHERE datname = :name"), {"name": name})

    def put(self, key, source, content_type):
        self.puts += 1
        if self.puts == 2:
            self._database(allow=False)
        return self.inner.put(key, source, content_type)

    def revive(self) -> None:
        self._database(allow=True)
        self.admin.dispose()


@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
def test_database_lost_after_the_duplicate_check_removes_the_objects_just_written(db, migrated_database_url,
                                                                                 local_storage, tmp_path):
    """The default policy: the check reads a live database, which is gone by the commit."""
    store = DatabaseDiesAtSecondPut(local_storage, migrated_database_url)
    runtime = make_runtime(db, store, tmp_path)
    try:
        assert runtime.settings.dedup_policy == "reject"
        with pytest.raises(DatabaseUnavailable):
            upload(runtime, PHOTO)
        assert store.puts == 2, "the original and the thumbnail (every other JPEG size names the original)"
        assert stored_keys(runtime) == set()
    finally:
        store.revive()
        runtime.jobs.close()


def test_verify_finds_strays_and_missing_objects_and_repair_fixes_them(runtime):
    kept = upload(runtime, PHOTO)
    damaged = upload(runtime, CORPUS_DIR / "images/good/png_hopper.png")
    runtime.storage.put("properties/photos/P-1/2020-01/gallery-20200101000000-abcdef.jpg", b"orphan", "image/jpeg")
    lost = damaged.variants[0].storage_key
    runtime.storage.delete(lost)

    report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0))
    assert report.stray == ["properties/photos/P-1/2020-01/gallery-20200101000000-abcdef.jpg"]
    assert report.missing == {damaged.id: [lost]}
    assert not report.clean

    repaired = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0), repair=True)
    assert repaired.removed == 1 and repaired.marked == 1
    assert reload(runtime, damaged).processing_status == "failed"
    assert reload(runtime, damaged).meta["missing_keys"] == [lost]
    after = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0))
    assert after.stray == [] and set(kept.keys()) <= stored_keys(runtime)


def test_verify_leaves_young_objects_alone(runtime):
    runtime.storage.put("posts/media/1/2026-11/media-20261126000000-abcdef.jpg", b"in flight", "image/jpeg")
    report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(minutes=15))
    assert report.stray == []


class FailingVariantPuts(Passthrough):
    """A real store that takes the original and fails every variant's put."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.attempted: list[str] = []

    def put(self, key, source, content_type):
        self.attempted.append(key)
        if "_" in key.rsplit("/", 1)[-1]:
            raise StorageUnavailable("injected: connection reset", code="storage_unavailable")
        return self.inner.put(key, source, content_type)


def test_a_failure_after_the_early_original_put_removes_it(sqlite_db, local_storage, tmp_path):
    """A kept original is stored while the pixels are processed; a later failure takes it back."""
    store = FailingVariantPuts(local_storage)
    runtime = make_runtime(sqlite_db, store, tmp_path)
    try:
        with pytest.raises(StorageUnavailable):
            upload(runtime, PHOTO)
    finally:
        runtime.jobs.close()
    originals = [key for key in store.attempted if "_" not in key.rsplit("/", 1)[-1]]
    assert len(originals) == 1 and store.attempted[0] == originals[0]  # the original went first, and landed
    assert row_count(runtime) == 0
    assert stored_keys(runtime) == set()


class SessionsFailWhenArmed(Passthrough):
    """A real database whose sessions fail, the way a lost connection does, once `armed` is set."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.armed, self.failed = threading.Event(), threading.Event()

    @contextmanager
    def session(self):
        if self.armed.is_set():
            self.failed.set()
            raise DatabaseUnavailable("injected: connection lost")
        with self.inner.session() as session:
            yield session


class FirstPutOutlastsAFailure(Passthrough):
    """A real store whose first put arms the database's failure and lands only after a session has failed."""

    def __init__(self, inner, database: SessionsFailWhenArmed) -> None:
        self.inner, self.database, self.keys = inner, database, []
        self.outlasted_a_failure = False

    def put(self, key, source, content_type):
        self.keys.append(key)
        if len(self.keys) == 1:
            self.database.armed.set()
            self.outlasted_a_failure = self.database.failed.wait(timeout=30)
        return self.inner.put(key, source, content_type)


def test_a_failure_while_the_early_original_is_written_removes_it(sqlite_db, local_storage, tmp_path):
    """A kept original is stored while the pixels are processed; a later failure takes it back, even one
    that comes while its put is still under way (here: the duplicate check, once it reads the database)."""
    database = SessionsFailWhenArmed(sqlite_db)
    store = FirstPutOutlastsAFailure(local_storage, database)
    runtime = make_runtime(database, store, tmp_path)
    try:
        assert runtime.settings.dedup_policy == "reject"
        with pytest.raises(DatabaseUnavailable):
            upload(runtime, PHOTO)
        assert len(store.keys) == 1, "only the original was put, before the duplicate check"
        assert store.outlasted_a_failure
        database.armed.clear()
        assert row_count(runtime) == 0
        assert stored_keys(runtime) == set()
    finally:
        runtime.jobs.close()


def test_a_rejected_duplicate_leaves_only_the_first_items_objects(runtime):
    from mediahub.errors import Conflict

    first = upload(runtime, PHOTO)
    keys = stored_keys(runtime)
    assert first.original_key in keys
    with pytest.raises(Conflict):
        upload(runtime, PHOTO)
    assert stored_keys(runtime) == keys
    assert row_count(runtime) == 1


class TakenKeys(Passthrough):
    """A real store in which every key this upload picks for an original is already taken."""

    def put(self, key, source, content_type):
        from mediahub.storage.base import KeyExists

        if "_" not in key.rsplit("/", 1)[-1]:  # the original's key
            raise KeyExists(key)
        return self.inner.put(key, source, content_type)


def test_a_taken_key_is_a_retryable_failure_that_stores_nothing(sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, TakenKeys(local_storage), tmp_path)
    try:
        with pytest.raises(StorageUnavailable) as refused:
            upload(runtime, PHOTO)
    finally:
        runtime.jobs.close()
    assert refused.value.code == "key_collision"
    assert row_count(runtime) == 0
    assert stored_keys(runtime) == set()
