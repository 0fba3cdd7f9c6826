"""Queue semantics on SQLite, PostgreSQL and MariaDB: exclusive claims, backoff, final failure, leases."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from mediahub.db.models import Job, MediaItem
from mediahub.db.repositories import VariantRow
from mediahub.db.repositories import job_queue as queue
from mediahub.errors import Busy
from mediahub.jobs.sweeper import sweep
from mediahub.media.renditions import publish
from tests.jobs.helpers import ingest_only
from tests.media.conftest import make_runtime
from tests.support.concurrency import run_together

LEASE = timedelta(minutes=5)


def _enqueue(db, count: int = 1, max_attempts: int = 5) -> list[int]:
    with db.session() as session:
        return [queue.enqueue(session, "renditions", max_attempts=max_attempts).id for _ in range(count)]


def _job(db, job_id: int) -> Job:
    with db.session() as session:
        return session.get(Job, job_id)


def _fail(db, claimed: Job, error: str, backoff: timedelta) -> Job:
    with db.session() as session:
        return queue.fail(session, claimed, error, backoff)


def _claim_in_threads(db, threads: int, job_id: int | None = None) -> list[list[int]]:
    """Each thread claims until nothing is left; all start together."""
    start = threading.Barrier(threads)
    claimed: list[list[int]] = [[] for _ in range(threads)]

    def claimer(slot: int) -> None:
        start.wait()
        while (job := queue.claim(db, LEASE, job_id)) is not None:
            claimed[slot].append(job.id)

    run_together([lambda n=n: claimer(n) for n in range(threads)])
    return claimed


def test_two_threads_never_claim_the_same_job(db):
    ids = _enqueue(db, 30)
    first, second = _claim_in_threads(db, 2)
    assert not set(first) & set(second)
    assert sorted(first + second) == ids
    assert all(_job(db, i).status == "processing" and _job(db, i).attempts == 1 for i in ids)


def test_one_job_raced_by_two_threads_is_claimed_once(db):
    for _ in range(5):
        (job_id,) = _enqueue(db)
        first, second = _claim_in_threads(db, 2, job_id)
        assert sorted(first + second) == [job_id]


def test_a_failed_job_waits_an_exponential_backoff(db):
    (job_id,) = _enqueue(db)
    backoff = timedelta(seconds=0.5)
    claimed = queue.claim(db, LEASE)
    before = time.time()
    job = _fail(db, claimed, "first", backoff)
    assert job.status == "queued" and job.last_error == "first"
    assert 0.4 <= job.run_after.timestamp() - before <= 1.0
    assert queue.claim(db, LEASE) is None, "not due before its backoff"
    time.sleep(0.6)
    claimed = queue.claim(db, LEASE)
    assert claimed.id == job_id
    before = time.time()
    job = _fail(db, claimed, "second", backoff)
    assert 0.9 <= job.run_after.timestamp() - before <= 1.5, "the delay doubles with each attempt"


def test_after_max_attempts_the_job_fails_for_good_keeping_the_error(db):
    (job_id,) = _enqueue(db, max_attempts=3)
    for attempt in range(1, 4):
        job = queue.claim(db, LEASE)
        assert job.id == job_id and job.attempts == attempt
        job = _fail(db, job, f"boom {attempt}", timedelta(0))
    assert job.status == "failed" and job.attempts == 3 and job.last_error == "boom 3"
    assert queue.claim(db, LEASE) is None
    assert _job(db, job_id).last_error == "boom 3"


def test_an_expired_lease_is_reclaimed_and_claimed_again(db):
    (job_id,) = _enqueue(db, max_attempts=2)
    assert queue.claim(db, timedelta(seconds=0.2)).id == job_id
    assert queue.reclaim_expired(db) == [], "a live lease is left alone"
    time.sleep(0.3)
    (reclaimed,) = queue.reclaim_expired(db)
    assert reclaimed.id == job_id and reclaimed.status == "queued" and "lease expired" in reclaimed.last_error
    again = queue.claim(db, timedelta(seconds=0.2))
    assert again.id == job_id and again.attempts == 2
    time.sleep(0.3)
    (final,) = queue.reclaim_expired(db)
    assert final.status == "failed", "a worker lost on the last attempt fails the job"
    assert _job(db, job_id).status == "failed"


def test_the_sweeper_resends_lost_messages_and_reclaims_dead_workers(db):
    lost, fresh, held = _enqueue(db, 3)
    with db.session() as session:
        session.get(Job, lost).run_after -= timedelta(minutes=10)  # its message never arrived
    assert queue.claim(db, timedelta(seconds=0.1), held).id == held
    time.sleep(0.2)
    sent: list[int] = []
    assert sweep(db, sent.extend, stale=timedelta(minutes=5)) == [lost, held]
    assert sent == [lost, held], "a fresh job's message is still on its way: not re-sent"
    assert _job(db, held).status == "queued" and _job(db, fresh).status == "queued"


def test_renditions_written_for_a_store_the_item_has_left_are_not_published(db, local_storage, tmp_path):
    """A job writes an item's objects to the store its row records; if a storage migration switched the item
    to another store meanwhile, publishing refuses (the job runs again, writing where the item is now)."""
    runtime = make_runtime(db, local_storage, tmp_path)
    runtime.ingest.dispatch = None
    item = ingest_only(runtime)
    row = VariantRow("moved", "webp", "k/moved.webp", 1, 1, 1, "image/webp")
    with pytest.raises(Busy) as refused:
        publish(runtime.database, runtime.storage, item.id, [row], keep=lambda v: True, cdn=runtime.cdn,
                stored_in=("s3", "the-old-bucket"))
    assert refused.value.code == "item_moved"
    with runtime.database.session() as session:
        assert "moved" not in {v.name for v in session.get(MediaItem, item.id).variants}
    publish(runtime.database, runtime.storage, item.id, [row], keep=lambda v: True, cdn=runtime.cdn,
            stored_in=item.store)
    with runtime.database.session() as session:
        assert "moved" in {v.name for v in session.get(MediaItem, item.id).variants}


def test_jobs_of_one_item_finishing_together_lose_no_variant_and_settle_ready(db, local_storage, tmp_path):
    runtime = make_runtime(db, local_storage, tmp_path)
    runtime.ingest.dispatch = None
    item = ingest_only(runtime)
    start = threading.Barrier(2)

    def add_variants(tag: str) -> None:
        for n in range(8):
            start.wait()
            row = VariantRow(f"{tag}{n}", "webp", f"k/{tag}{n}.webp", 1, 1, 1, "image/webp")
            publish(runtime.database, runtime.storage, item.id, [row], keep=lambda v: True, cdn=runtime.cdn,
                    stored_in=item.store)

    run_together([lambda tag=tag: add_variants(tag) for tag in ("a", "b")])
    with runtime.database.session() as session:
        names = {v.name for v in session.get(MediaItem, item.id).variants}
    assert {f"{t}{n}" for t in "ab" for n in range(8)} <= names, "a concurrent swap overwrote another"

    for _ in range(2):
        with db.session() as session:
            queue.enqueue(session, "reprocess", media_id=item.id)
    claimed = [queue.claim(db, LEASE) for _ in range(3)]
    finish = threading.Barrier(len(claimed))

    def complete(job: Job) -> None:
        finish.wait()
        with db.session() as session:
            queue.complete(session, job)

    run_together([lambda job=job: complete(job) for job in claimed])
    with db.session() as session:
        assert session.get(MediaItem, item.id).processing_status == "ready"
    runtime.jobs.close()
