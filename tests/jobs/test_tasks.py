"""Jobs end to end over a real database and store: outbox, idempotency, crashes, reprocess."""

from __future__ import annotations

import io
from contextlib import contextmanager
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import event, select

from mediahub.db.models import Job, MediaItem
from mediahub.db.repositories import job_queue as queue
from mediahub.errors import DatabaseUnavailable
from mediahub.jobs import tasks
from mediahub.jobs.runner import execute
from mediahub.media import reprocessing
from mediahub.media import verify as verify_service
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.pipeline.focal import FACES, FOCAL_POINT
from tests.jobs.helpers import PHOTO, ingest_only, jobs_of
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, row_count, stored_keys, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.faults import FailingPuts, Passthrough
from tests.support.scenes import DISC_IN_SQUARE, red_disc, red_share, save_jpeg

SIZES = ("thumbnail", "small", "medium", "large")
FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"  # 480x360: medium and large are one rendition


def formats(item: MediaItem) -> set[tuple[str, str]]:
    return {(v.name, v.format) for v in item.variants}


def assert_clean(runtime, item: MediaItem) -> None:
    report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0))
    assert report.clean, (report.stray, report.missing)
    assert stored_keys(runtime) == set(reload(runtime, item).keys())


def test_upload_commits_its_jobs_with_the_row_and_webp_arrives_by_job(manual_runtime):
    runtime = manual_runtime
    item = ingest_only(runtime)
    assert item.processing_status == "queued"
    assert formats(item) == {(name, "jpeg") for name in SIZES}, "the request makes JPEG only"
    (job,) = jobs_of(runtime, item.id)
    assert (job.kind, job.status) == ("renditions", "queued")
    assert execute(runtime.tasks).status == "done"
    done = reload(runtime, item)
    assert done.processing_status == "ready"
    assert formats(done) == {(name, fmt) for name in SIZES for fmt in ("jpeg", "webp")}
    assert_clean(runtime, done)


def test_no_row_no_jobs_when_the_transaction_fails(manual_runtime):
    runtime = manual_runtime

    def lose_the_connection_once_jobs_are_written(session, flush_context):
        if any(isinstance(row, Job) for row in session.new):
            raise DatabaseUnavailable("injected: connection lost after writing the jobs")

    event.listen(runtime.database.sessionmaker, "after_flush", lose_the_connection_once_jobs_are_written)
    try:
        with pytest.raises(DatabaseUnavailable):
            ingest_only(runtime)
    finally:
        event.remove(runtime.database.sessionmaker, "after_flush", lose_the_connection_once_jobs_are_written)
    with runtime.database.session() as session:
        assert session.scalars(select(Job)).all() == []
    assert row_count(runtime) == 0 and stored_keys(runtime) == set()


def test_running_a_job_twice_gives_the_same_variants_and_no_stray_objects(manual_runtime):
    runtime = manual_runtime
    item = ingest_only(runtime)
    (job,) = jobs_of(runtime, item.id)
    tasks.renditions(runtime.tasks, job)
    first = reload(runtime, item)
    tasks.renditions(runtime.tasks, job)  # as after a crash between the swap and `complete`
    second = reload(runtime, item)
    assert sorted(v.storage_key for v in second.variants) == sorted(v.storage_key for v in first.variants)
    assert len(second.variants) == len(SIZES) * 2
    assert_clean(runtime, second)


class CommitLostAfterPut(Passthrough):
    """A real database; the first transaction that ends after `store` wrote an object (once armed)
    is rolled back as if the connection died at the commit."""

    def __init__(self, inner, store: FailingPuts) -> None:
        self.inner, self.store, self.lost = inner, store, False

    @contextmanager
    def session(self):
        due = self.store.armed and self.store.puts > 0 and not self.lost
        with self.inner.session() as session:
            yield session
            if due:
                self.lost = True
                raise DatabaseUnavailable("injected: connection lost at commit", code="database_unavailable")


def _faulty_runtime(database, store: FailingPuts, tmp_path):
    runtime = make_runtime(database, store, tmp_path, job_backoff_seconds=0)
    runtime.ingest.dispatch = None
    return runtime


def _assert_failed_then_completes(runtime, item: MediaItem, error: str) -> None:
    failed = execute(runtime.tasks)
    assert failed.status == "queued" and error in failed.last_error
    left = reload(runtime, item)
    assert left.processing_status == "queued" and formats(left) == formats(item), "the rows are as before"
    assert stored_keys(runtime) == set(item.keys()), "the objects of the failed run are removed"
    assert execute(runtime.tasks).status == "done"
    done = reload(runtime, item)
    assert done.processing_status == "ready" and ("large", "webp") in formats(done)
    assert_clean(runtime, done)


def test_a_put_failing_mid_publish_leaves_the_item_as_it_was_and_a_retry_completes(
        sqlite_db, local_storage, tmp_path):
    store = FailingPuts(local_storage, fail_on=2, armed=False)
    runtime = _faulty_runtime(sqlite_db, store, tmp_path)
    item = ingest_only(runtime, FLOWER)
    store.armed = True  # the job's puts: WebP thumbnail, small, large (medium is large's object)
    _assert_failed_then_completes(runtime, item, "injected: connection reset")
    assert store.puts > 2, "the retry wrote its objects again"
    runtime.jobs.close()


def test_a_commit_lost_after_the_puts_leaves_the_item_as_it_was_and_a_retry_completes(
        sqlite_db, local_storage, tmp_path):
    store = FailingPuts(local_storage, fail_on=0, armed=False)  # fails no put: tells the database when one happened
    database = CommitLostAfterPut(sqlite_db, store)
    runtime = _faulty_runtime(database, store, tmp_path)
    item = ingest_only(runtime, FLOWER)
    store.armed = True
    _assert_failed_then_completes(runtime, item, "injected: connection lost at commit")
    assert database.lost
    runtime.jobs.close()


def test_a_job_failing_every_time_fails_the_item_with_the_error(sqlite_db, local_storage, tmp_path, monkeypatch):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, job_backoff_seconds=0, job_max_attempts=2)
    runtime.ingest.dispatch = None
    item = ingest_only(runtime)

    def broken(context, job):
        raise ValueError("encoder exploded")

    monkeypatch.setitem(tasks.TASKS, "renditions", broken)
    assert execute(runtime.tasks).status == "queued"
    last = execute(runtime.tasks)
    assert last.status == "failed" and last.last_error == "ValueError: encoder exploded"
    assert reload(runtime, item).processing_status == "failed"
    assert execute(runtime.tasks) is None
    runtime.jobs.close()


def test_reprocess_after_image_sizes_change_replaces_the_variants(db, local_storage, tmp_path):
    before = make_runtime(db, local_storage, tmp_path)
    # PHOTO and png_hopper are the same picture: allowed past the (default) duplicate check.
    items = [upload(before, PHOTO), upload(before, CORPUS_DIR / "images/good/png_hopper.png", allow_duplicate=True)]
    before.jobs.close()
    old_keys = {key for item in items for key in item.keys()} - {item.original_key for item in items}
    after = make_runtime(db, local_storage, tmp_path, image_sizes="thumbnail:100x100:crop,small:300",
                         job_backoff_seconds=0)
    after.ingest.dispatch = None
    assert all(reprocessing.is_stale(item, after.settings) for item in items)

    job_ids = reprocessing.queue_stale(after.database, after.settings, ("property", "P-1"))
    assert len(job_ids) == 2
    assert reprocessing.queue_stale(after.database, after.settings, None) == job_ids, "queued jobs are not doubled"
    assert execute(after.tasks).status == "done"
    # Interrupted here: a second run queues nothing new and hands back the job still to do.
    assert reprocessing.queue_stale(after.database, after.settings, None) == job_ids[1:]
    assert execute(after.tasks).status == "done"
    assert reprocessing.queue_stale(after.database, after.settings, None) == []

    for item in items:
        done = reload(after, item)
        assert done.processing_status == "ready"
        assert {v.name for v in done.variants} == {"thumbnail", "small"}
        assert {(v.width, v.height) for v in done.variants if v.name == "thumbnail"} == {(100, 100)}
        assert not reprocessing.is_stale(done, after.settings)
    assert not old_keys & stored_keys(after), "the old variants are deleted"
    report = verify_service.verify(after.database, after.storage, grace=timedelta(0))
    assert report.clean
    after.jobs.close()


def test_reprocess_run_twice_keeps_one_set_of_objects(manual_runtime):
    runtime = manual_runtime
    item = ingest_only(runtime)
    execute(runtime.tasks)
    with runtime.database.session() as session:
        job = queue.enqueue(session, "reprocess", media_id=item.id)
    tasks.reprocess(runtime.tasks, job)
    once = reload(runtime, item)
    tasks.reprocess(runtime.tasks, job)
    twice = reload(runtime, item)
    assert sorted(v.storage_key for v in once.variants) == sorted(v.storage_key for v in twice.variants)
    assert all(f"-r{job.id}." in v.storage_key for v in twice.variants), "new keys: caches never see stale bytes"
    purge_pending_deletes(runtime.database, runtime.storage)
    assert_clean(runtime, twice)


def test_reprocess_gives_an_item_stored_without_a_focal_point_one_and_crops_around_it(manual_runtime, tmp_path):
    runtime = manual_runtime
    item = ingest_only(runtime, save_jpeg(red_disc((1200, 600), (0.9, 0.5)), tmp_path / "disc.jpg"))
    execute(runtime.tasks)
    found = reload(runtime, item).meta[FOCAL_POINT]
    with runtime.database.session() as session:  # as a row stored before focal points were found
        row = session.get(MediaItem, item.id)
        row.meta = {key: value for key, value in row.meta.items() if key not in (FOCAL_POINT, FACES)}
    old = reload(runtime, item)
    assert reprocessing.is_stale(old, runtime.settings)

    assert reprocessing.queue_stale(runtime.database, runtime.settings, None) != []
    assert execute(runtime.tasks).status == "done"

    done = reload(runtime, item)
    assert done.meta[FOCAL_POINT] == found and done.meta[FACES] == []
    assert not reprocessing.is_stale(done, runtime.settings)
    thumbnail = next(v for v in done.variants if v.name == "thumbnail" and v.format == "jpeg")
    assert red_share(Image.open(io.BytesIO(runtime.storage.get(thumbnail.storage_key)))) > 0.9 * DISC_IN_SQUARE
