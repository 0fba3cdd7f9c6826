"""Request heads and bodies before authentication, against a real `mediahub serve` process.

Oversized bodies and heads are refused from what arrived so far, with a stable 4xx, while the
server's peak RSS stays flat; a few hundred connections that never finish their heads are cut
after HEADER_READ_TIMEOUT_SECONDS, and an ordinary request is served alongside them meanwhile.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests

from tests.reliability.harness import (
    HOST,
    ServerProcess,
    admin,
    raw_request,
    read_response,
    record_latency,
    record_peak,
    running,
    scale,
    server_env,
    tally,
)
from tests.support.sockets import read_head

HEADER_TIMEOUT = 2  # HEADER_READ_TIMEOUT_SECONDS of this server
HEADER_CAP = 32 * 1024  # MAX_HEADER_BYTES (the default)
BODY_CAP = 1024 * 1024  # MAX_JSON_BODY_BYTES (the default)
RSS_GROWTH_LIMIT_MB = 100  # what all the oversized requests together may add to the server's peak RSS
SLOW_CONNECTIONS = scale(300, 1000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("http-limits")
    env = server_env(f"sqlite:///{work / 'limits.db'}", media_root=work / "media", temp_dir=work / "spool",
                     header_read_timeout_seconds=HEADER_TIMEOUT, upload_read_timeout_seconds=HEADER_TIMEOUT)
    with running(env, work / "server") as process:
        yield process
        record_peak("http limits", process.vmhwm_kib())


def _refused(response, status: int, code: str) -> bool:
    refused = response.status == status and code.encode() in response.body
    tally(caps_tried=1, caps_refused=int(refused), bad_5xx=int(response.status >= 500))
    return refused


def _stream_until_answered(port: int, head: bytes, piece: bytes, limit: int) -> tuple[int, bytes]:
    """Send `head`, then `piece` again and again (up to `limit` bytes) until the server answers or hangs up;
    how many bytes went out, and what came back."""
    sent = 0
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 60
        while sent < limit and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                break  # an answer (or EOF): stop sending
            except BlockingIOError:
                pass
            except ConnectionError:
                break
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                time.sleep(0.01)
            except ConnectionError:
                break
        sock.setblocking(True)
        answer = read_head(sock, 10, answer)
    return sent, answer


def test_bodies_and_heads_over_their_caps_are_refused_with_the_peak_rss_flat(server: ServerProcess) -> None:
    port = server.port
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    before = server.vmhwm_kib()
    json_head = "POST /v1/media/batch/delete HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    # 600 MB of JSON declared, no token: refused from the header alone.
    response = raw_request(port, f"{json_head}Content-Length: {600 * 1024 * 1024}\r\n\r\n")
    assert _refused(response, 413, "body_too_large"), response.head

    # 600 MB of JSON streamed chunked, no token: cut at the cap, long before the end.
    chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
    sent, answer = _stream_until_answered(port, f"{json_head}Transfer-Encoding: chunked\r\n\r\n".encode(), chunk,
                                          600 * 1024 * 1024)
    tally(caps_tried=1, caps_refused=int(answer.startswith(b"HTTP/1.1 413")))
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer, answer[:300]
    assert sent < 64 * BODY_CAP

    # A 64 KB header line: 431 with a problem body the client can read.
    response = raw_request(port, f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 65536}\r\n\r\n")
    assert _refused(response, 431, "headers_too_large"), response.head
    assert response.header("content-type") == "application/problem+json"

    # A 100 KB request target: the request line is part of the head.
    response = raw_request(port, f"GET /healthz?{'q' * 100_000} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _refused(response, 431, "headers_too_large"), response.head

    # A 200 MB header line, streamed: the server stops reading near the cap and answers 431 or hangs up.
    sent, answer = _stream_until_answered(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ", b"a" * 65536,
                                          200 * 1024 * 1024)
    refused = answer.startswith(b"HTTP/1.1 431") or answer == b""
    tally(caps_tried=1, caps_refused=int(refused))
    assert refused, answer[:300]
    assert sent < 32 * 1024 * 1024, sent  # socket buffers and the linger, not 200 MB

    # 500 short header lines: too many to be a browser.
    lines = "".join(f"X-H{i}: v\r\n" for i in range(500))
    response = raw_request(port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{lines}\r\n")
    assert _refused(response, 431, "too_many_headers"), response.head

    # Under the caps: an admin's token and a 900 KB JSON body still pass.
    ids = b'{"ids": [' + b",".join(b"%d" % (10_000_000 + i) for i in range(100_000))[:900_000].rstrip(b",") + b"]}"
    answered = requests.post(f"{server.url}/v1/media/batch/delete", data=ids, timeout=30,
                             headers={**admin(), "Content-Type": "application/json"})
    assert answered.status_code == 422 and answered.json()["code"] == "validation_error"  # over 100 ids, parsed

    after = server.vmhwm_kib()
    record_peak("http limits", after)
    assert (after - before) / 1024 < RSS_GROWTH_LIMIT_MB, (before, after)
    assert server.answers()


def _open_slow(port: int, count: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """`count` connections: a third send nothing, the rest half a request head and then stall."""
    silent, partial = [], []
    for index in range(count):
        sock = socket.create_connection((HOST, port), timeout=30)
        if index % 3 == 0:
            silent.append(sock)
        else:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            partial.append(sock)
    return silent, partial


def _closed_by_server(sock: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before closing, or None when it kept the connection open past `timeout`."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            more = sock.recv(65536)
            if not more:
                return data
            data += more
    except ConnectionError:
        return data
    except TimeoutError:
        return None


def test_slow_heads_are_cut_and_ordinary_requests_are_served_meanwhile(server: ServerProcess) -> None:
    silent, partial = _open_slow(server.port, SLOW_CONNECTIONS)
    held = silent + partial
    try:
        # One more trickles a byte at a time, faster than the timeout: the deadline still holds.
        trickler = socket.create_connection((HOST, server.port), timeout=30)
        trickler.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        partial.append(trickler)
        held.append(trickler)
        tally(slow_held=len(held))
        latencies: list[float] = []
        started = time.monotonic()  # every slow connection's deadline has begun by now
        while time.monotonic() - started < HEADER_TIMEOUT * 0.8:
            trickler.sendall(b"a")
            t0 = time.perf_counter()
            response = requests.get(f"{server.url}/healthz", timeout=30)
            latencies.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
            time.sleep(0.05)
        for ms in latencies:
            record_latency("slow heads", ms)
        tally(slow_served=len(latencies))
        assert max(latencies) < 5000, latencies  # generous: served, not starved

        deadline = HEADER_TIMEOUT * 5 + 10
        answers = [_closed_by_server(sock, max(0.1, started + deadline - time.monotonic())) for sock in partial]
        quiet = [_closed_by_server(sock, max(0.1, started + deadline - time.monotonic())) for sock in silent]
    finally:
        for sock in held:
            sock.close()
    still_open = sum(answer is None for answer in answers + quiet)
    timed_out = sum(answer is not None and answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer
                    for answer in answers)
    tally(slow_closed=len(held) - still_open)
    assert still_open == 0, f"{still_open} of {len(held)} slow connections still open after {deadline} s"
    assert timed_out == len(partial), [a[:100] for a in answers if a is not None and b"408" not in a][:3]
    assert all(answer == b"" for answer in quiet)  # nothing was asked: nothing to answer
    assert server.answers()


def test_keep_alive_requests_get_the_head_deadline_too(server: ServerProcess) -> None:
    """A first request answered, then the next head stalls: cut like the first would be."""
    with socket.create_connection((HOST, server.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = _closed_by_server(sock, HEADER_TIMEOUT * 5 + 10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < HEADER_TIMEOUT * 5


@pytest.mark.parametrize("body_size", [60_000, 900_000])
def test_bodies_on_a_kept_alive_connection_do_not_count_as_the_next_head(server: ServerProcess,
                                                                         body_size: int) -> None:
    """Body bytes are not head bytes: a whole request arriving in one read (head, body, end), then the
    next request's head split over two writes."""
    body = b'{"ids": [' + b"1," * (body_size // 2) + b"1]}"
    post = (b"POST /v1/media/batch/delete HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((HOST, server.port), timeout=30) as sock:
        sock.sendall(post + get[:20])
        first = read_response(sock)
        sock.sendall(get[20:])
        second = read_response(sock)
    assert first.status == 401, first.head  # read in full (under the body cap), then refused: no token
    assert second.status == 200, second.head
