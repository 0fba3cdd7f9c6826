"""A stand-in for a CDN's purge API: a real HTTP server on loopback that records what it is sent.

It answers 503 to its first `fail_first` calls (and holds the first `hang_first` calls open until
it is closed), then 200: what a purge hook must retry through.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class PurgeCall:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    answered: int


class FakeCdn:
    def __init__(self) -> None:
        self.calls: list[PurgeCall] = []
        self.fail_first = 0
        self.hang_first = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/purge"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with cdn._lock:
                    number = len(cdn.calls) + 1
                    # A call held open is never answered in time: it purged nothing.
                    status = 503 if number <= max(cdn.fail_first, cdn.hang_first) else 200
                    cdn.calls.append(PurgeCall(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                               json.loads(body), status))
                if number <= cdn.hang_first:
                    cdn._release.wait()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet test output)
                pass

        return Handler

    @property
    def bodies(self) -> list[Any]:
        """The bodies of the calls answered 200: what was purged."""
        with self._lock:
            return [call.body for call in self.calls if call.answered == 200]

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def fake_cdn() -> Iterator[FakeCdn]:
    cdn = FakeCdn()
    yield cdn
    cdn.close()
