"""What `mediahub serve` starts: with PIXEL_WORKERS unset, pixel processes from the cores (shared among
the server processes of `--workers N`), all started before the first connection; several server
processes share the port and each keeps the request-head limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mediahub.config import usable_cores
from tests.reliability.harness import (
    HOST,
    ServerProcess,
    admin,
    raw_request,
    running,
    server_env,
    wait_until,
)
from tests.support.corpus import CORPUS_DIR
from tests.support.processes import pixel_worker_pids

PHOTO = CORPUS_DIR / "images/good/orient_landscape_6.jpg"


def _env(work: Path) -> dict[str, str]:
    env = server_env(f"sqlite:///{work / 'serve.db'}", media_root=work / "media", temp_dir=work / "spool")
    assert "PIXEL_WORKERS" not in env
    return env


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[ServerProcess]:
    with running(_env(tmp_path), tmp_path / "server", args=("--workers", "2")) as server:
        yield server


def _upload(server: ServerProcess, entity: str) -> requests.Response:
    with PHOTO.open("rb") as fh:
        return requests.post(f"{server.url}/v1/media/properties/{entity}/photos", headers=admin(),
                             files={"file": (PHOTO.name, fh, "image/jpeg")}, timeout=60)


def test_plain_serve_has_a_pixel_process_per_core_before_the_first_upload(tmp_path: Path) -> None:
    with running(_env(tmp_path), tmp_path / "server") as server:
        assert len(pixel_worker_pids(server.pid)) == usable_cores()  # answering /healthz: already started
        started = pixel_worker_pids(server.pid)
        reply = _upload(server, "P1")
        assert reply.status_code == 201, reply.text
        assert reply.json()["width"] == 1800
        assert pixel_worker_pids(server.pid) == started  # the upload used them; none started for it


def test_two_server_processes_share_the_cores_and_keep_the_head_limits(two_processes: ServerProcess) -> None:
    server = two_processes

    def started() -> bool:  # uvicorn's worker processes are spawned too; each starts its own pixel processes
        workers = pixel_worker_pids(server.pid)
        return len(workers) == 2 and all(pixel_worker_pids(w) for w in workers)

    assert wait_until(started, 60), pixel_worker_pids(server.pid)
    workers = pixel_worker_pids(server.pid)
    assert [len(pixel_worker_pids(w)) for w in workers] == [max(1, usable_cores() // 2)] * 2
    for index in range(4):  # new connections: the kernel hands them to either process
        reply = _upload(server, f"P{index}")
        assert reply.status_code == 201, reply.text
    listed = requests.get(f"{server.url}/v1/media/entity/property/P3", headers=admin(), timeout=30)
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1
    for _ in range(4):
        head = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nX-Filler: {'a' * 40_000}\r\n\r\n"
        refused = raw_request(server.port, head)
        assert refused.status == 431 and b"headers_too_large" in refused.body, refused.head
