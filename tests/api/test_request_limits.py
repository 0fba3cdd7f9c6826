"""Request bodies outside the streamed uploads are capped before routing, so before authentication."""

from __future__ import annotations

import json
import socket
import time

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, assert_problem, free_port, serving, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.sockets import read_head

CAP = 64 * 1024
JSON_ROUTES = [("POST", "/v1/media/batch/delete"), ("PATCH", "/v1/media/1"), ("PUT", "/v1/media/entity/property/1/order"),
               ("PUT", "/v1/media/entities/property/1/members/USR-1"), ("POST", "/v1/media/1/flag")]


@pytest.fixture
def capped(app_factory: AppFactory):
    with TestClient(app_factory(max_json_body_bytes=CAP, upload_read_timeout_seconds=1)) as client:
        yield client


def _big_json(size: int) -> bytes:
    return json.dumps({"ids": [1] * (size // 3)}).encode()


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize("caller", ["anonymous", "admin"])
def test_a_body_over_the_cap_is_413_whoever_sends_it(capped: TestClient, tokens: Tokens, method: str, path: str,
                                                     caller: str) -> None:
    headers = {**(tokens.admin() if caller == "admin" else {}), "Content-Type": "application/json"}
    response = capped.request(method, path, content=_big_json(CAP + 1), headers=headers)
    body = assert_problem(response, 413, "body_too_large")
    assert body["limit"] == CAP
    assert response.headers["connection"] == "close"  # the rest of the body is not drained


def test_a_chunked_body_is_cut_at_the_cap(capped: TestClient) -> None:
    chunks = iter([b'{"ids": [' + b"1," * 8192] * 100)  # no Content-Length: Transfer-Encoding chunked
    response = capped.post("/v1/media/batch/delete", content=chunks, headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "body_too_large")


def test_bodies_under_the_cap_reach_their_routes(capped: TestClient, tokens: Tokens) -> None:
    assert_problem(capped.post("/v1/media/batch/delete", json={"ids": [1]}), 401, "missing_token")
    chunks = iter([b'{"ids": ', b"[999]}"])
    response = capped.post("/v1/media/batch/delete", content=chunks,
                           headers={**tokens.admin(), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["error"]["code"] == "media_not_found"


def test_streamed_uploads_keep_their_own_larger_caps(capped: TestClient, tokens: Tokens) -> None:
    peppers = CORPUS_DIR / "images/good/jpeg_progressive_peppers.jpg"  # 257 KB, over the JSON cap
    response = upload(capped, "/v1/media/properties/123/photos", tokens.admin(), file=peppers)
    assert response.status_code == 201, response.text


def _exchange(port: int, request: bytes, timeout: float = 20) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_head(sock, timeout)


def test_a_huge_declared_body_is_refused_from_its_header_and_a_stalled_one_times_out(app_factory: AppFactory) -> None:
    port = free_port()
    with serving(app_factory(max_json_body_bytes=CAP, upload_read_timeout_seconds=1), port):
        head = "POST /v1/media/batch/delete HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        # 600 MB declared, nothing sent: only the Content-Length can have decided.
        response = _exchange(port, f"{head}Content-Length: {600 * 1024 * 1024}\r\n\r\n".encode())
        assert response.startswith(b"HTTP/1.1 413") and b"body_too_large" in response, response[:300]
        # 100 bytes declared, 10 sent, then nothing: 408 after the read timeout, not a connection held forever.
        started = time.monotonic()
        response = _exchange(port, f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"ids": [1')
        assert response.startswith(b"HTTP/1.1 408") and b"request_timeout" in response, response[:300]
        assert time.monotonic() - started < 15
        # A byte every 0.2 s keeps every chunk on time, but the whole body is late all the same.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            started = time.monotonic()
            sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode())
            sock.settimeout(0.2)  # the pause between bytes, spent listening for the answer
            response = b""
            while not response and time.monotonic() - started < 10:
                try:
                    sock.sendall(b" ")
                    response = sock.recv(65536) or b"(closed)"
                except TimeoutError:
                    continue
                except ConnectionError:
                    break
            response = read_head(sock, 10, response)
        assert response.startswith(b"HTTP/1.1 408"), response[:300]
        assert time.monotonic() - started < 8
