"""The pixel worker processes of a real server: a decode over its deadline is killed, a killed
process (kill -9: what an OOM kill or a decoder crash looks like) fails only its own upload,
`/readyz` reports it, and every later upload is served. Hostile structure is refused before decoding.

One `mediahub serve` subprocess (SQLite, local disk, one pixel process) for the module.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.reliability.harness import (
    ServerProcess,
    admin,
    record_peak,
    running,
    server_env,
    status_kib,
    tally,
    wait_until,
)
from tests.support.corpus import CORPUS_DIR
from tests.support.hostile_images import cut, many_scan_jpeg
from tests.support.processes import cpu_ticks, exited, pixel_worker_pids

DEADLINE = 2  # PIXEL_DEADLINE_SECONDS of this server
MAX_SCANS = 3000  # MAX_JPEG_SCANS of this server: raised, so that a slow file (seconds) reaches the decoder
HOPPER = CORPUS_DIR / "images/good/jpeg_hopper.jpg"
GALLERY = "/v1/media/properties/{entity}/photos"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("pixels")
    env = server_env(f"sqlite:///{work / 'pixels.db'}", media_root=work / "media", temp_dir=work / "spool",
                     pixel_workers=1, pixel_deadline_seconds=DEADLINE, max_jpeg_scans=MAX_SCANS)
    with running(env, work / "server") as running_server:
        yield running_server
        record_peak("pixels_server", running_server.vmhwm_kib())


@pytest.fixture(scope="module")
def slow_jpeg() -> bytes:
    """Valid, under the scan limit, and seconds of decoding: each scan is a pass over 24 MP."""
    return many_scan_jpeg(MAX_SCANS - 50, (6000, 4000))


def _post(server: ServerProcess, data: bytes, entity: str = "px1", timeout: float = 120) -> requests.Response:
    return requests.post(server.url + GALLERY.format(entity=entity), headers=admin(),
                         files={"file": ("upload.jpg", data, "application/octet-stream")}, timeout=timeout)


def _worker(server: ServerProcess) -> int:
    """The pixel process of the server (started by the first upload)."""
    assert wait_until(lambda: len(pixel_worker_pids(server.pid)) == 1, 30), pixel_worker_pids(server.pid)
    return pixel_worker_pids(server.pid)[0]


def _kill(pid: int, scenario: str) -> None:
    record_peak(scenario, status_kib(pid, "VmHWM"))
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: exited(pid), 10)


def _served(server: ServerProcess) -> bool:
    return _post(server, HOPPER.read_bytes()).status_code == 201


def test_a_decode_over_the_deadline_is_killed_and_the_next_upload_is_served(server, slow_jpeg) -> None:
    assert _served(server)
    before = _worker(server)
    started = time.monotonic()
    response = _post(server, slow_jpeg)
    elapsed = time.monotonic() - started
    assert response.status_code == 422 and response.json()["code"] == "processing_timeout", response.text
    assert elapsed < DEADLINE + 30  # ended by the deadline, not by the decode
    assert exited(before) and _worker(server) != before
    tally(deadline_kills=1)
    assert _served(server)
    tally(deadline_recovered=1)
    assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200


def test_a_pixel_process_killed_while_idle_is_reported_by_readyz_and_replaced(server) -> None:
    assert _served(server)
    _kill(_worker(server), "pixels_worker")
    tally(worker_kills=1)
    response = requests.get(f"{server.url}/readyz", timeout=30)
    assert response.status_code == 503 and response.json()["checks"]["pixels"] == "pixel_workers_unavailable"
    assert wait_until(lambda: requests.get(f"{server.url}/readyz", timeout=30).status_code == 200, 30)
    for _ in range(3):
        assert _served(server)
    tally(worker_recovered=1)


def test_a_pixel_process_killed_mid_upload_fails_that_upload_alone(server, slow_jpeg) -> None:
    assert _served(server)
    worker = _worker(server)
    idle_ticks = cpu_ticks(worker)
    outcome: list[requests.Response] = []
    sender = threading.Thread(target=lambda: outcome.append(_post(server, slow_jpeg)))
    sender.start()
    assert wait_until(lambda: cpu_ticks(worker) > idle_ticks + 5, DEADLINE * 0.75, interval=0.01), \
        "the upload never reached the pixel process"
    _kill(worker, "pixels_worker")
    tally(worker_kills=1)
    sender.join(120)
    [response] = outcome
    assert response.status_code == 503 and response.json()["code"] == "pixel_worker_lost", response.text
    tally(worker_uploads_failed=1)
    for _ in range(3):
        assert _served(server)
    tally(worker_recovered=1)


def test_hostile_structure_is_refused_before_any_decode(server) -> None:
    good = (CORPUS_DIR / "images/good/jpeg_flower.jpg").read_bytes()
    cases = {
        "too_many_scans": many_scan_jpeg(MAX_SCANS + 1),
        "truncated_image": cut(good, 0.33, b"\xff\xd9"),
    }
    for code, data in cases.items():
        tally(bad_tried=1)
        response = _post(server, data, entity="px2")
        assert response.status_code == 422 and response.json()["code"] == code, response.text
        tally(bad_refused=1)
    assert _served(server)
