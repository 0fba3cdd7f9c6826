"""Separate worker processes: Dramatiq over Redis and RabbitMQ, and a worker killed while it holds a lease."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from mediahub.db.models import Job, utcnow
from mediahub.media import verify as verify_service
from tests.jobs.conftest import start_worker
from tests.jobs.helpers import ingest_only, jobs_of
from tests.media.conftest import make_runtime
from tests.media.helpers import reload
from tests.support.corpus import CORPUS_DIR
from tests.support.processes import stop_process
from tests.support.services import BROKERS, require_service

LONG_VIDEO = CORPUS_DIR / "video/mp4_h264_aac_1080p_smpte.mp4"  # a transcode of some seconds


def wait_until(predicate, timeout: float, what: str, worker=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if worker is not None and worker.poll() is not None:
            pytest.fail(f"the worker exited with {worker.returncode} before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_a_separate_dramatiq_worker_finishes_the_upload(broker, sqlite_db, local_storage, tmp_path):
    name, port, url = BROKERS[broker]
    require_service(name, "127.0.0.1", port)
    queue_name = f"mh-test-{uuid.uuid4().hex[:12]}"  # parallel runs never take each other's messages
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, queue_url=url, queue_name=queue_name)
    assert not runtime.jobs.runs_here
    worker = start_worker(tmp_path, "worker.log", queue_url=url, queue_name=queue_name)
    try:
        item = ingest_only(runtime)
        assert item.processing_status == "queued"
        wait_until(lambda: reload(runtime, item).processing_status == "ready", 60, "the job", worker)
    finally:
        stop_process(worker)
        runtime.close()
    done = reload(runtime, item)
    assert {v.format for v in done.variants} == {"jpeg", "webp"} and len(done.variants) == 8
    (job,) = jobs_of(runtime, item.id)
    assert job.status == "done" and job.attempts == 1
    assert verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0)).clean


def test_a_worker_killed_while_holding_a_lease_does_not_strand_the_job(sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, make_webp=False)
    runtime.ingest.dispatch = None  # only the worker processes run jobs here
    item = ingest_only(runtime, LONG_VIDEO, ("post", "P-1", "media"))
    (job,) = jobs_of(runtime, item.id)
    assert job.kind == "video_transcode"

    def status() -> Job:
        with runtime.database.session() as session:
            return session.scalars(select(Job).where(Job.id == job.id)).one()

    doomed = start_worker(tmp_path, "doomed.log", job_lease_seconds="2")
    try:
        wait_until(lambda: status().status == "processing", 60, "the first worker's claim", doomed)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        stop_process(doomed)
    held = status()
    assert held.status == "processing" and held.attempts == 1, "the dead worker's lease still holds the job"
    assert reload(runtime, item).processing_status == "processing"
    wait_until(lambda: utcnow() > held.lease_until, 10, "the lease to expire")

    rescuer = start_worker(tmp_path, "rescuer.log")
    try:
        wait_until(lambda: status().status == "done", 120, "the rescuing worker", rescuer)
    finally:
        stop_process(rescuer)
    finished = status()
    assert finished.attempts == 2 and finished.last_error is None
    done = reload(runtime, item)
    assert done.processing_status == "ready" and "web" in {v.name for v in done.variants}
    assert verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0)).clean
    runtime.jobs.close()


@pytest.mark.parametrize("queue", ["jobs table", "rabbitmq"])
def test_a_job_held_by_a_worker_told_to_stop_is_queued_again_with_no_lease(queue, sqlite_db, local_storage, tmp_path):
    """SIGTERM: the worker takes no new job, waits SHUTDOWN_GRACE_SECONDS for its running one, then hands its
    lease back: queued again at once (not after JOB_LEASE_SECONDS), and the next worker runs it."""
    broker = {}
    if queue == "rabbitmq":
        name, port, url = BROKERS["rabbitmq"]
        require_service(name, "127.0.0.1", port)
        broker = {"queue_url": url, "queue_name": f"mh-test-{uuid.uuid4().hex[:12]}"}
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, make_webp=False, **broker)
    runtime.ingest.dispatch = None  # only the worker processes run jobs here
    item = ingest_only(runtime, LONG_VIDEO, ("post", "P-1", "media"))
    (job,) = jobs_of(runtime, item.id)

    def status() -> Job:
        with runtime.database.session() as session:
            return session.scalars(select(Job).where(Job.id == job.id)).one()

    stopping = start_worker(tmp_path, "stopping.log", shutdown_grace_seconds="0.5", **broker)
    try:
        if broker:
            runtime.jobs.dispatch([job.id])  # to the broker (without one, the worker polls the table)
        wait_until(lambda: status().status == "processing", 60, "the worker's claim", stopping)
        stopping.terminate()
        assert stopping.wait(timeout=60) == 0
    finally:
        stop_process(stopping)
    handed = status()
    assert (handed.status, handed.lease_until, handed.attempts) == ("queued", None, 1)
    assert "handed back" in handed.last_error
    assert reload(runtime, item).processing_status == "queued"

    rescuer = start_worker(tmp_path, "rescuer.log", **broker)
    try:
        wait_until(lambda: status().status == "done", 120, "the next worker", rescuer)
    finally:
        stop_process(rescuer)
    assert status().attempts == 2
    assert "web" in {v.name for v in reload(runtime, item).variants}
    runtime.close()


def test_a_stopping_process_hands_back_the_jobs_its_runner_still_runs(sqlite_db, local_storage, tmp_path):
    """The in-process runner (an API process without QUEUE_URL): closed with a job running past
    SHUTDOWN_GRACE_SECONDS, it returns and the job is queued again with no lease, for any process to take."""
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, make_webp=False, shutdown_grace_seconds=0.5)
    item = ingest_only(runtime, LONG_VIDEO, ("post", "P-1", "media"))
    (job,) = jobs_of(runtime, item.id)
    wait_until(lambda: jobs_of(runtime, item.id)[0].status == "processing", 60, "the runner's claim")
    runtime.jobs.close()
    (handed,) = jobs_of(runtime, item.id)
    assert (handed.status, handed.lease_until, handed.attempts) == ("queued", None, 1)
    assert reload(runtime, item).processing_status == "queued"
