"""Graceful shutdown of `mediahub serve`: on SIGTERM it stops accepting connections, lets an upload in flight
finish (201, stored) within SHUTDOWN_GRACE_SECONDS, and exits; an upload still unfinished at the deadline is
cut and leaves no row."""

from __future__ import annotations

import json
import signal
import socket
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


def _env(tmp_path: Path, grace: float) -> dict[str, str]:
    return server_env(f"sqlite:///{tmp_path / 'shutdown.db'}", media_root=tmp_path / "media",
                      temp_dir=tmp_path / "spool", pixel_workers=1, shutdown_grace_seconds=grace)


def _half_sent(port: int, entity: str) -> tuple[socket.socket, bytes]:
    """An upload whose head and first half of the body are sent; the rest, returned, is not."""
    body = multipart([("file", PHOTO.read_bytes(), PHOTO.name)])
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.sendall(upload_head(f"/v1/media/properties/{entity}/photos", admin(), len(body)).encode("latin-1")
                 + body[:len(body) // 2])
    return sock, body[len(body) // 2:]


def _stops_accepting(port: int) -> bool:
    return wait_until(lambda: not port_open(HOST, port, timeout=0.5), 30)


def test_an_upload_in_flight_when_sigterm_arrives_completes(tmp_path: Path) -> None:
    env = _env(tmp_path, grace=30)
    with running(env, tmp_path / "server") as server:
        sock, rest = _half_sent(server.port, "S1")
        with sock:
            server.process.send_signal(signal.SIGTERM)
            assert _stops_accepting(server.port), "the server still accepts connections after SIGTERM"
            sock.sendall(rest)
            answer = read_response(sock, timeout=60)
        assert answer.status == 201, answer.head + answer.body.decode(errors="replace")
        media_id = json.loads(answer.body)["id"]
        assert _exited_gracefully(server)
    stored = snapshot(env["DATABASE_URL"], _storage(tmp_path))
    assert media_id in stored.row_keys and stored.rows_missing_objects == {}


def test_an_upload_unfinished_at_the_deadline_is_cut_and_leaves_no_row(tmp_path: Path) -> None:
    env = _env(tmp_path, grace=1)
    with running(env, tmp_path / "server") as server:
        sock, _ = _half_sent(server.port, "S2")
        with sock:
            server.process.send_signal(signal.SIGTERM)
            assert _exited_gracefully(server)  # the body never completes: the deadline ends it
            answer = read_response(sock, timeout=10)
        assert answer.status != 201
    assert snapshot(env["DATABASE_URL"], _storage(tmp_path)).rows == 0


def _exited_gracefully(server: ServerProcess) -> bool:
    """Exited (uvicorn re-raises the SIGTERM it handled, so its status says so) after closing the app: the
    lifespan's end closed the runtime (and handed back the leases of jobs it ran)."""
    return server.process.wait(timeout=60) in (0, -signal.SIGTERM) and "Application shutdown complete" in server.log()


def _storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")
