"""Pixel worker processes: a call over its deadline is killed, a killed process is replaced, and only
the call it was running fails; readiness reports the loss once and then the replacement."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from mediahub.errors import MediaHubError
from mediahub.media.pixels import PixelWorkers
from tests.media.conftest import make_runtime
from tests.media.helpers import row_count, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.processes import exited, pixel_worker_pids

PHOTO = CORPUS_DIR / "images/good/jpeg_hopper.jpg"


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def workers():
    pool = PixelWorkers(1, deadline_seconds=2)
    yield pool
    pool.close()


def test_a_call_over_the_deadline_is_killed_with_its_process_and_the_next_call_runs(workers):
    first = workers.run(os.getpid)
    started = time.monotonic()
    with pytest.raises(MediaHubError) as caught:
        workers.run(time.sleep, 120)  # stands for a decoder stuck in a hostile file
    assert caught.value.code == "processing_timeout"
    assert time.monotonic() - started < 60  # the deadline, not the call, ended it
    assert _gone(first), "the overrunning process must be killed"
    second = workers.run(os.getpid)
    assert second != first and workers.pids() == [second]
    workers.check()  # a deadline kill is routine: the pool stays ready


def test_a_worker_killed_while_idle_is_replaced_before_the_next_call(workers):
    first = workers.run(os.getpid)
    assert pixel_worker_pids() == [first]
    os.kill(first, signal.SIGKILL)
    assert _gone(first)
    with pytest.raises(MediaHubError) as caught:
        workers.check()
    assert caught.value.code == "pixel_workers_unavailable"
    workers.check()  # recovered: the replacement is running
    assert workers.run(os.getpid) not in (first, None)


def test_a_worker_killed_mid_call_fails_that_call_alone(workers):
    workers.run(os.getpid)
    outcome: dict[str, object] = {}

    def slow() -> None:
        try:
            workers.run(time.sleep, 1.5)
        except MediaHubError as exc:
            outcome["code"] = exc.code

    caller = threading.Thread(target=slow)
    caller.start()
    time.sleep(0.3)
    [busy] = workers.pids()
    os.kill(busy, signal.SIGKILL)
    caller.join(30)
    assert outcome == {"code": "pixel_worker_lost"}
    assert workers.run(os.getpid) != busy


def test_uploads_go_on_after_a_pixel_worker_is_killed(sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, pixel_workers=1, dedup_policy="allow")
    try:
        upload(runtime, PHOTO)
        [worker] = pixel_worker_pids()
        os.kill(worker, signal.SIGKILL)
        assert _gone(worker)
        for _ in range(3):
            upload(runtime, PHOTO)
        assert row_count(runtime) == 4
    finally:
        runtime.ingest.pixels.close()
        runtime.jobs.close()


def test_an_upload_over_the_deadline_is_refused_and_stores_nothing(sqlite_db, local_storage, tmp_path):
    # Scans under the limit still cost a pass each: with the limit raised, the deadline stops the decode.
    from tests.support.hostile_images import many_scan_jpeg

    slow = tmp_path / "many_scans.jpg"
    slow.write_bytes(many_scan_jpeg(3000, (3000, 2000)))
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, pixel_workers=1, pixel_deadline_seconds=1,
                           max_jpeg_scans=100_000, dedup_policy="allow")
    try:
        with pytest.raises(MediaHubError) as caught:
            upload(runtime, slow)
        assert caught.value.code == "processing_timeout"
        assert row_count(runtime) == 0 and not list(local_storage.list())
        upload(runtime, PHOTO)
        assert row_count(runtime) == 1
    finally:
        runtime.ingest.pixels.close()
        runtime.jobs.close()
