"""How uvicorn serves the app: request heads bounded in size, count and time.

uvicorn's httptools protocol keeps every header byte a client sends until the
head is complete, and has no deadline for it (`timeout_keep_alive` covers only
the idle time between requests and stops at the first byte). The protocol
here counts the head's bytes as they arrive and its header lines, and answers
431 when either is over its cap; a head not complete within
HEADER_READ_TIMEOUT_SECONDS of its first byte (or of the connection, for the
first request) gets 408, a connection that sent nothing is closed. After a
refusal the connection lingers briefly, discarding input, so the client can
read the answer instead of meeting a reset. What the parser cannot read at all
is a 400 problem too (uvicorn's own answer is text).

What a server runs with (`serving_settings`): PIXEL_WORKERS, when it is not
set, is the cores this process may use shared among the server processes (at
least one each). Decoding in the request's thread (PIXEL_WORKERS=0) holds the
server process's GIL for Python parts of the work: under upload load `/healthz`
waits behind photos, and a hostile file's decode has no deadline.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mediahub.api.errors import problem
from mediahub.config import Settings, usable_cores

LINGER_SECONDS = 2.0  # after a refusal: time for the client to read the answer
LINGER_BYTES = 1024 * 1024  # ... and the most input discarded meanwhile


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int
    max_count: int
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadLimits:
        return cls(settings.max_header_bytes, settings.max_header_count, settings.header_read_timeout_seconds)


def _refusal(status: int, code: str, detail: str, **extra: Any) -> bytes:
    response = problem(status, code, detail, **extra)
    head = [STATUS_LINE[status]]
    head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    return b"".join([*head, b"connection: close\r\n\r\n", response.body])


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with the head of each request bounded by `limits` (given by `protocol_class`)."""

    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0  # bytes of the current head received so far (the parser holds them)
        self._head_size = 0  # request target plus header names and values, as parsed
        self._head_count = 0
        self._head_begun = False  # the parser has seen the first byte of the current request
        self._heads_parsed = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._discarded = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        head_before, heads_before = self._in_head, self._heads_parsed
        super().data_received(data)
        # A chunk counts when it began inside a head that is still open: at most one chunk (the one
        # that also ends the previous body) goes uncounted, and the exact size is checked at the end.
        if head_before and self._in_head and self._heads_parsed == heads_before and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_bytes:
                self._refuse_large_head()

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = self._head_count = 0
        self._head_begun = True
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._head_size += len(name) + len(value)
        self._head_count += 1
        if self._head_count > self.limits.max_count:
            self._refuse(431, "too_many_headers", f"at most {self.limits.max_count} header lines",
                         limit=self.limits.max_count)
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm_head_timer()
        self._in_head = self._head_begun = False
        self._head_bytes = 0
        self._heads_parsed += 1
        if self._head_size > self.limits.max_bytes:
            self._refuse_large_head()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """What the parser cannot read (a length that lies or disagrees, a chunk size that is not hex), answered
        and closed as uvicorn does, but as a problem with a stable code like every refusal here."""
        self._refused = True
        self._disarm_head_timer()
        self.logger.info("refused a request from %s: %s", self.client, msg)
        self.transport.write(_refusal(400, "malformed_request", "the request's HTTP framing cannot be read"))
        self.transport.close()

    # Limits
    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if not self._head_begun:
            self.transport.close()  # nothing sent at all: no one to answer
            return
        self._refuse(408, "header_timeout", f"the request head did not arrive within {self.limits.timeout:g} s",
                     timeout=self.limits.timeout)

    def _refuse_large_head(self) -> None:
        self._refuse(431, "headers_too_large", f"the request head is larger than {self.limits.max_bytes} bytes",
                     limit=self.limits.max_bytes)

    def _refuse(self, status: int, code: str, detail: str, **extra: Any) -> None:
        """Answer, stop parsing, and close once the client has had time to read the answer."""
        self._refused = True
        self._disarm_head_timer()
        self.logger.info("refused a request head from %s: %s", self.client, code)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # pipelined behind an unfinished response: an answer now would land inside it
            return
        self.transport.write(_refusal(status, code, detail, **extra))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def protocol_class(settings: Settings) -> functools.partial[BoundedHeadProtocol]:
    """The protocol uvicorn builds per connection, with this server's head limits; it pickles (uvicorn hands
    its configuration to each worker process)."""
    return functools.partial(BoundedHeadProtocol, limits=HeadLimits.from_settings(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `uvicorn.run` / `uvicorn.Config` need, beside the app, host and port, to serve MediaHub."""
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish for this long, then cancels the rest.
    return {"http": protocol_class(settings), "timeout_keep_alive": 5,
            "timeout_graceful_shutdown": settings.shutdown_grace_seconds}


def serving_settings(settings: Settings, server_processes: int) -> Settings:
    """The settings a server runs with: PIXEL_WORKERS, when not set, from the cores (see the module's doc)."""
    if "pixel_workers" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"pixel_workers": max(1, usable_cores() // server_processes)})
