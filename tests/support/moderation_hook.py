"""A stand-in for a platform's scanner behind MODERATION_HOOK_URL: a real HTTP server on loopback.

It records what it is sent and answers as the test sets it: `status` (with `location` for a redirect),
`delay` seconds before answering, `hold` (an Event the answer waits for), or a `body_bytes`-long body,
counting how much of that body it managed to send before the client hung up; `drip`: an answer whose head
never ends, one byte every `drip` seconds (each within a per-read timeout) until the client hangs up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

BODY_CHUNK = 64 * 1024


@dataclass(frozen=True)
class HookCall:
    path: str
    content_type: str | None
    content_length: str | None
    body: bytes


class FakeHook:
    def __init__(self) -> None:
        self.calls: list[HookCall] = []
        self.status = 200
        self.location: str | None = None
        self.delay = 0.0
        self.hold: threading.Event | None = None
        self.body_bytes = 0
        self.body_sent = 0
        self.drip = 0.0
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/validate"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with hook._lock:
                    hook.calls.append(HookCall(self.path, self.headers.get("content-type"),
                                               self.headers.get("content-length"), body))
                if hook.hold is not None:
                    hook.hold.wait(30)
                if hook.delay:
                    time.sleep(hook.delay)
                if hook.drip:
                    self._drip()
                    return
                self.send_response(hook.status)
                if hook.location:
                    self.send_header("Location", hook.location)
                self.send_header("Content-Length", str(hook.body_bytes))
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b"x" * BODY_CHUNK
                try:
                    while hook.body_sent < hook.body_bytes:
                        self.wfile.write(chunk)
                        hook.body_sent += len(chunk)
                except OSError:  # the client hung up: it read what it wanted
                    pass

            def _drip(self) -> None:
                head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 60000
                try:
                    for byte in head:
                        if hook._closed.wait(hook.drip):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:  # the client hung up
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet test output)
                pass

        return Handler

    def close(self) -> None:
        self._closed.set()
        if self.hold is not None:
            self.hold.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def fake_hook() -> Iterator[FakeHook]:
    hook = FakeHook()
    yield hook
    hook.close()
