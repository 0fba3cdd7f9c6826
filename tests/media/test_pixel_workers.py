"""The pipeline in worker processes gives the same items and the same refusals as in-thread."""

from __future__ import annotations

import os
import pickle

import pytest

from mediahub.errors import LimitExceeded, MediaHubError
from mediahub.media.pixels import NICENESS, PixelWorkers
from tests.media.conftest import make_runtime
from tests.media.helpers import row_count, upload
from tests.support.corpus import CORPUS_DIR


def test_errors_cross_processes_with_code_and_details():
    error = LimitExceeded("too big", code="too_many_frames", limit=100)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is LimitExceeded and copy.code == "too_many_frames" and copy.details == {"limit": 100}


def test_uploads_through_pixel_worker_processes(sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path, pixel_workers=1)
    try:
        item = upload(runtime, CORPUS_DIR / "images/good/orient_landscape_6.jpg")
        assert (item.width, item.height) == (1800, 1200) and len(item.image_hash) == 16
        video = upload(runtime, CORPUS_DIR / "video/webm_vp8_vorbis_720p_1s.webm", "post:1:media")
        assert video.media_type == "video" and (video.width, video.height) == (1280, 720)
        with pytest.raises(MediaHubError) as caught:
            upload(runtime, CORPUS_DIR / "images/bad/decompression_bomb_extents.gif")
        assert caught.value.code == "too_many_pixels"
        assert row_count(runtime) == 2
    finally:
        runtime.ingest.pixels.close()


def test_start_readies_every_process_before_the_first_call():
    pixels = PixelWorkers(2)
    try:
        pixels.start()
        started = pixels.pids()
        assert len(started) == 2 and os.getpid() not in started
        assert {pixels.run(os.getpid) for _ in range(3)} <= set(started)
        assert sorted(pixels.pids()) == sorted(started)  # the calls found them ready; none was started for one
        assert pixels.run(os.nice, 0) == min(19, os.nice(0) + NICENESS)  # the server's process comes first
    finally:
        pixels.close()
    assert PixelWorkers(0).start() is None  # in-thread: nothing to start
