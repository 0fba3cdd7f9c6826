"""Graceful shutdown of `mediahub serve`: on SIGTERM it stops accepting connections, lets an upload in flight
finish (201, stored) within SHUTDOWN_GRACE_SECONDS, and exits; an upload still unfinished at the deadline is
cut and leaves no row."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mediahub.storage.local import LocalStorage
from tests.reliability.harness import (
    HOST,
    ServerProcess,
    admin,
    multipart,
    read_response,
    running,
    server_env,
    snapshot,
    upload_head,
    wait_until,
)
from tests.support.corpus import CORPUS_DIR
from tests.support.services import port_open

PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"


def _database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shutdown.db'}"


@contextmanager
def _sigterm_mid_upload(tmp_path: Path, grace: float) -> Iterator[tuple[ServerProcess, socket.socket, bytes]]:
    """A server with an upload half sent (head and half the body) when SIGTERM reaches it: the server, the
    upload's connection and the rest of its body."""
    env = server_env(_database(tmp_path), media_root=tmp_path / "media", temp_dir=tmp_path / "spool",
                     pixel_workers=1, shutdown_grace_seconds=grace)
    with running(env, tmp_path / "server") as server:
        body = multipart([("file", PHOTO.read_bytes(), PHOTO.name)])
        with socket.create_connection((HOST, server.port), timeout=30) as sock:
            sock.sendall(upload_head("/v1/media/properties/S1/photos", admin(), len(body)).encode("latin-1")
                         + body[:len(body) // 2])
            server.process.send_signal(signal.SIGTERM)
            yield server, sock, body[len(body) // 2:]


def _exited_gracefully(server: ServerProcess) -> bool:
    """Exited (uvicorn re-raises the SIGTERM it handled, so its status says so) after closing the app: the
    lifespan's end closed the runtime (and handed back the leases of jobs it ran)."""
    return server.process.wait(timeout=60) in (0, -signal.SIGTERM) and "Application shutdown complete" in server.log()


def test_an_upload_in_flight_when_sigterm_arrives_completes(tmp_path: Path) -> None:
    with _sigterm_mid_upload(tmp_path, grace=30) as (server, sock, rest):
        assert wait_until(lambda: not port_open(HOST, server.port, timeout=0.5), 30), "still accepting connections"
        sock.sendall(rest)
        answer = read_response(sock, timeout=60)
        assert _exited_gracefully(server)
    assert answer.status == 201, answer.head + answer.body.decode(errors="replace")
    stored = snapshot(_database(tmp_path), LocalStorage(tmp_path / "media"))
    assert json.loads(answer.body)["id"] in stored.row_keys and stored.rows_missing_objects == {}


def test_an_upload_unfinished_at_the_deadline_is_cut_and_leaves_no_row(tmp_path: Path) -> None:
    with _sigterm_mid_upload(tmp_path, grace=1) as (server, sock, _):
        assert _exited_gracefully(server)  # the body never completes: the deadline ends it
        assert read_response(sock, timeout=10).status != 201
    assert snapshot(_database(tmp_path), LocalStorage(tmp_path / "media")).rows == 0
